"""The Overview page: the claim, and the test metric by mode from the run store (never made-up numbers)."""

from app_helpers import app_test, no_errors


def test_empty_store_says_so_and_points_to_the_live_page(tmp_path):
    at = app_test("overview", store=tmp_path)
    at.run()
    no_errors(at)
    assert at.title[0].value.startswith("asymviz")
    assert any("no finished runs yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")  # nothing drawn without measurements


def test_the_router_opens_on_the_overview(tmp_path):
    from app_helpers import REPO
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    at.session_state["store"] = str(tmp_path)
    at.run()
    no_errors(at)
    assert at.title[0].value.startswith("asymviz")
    assert at.sidebar.text_input(key="store").value == str(tmp_path)
