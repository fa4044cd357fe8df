"""The Compare runs page."""

from app_helpers import app_test, no_errors


def test_empty_store_says_so(tmp_path):
    at = app_test("compare", store=tmp_path)
    at.run()
    no_errors(at)
    assert any("No finished runs" in i.value for i in at.info)
