"""The shipped runs in cached_runs/: readable, within the size budget, weights that load, and the app's
dashboard shows each experiment (known answers: the counts the sweeps in each group's README produce)."""

from __future__ import annotations

import json

import pytest
from app_helpers import REPO, app_test, no_errors

from asymviz.runs import RunStore

ROOT = REPO / "cached_runs"
pytestmark = pytest.mark.skipif(not (ROOT / "minilm_tasks").is_dir(), reason="no shipped runs in this checkout")


def test_under_50_mb_and_every_run_readable():
    size = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    assert size < 50 * 2**20
    frame = RunStore(ROOT).list()
    frame = frame[frame["group"] != "live"]  # live fine-tunes started in the app (git-ignored)
    assert (frame["status"] == "completed").all()
    assert set(frame["group"]) >= {"minilm_tasks", "similarity", "vit_mnist"}
    for group in frame["group"].unique():
        assert (ROOT / group / "README.md").exists()


def test_the_sweeps_are_complete():
    frame = RunStore(ROOT / "minilm_tasks").list()
    main = frame[frame["role"] == "main"]
    exp1 = main[(main["mode"] != "b_only") | (main["a_init"] == "orthogonal")]
    # 5 tasks x 3 modes x 2 ranks x 3 seeds, one lr per task and mode
    assert len(exp1) == 90
    assert exp1.groupby(["task", "mode"])["lr"].nunique().max() == 1
    inits = main[(main["mode"] == "b_only") & (main["rank"] == 8) & main["task"].isin(["fine_foods", "word_polarity"])]
    assert inits.groupby(["task", "a_init"]).size().to_dict() == {
        (t, a): 3 for t in ("fine_foods", "word_polarity") for a in ("gaussian", "kaiming", "orthogonal")
    }
    sim = RunStore(ROOT / "similarity").list()
    assert len(sim) == 12 and sim["has_weights"].all()
    vit = RunStore(ROOT / "vit_mnist").list()
    assert sorted(vit[vit["role"] == "main"].groupby("mode").size()) == [3, 3, 3]


def test_shipped_weights_load_and_frozen_factors_are_their_init():
    store = RunStore(ROOT)
    frame = store.list()
    kept = frame[frame["has_weights"]]
    assert len(kept) >= 30
    for path in kept.sample(6, random_state=0)["path"]:
        from asymviz.runs import RunRecord

        run = RunRecord.load(path)
        adapter, init = run.load_adapter(), run.load_init()
        assert not adapter.problems, adapter.problems
        mode = run.config["mode"]
        first = adapter.modules[0].name
        a, a0 = adapter.module(first).A, init.module(first).A
        if mode == "b_only":
            assert (a == a0).all()
        if mode == "a_only":
            assert (adapter.module(first).B == init.module(first).B).all()
    dropped = frame[~frame["has_weights"]]
    for path in dropped["path"].head(3):
        assert json.loads((REPO / path / "run.json").read_text() if not path.startswith("/") else
                          open(f"{path}/run.json").read())["weights_dropped"]  # fmt: skip


@pytest.mark.parametrize("group", ["minilm_tasks", "similarity", "vit_mnist"])
def test_the_dashboard_shows_each_experiment(group):
    at = app_test("overview", store=ROOT, timeout=120)
    at.session_state["group"] = group
    at.run()
    no_errors(at)
    assert at.get("plotly_chart")
    table = at.dataframe[0].value
    seeds = {"minilm_tasks": {3}, "similarity": {1, 9}, "vit_mnist": {3}}[group]  # fine_foods: 5 + 4 shared-init
    assert set(table["seeds"]) == seeds


@pytest.mark.parametrize("across,inits", [("seeds", "each its own init"), ("seeds", "one shared init (seed 0)"),
                                          ("tasks", None)])  # fmt: skip
def test_the_figure_1_heatmaps_of_the_shipped_similarity_runs(across, inits):
    at = app_test("compare", store=ROOT, timeout=300)
    at.session_state["group"] = "similarity"
    at.session_state["cmp_view"] = "Similarity across seeds & tasks"
    at.session_state["cmp_across"] = across
    if inits:
        at.session_state["cmp_sim_inits"] = inits
    at.run()
    no_errors(at)
    charts = [c.key for c in at.get("plotly_chart")]
    assert charts == ["fig_cmp_sim_A", "fig_cmp_sim_B", "fig_cmp_shared"]  # A, B and the shared directions
    groups = next(d.value for d in at.dataframe if "cluster by A" in d.value)
    assert len(groups) >= 2 and groups[["cluster by A", "cluster by B"]].notna().all().all()


def test_live_fine_tunes_on_the_shipped_store_go_to_its_ignored_live_folder():
    at = app_test("live", store=ROOT)
    at.run()
    no_errors(at)
    shown = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
    assert str(ROOT / "live") in shown
    ignored = (REPO / ".gitignore").read_text().split()
    assert "/cached_runs/live/" in ignored


@pytest.mark.parametrize("page", ["compare", "inspect", "alignment", "theory"])
def test_every_page_renders_on_the_shipped_runs(page):
    at = app_test(page, store=ROOT, timeout=300)
    at.run()
    no_errors(at)
