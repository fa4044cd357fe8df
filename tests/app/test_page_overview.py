"""The Overview page: the claim, and the test metric by mode from the run store (never made-up numbers)."""

import pytest
from app_helpers import REPO, app_test, no_errors, shared_tiny_store

from asymviz.runs import list_runs


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


def test_empty_store_says_so_and_points_to_the_live_page(tmp_path):
    at = app_test("overview", store=tmp_path)
    at.run()
    no_errors(at)
    assert at.title[0].value.startswith("asymviz")
    assert any("no finished runs yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")  # nothing drawn without measurements


def test_the_router_opens_on_the_overview(tmp_path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    at.session_state["store"] = str(tmp_path)
    at.run()
    no_errors(at)
    assert at.title[0].value.startswith("asymviz")
    assert at.sidebar.text_input(key="store").value == str(tmp_path)


def test_numbers_are_the_stores_mean_over_seeds(tiny_store):
    at = app_test("overview", store=tiny_store)
    at.run()
    no_errors(at)
    table = at.dataframe[0].value
    assert list(table["mode"]) == ["A&B", "B only (random A frozen)", "A only (random B frozen)"]
    runs = list_runs(tiny_store)
    expected = runs.groupby("mode")["test_accuracy"].mean()
    shown = dict(zip(table["mode"], table["mean ± s.e."], strict=True))
    assert shown["A&B"] == f"{expected['ab']:.3f}"  # one seed: no standard error
    b_only = runs[runs["mode"] == "b_only"]["test_accuracy"]
    assert shown["B only (random A frozen)"] == f"{b_only.mean():.3f} ± {b_only.std() / 2**0.5:.3f}"
    assert list(table["seeds"]) == [1, 2, 1]
    assert len(at.get("plotly_chart")) == 1


@pytest.mark.parametrize("metric", ["test_macro_f1"])
def test_metric_switch(tiny_store, metric):
    at = app_test("overview", store=tiny_store)
    at.run()
    at.selectbox(key="ov_metric").set_value(metric).run()
    no_errors(at)
    assert "macro-F1" in at.dataframe[0].value.columns[-3] or len(at.get("plotly_chart")) == 1


def test_claim_verdicts_are_asymviz_results(tiny_store):
    """The page prints asymviz.results.claim_lines of the store's counted runs, and the paired table behind them."""
    from app.tables import short
    from asymviz import results as R

    at = app_test("overview", store=tiny_store)
    at.run()
    no_errors(at)
    runs = R.counted_runs(list_runs(tiny_store))
    runs = runs.assign(task=runs["task"].map(short))
    lines = R.claim_lines(R.claim_table(R.claim_comparisons(runs, "test_accuracy")))
    shown = " ".join(m.value for m in at.markdown)
    assert lines and all(line in shown for line in lines)
    assert not any("reason" in d.value for d in at.dataframe)  # the paired table only once its expander opens
    at.session_state["ov_paired_open"] = True  # what opening the expander sets (components.details)
    at.run()
    no_errors(at)
    paired = next(d.value for d in at.dataframe if "reason" in d.value)
    assert "single seed pair" in paired["reason"].iloc[0]  # one seed of A&B: no verdict
    assert set(paired["verdict"]) == {"inconclusive"}
    expected = R.claim_comparisons(runs, "test_accuracy")
    assert list(paired["verdict"]) == list(expected["verdict"]) and len(paired) == len(expected)


def test_the_linear_probe_is_drawn_and_listed_when_the_experiment_has_one(tiny_store, tmp_path):
    """<store>/linear_probe.csv (asymviz.probes.linear_probe's columns) shows as a dotted line per task."""
    import shutil

    import pandas as pd

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store, ignore=shutil.ignore_patterns(".queue"))
    runs = list_runs(store)
    task, model = runs["task"].iloc[0], runs["model"].iloc[0]
    pd.DataFrame([{"model": model, "task": task, "features": "mean", "C": 1.0, "validation_accuracy": 0.5,
                   "test_accuracy": 0.4321, "test_macro_f1": 0.3}]).to_csv(store / "linear_probe.csv", index=False)  # fmt: skip
    at = app_test("overview", store=store)
    at.run()
    no_errors(at)
    assert any("Linear probe" in m.value and "0.432" in m.value for m in at.markdown)
