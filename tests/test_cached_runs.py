"""The shipped runs in cached_runs/: readable, within the size budget, weights that load, and the app's
dashboard shows each experiment (known answers: the counts the sweeps in each group's README produce)."""

from __future__ import annotations

import json

import pytest
from app_helpers import REPO, app_test, no_errors

from asymviz.runs import RunStore

ROOT = REPO / "cached_runs"
pytestmark = pytest.mark.skipif(
    not (ROOT / "minilm_tasks").is_dir(), reason="no shipped runs in this checkout"
)


EXPERIMENTS = ("minilm_tasks", "minilm_rank", "minilm_head", "minilm_mechanism", "similarity", "vit_mnist",
               "vit_mechanism", "smollm2_qa")  # fmt: skip


def test_under_60_mb_and_every_run_readable():
    size = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file() and "live" not in f.parts)
    assert size < 60 * 10**6
    frame = RunStore(ROOT).list()
    frame = frame[frame["group"] != "live"]  # live fine-tunes started in the app (git-ignored)
    assert (frame["status"] == "completed").all()
    assert set(frame["group"]) >= set(EXPERIMENTS)
    for group in frame["group"].unique():
        assert (ROOT / group / "README.md").exists()


def _main(group: str):
    frame = RunStore(ROOT / group).list()
    return frame[frame["role"] == "main"]


def test_the_sweeps_are_complete():
    """Every counted group has 5 seeds at one lr (and one LoRA+ ratio), and every mode of a task trains its head
    at the one lr the task's head_only control chose (known answers: the jobs in each group's README)."""
    expected = {  # counted runs: tasks x (control + LoRA modes x ranks) x 5 seeds
        "minilm_tasks": 5 * (1 + 3 * 2) * 5,
        "minilm_rank": 2 * (1 + 3 * 7) * 5,
        "minilm_head": 5 * (1 + 3) * 5,
        "minilm_mechanism": 2 * (1 + 3) * 5,
        "vit_mnist": (1 + 3) * 5,
        "vit_mechanism": (1 + 3) * 5,
    }
    for group, n in expected.items():
        main = _main(group)
        assert len(main) == n, group
        cells = main.groupby(["task", "mode", "rank"])
        assert (cells.size() == 5).all() and cells["lr"].nunique().max() == 1, group
        assert cells["lr_ratio"].nunique().max() == 1, group
        lora = main[main["mode"] != "head_only"]
        assert lora.groupby("task")["head_lr"].nunique().max() == 1, group
    ratios = set(_main("minilm_tasks").query("mode == 'ab'")["lr_ratio"])
    assert ratios <= {1.0, 4.0, 16.0}
    assert sorted(_main("minilm_rank")["rank"].unique()) == [1, 2, 4, 8, 16, 32, 64]
    sim = RunStore(ROOT / "similarity").list()
    assert len(sim) == 24 and sim["has_weights"].all()
    assert sim.groupby("task").size().to_dict() == {t: 6 for t in ("fine_foods", "tweet_source", "word_polarity",
                                                                    "word_pos")}  # fmt: skip


def test_shipped_weights_load_and_frozen_factors_are_their_init():
    store = RunStore(ROOT)
    frame = store.list()
    kept = frame[frame["has_weights"]]
    assert len(kept) >= 30
    for path in kept.sample(6, random_state=0)["path"]:
        from asymviz.runs import RunRecord

        run = RunRecord.load(path)
        adapter = run.load_adapter()
        assert not adapter.problems, adapter.problems
        if not run.init_path.exists():  # dropped to ship: run.json says why
            assert any("init/" in note for note in run.data["shipped"])
            continue
        init = run.load_init()
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


@pytest.mark.parametrize(
    "group", ["minilm_tasks", "minilm_rank", "minilm_head", "minilm_mechanism", "vit_mnist"]
)
def test_the_dashboard_shows_each_experiment(group):
    at = app_test("overview", store=ROOT, timeout=120)
    at.session_state["group"] = group
    at.run()
    no_errors(at)
    assert at.get("plotly_chart")
    table = at.dataframe[0].value
    assert set(table["seeds"]) == {5}


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
