"""The Alignment page on a store of real tiny runs: it asks first, runs alignment and diagnostics in the
background when asked, shows the bars and the table, and reports errors as st.error, never a traceback."""

import time

import pytest
from app_helpers import app_test, no_errors, shared_tiny_store


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


def _until_done(at, timeout=120):
    """Rerun the page until no progress bar is left (the jobs run in server threads)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        if not at.get("progress"):
            return at
        time.sleep(0.3)
    raise AssertionError("the alignment did not finish in time")


def test_a_stored_run_aligned_from_the_page(tiny_store):
    at = app_test("alignment", store=tiny_store, timeout=120)
    at.run()
    no_errors(at)
    assert any("Press" in i.value for i in at.info)  # nothing runs before the click
    assert not at.get("plotly_chart")
    ab = next(p.name for p in tiny_store.iterdir() if "_ab_" in p.name)
    at.selectbox(key="aln_run").set_value(ab).run()
    at.button(key="aln_go").click().run()
    _until_done(at)
    no_errors(at)
    figures = at.get("plotly_chart")
    assert len(figures) == 3  # data sides, weight sides, diagnostics
    labels = [m.label for m in at.metric]
    assert "A vs inputs, trained" in labels and "B vs outputs, trained" in labels
    assert "A vs inputs, at init (step 0)" in labels
    tables = [d.value for d in at.dataframe]
    summary = next(t for t in tables if "ratio" in t)
    assert set(summary["source"]) == {"trained", "init"}
    diag = next(t for t in tables if "n_intruders" in t)
    assert len(diag) == 4 and (diag["n_intruders"] >= 0).all()
