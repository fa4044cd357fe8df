"""The Compare runs page on a store of real tiny runs: every view, and its reactions to the selection."""

import pytest
from app_helpers import app_test, no_errors, shared_tiny_store


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


VIEWS = ["Learning curves", "Summary table", "Drift from init", "Similarity across seeds & tasks"]


def test_empty_store_says_so(tmp_path):
    at = app_test("compare", store=tmp_path)
    at.run()
    no_errors(at)
    assert any("No finished runs" in i.value for i in at.info)


def test_every_view(tiny_store):
    at = app_test("compare", store=tiny_store)
    at.run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1  # one task: one learning-curve figure
    at.selectbox(key="cmp_curve").set_value(("validation", "accuracy")).run()
    no_errors(at)
    at.segmented_control(key="cmp_view").set_value("Summary table").run()
    no_errors(at)
    table = at.dataframe[0].value
    assert list(table["mode"]) == ["A&B", "B only (random A frozen)", "A only (random B frozen)"]
    lora = dict(zip(table["mode"], table["LoRA params"], strict=True))
    assert lora["B only (random A frozen)"] == lora["A only (random B frozen)"]  # square modules: r·d each
    assert table["bound"].notna().all()
    at.segmented_control(key="cmp_view").set_value("Drift from init").run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1
    assert any("Bit-identical to init" in c.value and "A in B only" in c.value for c in at.caption)
    at.segmented_control(key="cmp_view").set_value("Similarity across seeds & tasks").run()
    at.selectbox(key="cmp_sim_mode").set_value("b_only").run()
    no_errors(at)
    charts = at.get("plotly_chart")
    assert [c.key for c in charts] == [
        "fig_cmp_sim_A",
        "fig_cmp_sim_B",
        "fig_cmp_shared",
    ]  # A, B, shared directions
    groups = next(d.value for d in at.dataframe if "cluster by A" in d.value)
    assert list(groups["adapter"]) == ["seed 0", "seed 1"]  # asymviz.collection's clusters of the two seeds
    _collection_matches_the_library(tiny_store, groups)
    at.segmented_control(key="cmp_across").set_value("tasks").run()
    no_errors(at)
    assert any("at least two runs" in i.value for i in at.info)


def test_selection_narrows_the_runs(tiny_store):
    at = app_test("compare", store=tiny_store)
    at.run()
    at.button_group(key="cmp_modes").set_value(["b_only"]).run()
    no_errors(at)
    assert any(c.value == "2 run(s) selected." for c in at.caption)
    at.button_group(key="cmp_seeds").set_value([]).run()
    assert any("No run matches" in w.value for w in at.warning)


def _collection_matches_the_library(store, groups):
    """The page's groups are analyze_collection's on the same two B-only adapters (seeds 0 and 1)."""
    from asymviz.adapters import load_adapter
    from asymviz.collection import analyze_collection
    from asymviz.runs import list_runs

    runs = list_runs(store)
    b_only = runs[runs["mode"] == "b_only"].sort_values("seed")
    result = analyze_collection(
        [load_adapter(f"{p}/adapter") for p in b_only["path"]], names=["seed 0", "seed 1"]
    )
    for which in ("A", "B"):
        expected = result.clusters[result.clusters["which"] == which].set_index("adapter")["cluster"]
        assert list(groups[f"cluster by {which}"]) == [expected["seed 0"], expected["seed 1"]]
