"""bench/make_results.py's v2 sections: each states the verdicts of the library tables, and a folder without an
experiment gives a report that says so instead of failing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from asymviz import head_factorial as HF
from asymviz import rank_sweep as RS
from asymviz import results as R
from asymviz.runs import RunStore
from tests.conftest import write_run_store
from tests.test_head_factorial import factorial_runs
from tests.test_rank_sweep import sweep_runs


@pytest.fixture(scope="module")
def make_results():
    path = Path(__file__).resolve().parent.parent / "bench" / "make_results.py"
    spec = importlib.util.spec_from_file_location("make_results", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_results"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A cached_runs/ with the d/r sweep and both head arms only (no adapters: d_in from nowhere)."""
    root = tmp_path_factory.mktemp("cached") / "cached_runs"
    write_run_store(root, sweep_runs(seeds=range(4), tasks=("fine_foods",)).assign(group=RS.RANK_GROUP))
    write_run_store(root, factorial_runs(seeds_full=range(4), seeds_cls=range(4)))
    return root


def test_rank_section_without_d_in_says_it_cannot_compute(make_results, root):
    text, verdicts = make_results.rank_section(root)
    assert text.startswith("(cannot compute:") and "pass d_in" in text and verdicts == []


def test_head_section_states_the_library_verdicts(make_results, root):
    text, verdicts = make_results.head_section(root)
    listed = RunStore(root).list()
    runs = R.counted_runs(listed, group=HF.HEAD_GROUPS[0])
    runs = pd.concat([runs, R.counted_runs(listed, group=HF.HEAD_GROUPS[1])], ignore_index=True)
    inter = HF.head_interaction_table(runs)
    pooled = inter[inter["task"] == "all"]
    assert len(verdicts) == len(pooled)
    for line, (_, row) in zip(verdicts, pooled.iterrows(), strict=True):
        assert f"verdict **{row['verdict']}**" in line and f"{row['interaction']:+.3f}" in line
    assert "--design head-interaction" in text


def test_missing_folders_give_a_report_that_says_so(make_results, root, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    assert make_results.main(["--root", str(root), "--out", str(out)]) == 0
    text = out.read_text()
    assert "(not run: this folder has no `vit_mnist/`)" in text  # the first part's report (Table 1, the ViT)
    assert "(not run: this folder has no `similarity/`)" in text  # the 2×2's own section
    assert "(not run: this folder has no `minilm_mechanism/`)" in text  # the mechanism test's section
    assert "## Exp 3 · The head factorial" in text and "interaction" in text


def test_collapsed_runs_are_the_counted_runs_at_the_majority_class(make_results, tmp_path):
    """A run whose test accuracy is the majority class's (within COLLAPSE_TOLERANCE) is listed; a grid run or a
    run above it is not."""
    import json

    root = tmp_path / "cached_runs"
    for name, acc, role in (("a", 0.658, "main"), ("b", 0.80, "main"), ("c", 0.655, "lr_grid")):
        folder = root / "minilm_tasks" / name
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({
            "status": "completed", "role": role, "metrics": {"test_accuracy": acc},
            "split_summary": {"test": {"majority_accuracy": 0.658}},
            "config": {"task": "fine_foods", "mode": "b_only", "rank": 16, "seed": 1, "lr": 0.03}}))  # fmt: skip
    got = make_results.collapsed_runs(root)
    assert list(got["test_accuracy"]) == [0.658] and list(got["group"]) == ["minilm_tasks"]


def test_edge_choices_name_a_choice_at_the_end_of_its_final_grid(make_results, tmp_path):
    group = tmp_path / "cached_runs" / "minilm_head"
    group.mkdir(parents=True)
    rows = [
        ("word_polarity", "head_only", lr, lr == 0.81, ext) for lr, ext in ((0.09, 1), (0.27, 2), (0.81, 3))
    ]
    rows += [
        ("fine_foods", "head_only", lr, lr == 0.27, ext) for lr, ext in ((0.09, 1), (0.27, 2), (0.81, 3))
    ]
    pd.DataFrame(rows, columns=["task", "mode", "lr", "chosen", "extension"]).assign(rank=8).to_csv(
        group / "lr_selection.csv", index=False
    )
    got = make_results.edge_choices(tmp_path / "cached_runs")
    assert len(got) == 1 and "word_polarity" in got[0] and "0.81 at the top" in got[0]


def test_the_readme_summary_needs_its_markers(make_results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        make_results.write_readme_summary(readme, tmp_path, {})
