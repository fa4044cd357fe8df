"""asymviz.head_factorial: the per-arm comparisons and the interaction, on runs whose gaps are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from asymviz import head_factorial as H
from asymviz import results as R
from asymviz.results import ResultsError

HEAD_OF = {H.FULL_HEAD: "pooler,classifier", H.CLASSIFIER_HEAD: "classifier"}


def factorial_runs(seeds_full=range(5), seeds_cls=range(5), sd=0.002, tasks=("t1", "t2")) -> pd.DataFrame:
    """Counted runs of both arms at r = 8 (head_only written at rank 16: the control has no rank). A seed
    effect (sd 0.05) shared by every run of a seed, in both arms; then per arm
    full head:       ab = b_only = a_only = 0.80, head_only 0.78
    classifier head: ab = b_only = 0.80, a_only = 0.75, head_only 0.70
    so b_only − a_only: 0 → 0.05 (interaction +0.05), b_only − ab: 0 → 0 (interaction 0), each ± `sd`."""
    rng = np.random.default_rng(2)
    level = {H.FULL_HEAD: {"ab": 0.8, "b_only": 0.8, "a_only": 0.8, "head_only": 0.78},
             H.CLASSIFIER_HEAD: {"ab": 0.8, "b_only": 0.8, "a_only": 0.75, "head_only": 0.70}}  # fmt: skip
    rows = []
    for task in tasks:
        effect = rng.normal(0, 0.05, 10)
        for arm, seeds in ((H.FULL_HEAD, seeds_full), (H.CLASSIFIER_HEAD, seeds_cls)):
            for s in seeds:
                for mode, v in level[arm].items():
                    rows.append({"task": task, "mode": mode, "rank": 16 if mode == "head_only" else 8, "seed": s,
                                 "test_accuracy": v + effect[s] + rng.normal(0, sd), "head": HEAD_OF[arm],
                                 "run_id": f"{task}-{arm}-{mode}-{s}"})  # fmt: skip
    f = pd.DataFrame(rows)
    return f.assign(model="tiny", group=np.where(f["head"] == "classifier", "minilm_head", "minilm_tasks"),
                    init_seed=f["seed"])  # fmt: skip


@pytest.fixture(scope="module")
def runs():
    return factorial_runs()


def test_factorial_table_per_arm(runs):
    t = H.head_factorial_table(runs)
    assert list(t.columns) == [*H.FACTORIAL_COLUMNS, *H.FACTORIAL_EXTRA]
    assert list(dict.fromkeys(t["head"])) == [H.FULL_HEAD, H.CLASSIFIER_HEAD]
    assert set(t["task"]) == {"t1", "t2", "all"} and set(t["rank"]) == {8}
    v = t.set_index(["head", "task", "mode", "baseline"])["verdict"]
    assert v[(H.FULL_HEAD, "t1", "b_only", "a_only")] == "equivalent"
    assert v[(H.CLASSIFIER_HEAD, "t1", "b_only", "a_only")] == "better"
    assert v[(H.CLASSIFIER_HEAD, "t2", "ab", "head_only")] == "better"
    # two tasks: the pooled row's t-test over task means has 1 df, so it cannot call a difference
    assert v[(H.CLASSIFIER_HEAD, "all", "ab", "head_only")] == "inconclusive"
    # each arm's rows are results.paired_comparisons of that arm alone, Holm over both arms together
    cls = runs[runs["head"] == "classifier"]
    alone = R.paired_comparisons(cls, [("b_only", "a_only")], "test_accuracy", pooled=False)
    mine = t[(t["head"] == H.CLASSIFIER_HEAD) & (t["mode"] == "b_only") & (t["baseline"] == "a_only")]
    mine = mine[mine["task"] != "all"]
    assert np.allclose(mine["diff_mean"], alone["diff_mean"]) and np.allclose(mine["ci_low"], alone["ci_low"])
    assert np.allclose(t["p_holm"], R.holm_by_family(t), equal_nan=True)
    per_task = t[t["task"] != "all"]
    assert np.allclose(per_task["p_holm"], R.holm(per_task["p"].to_numpy(float)), equal_nan=True)


def test_interaction_known_answers_and_paired_reference(runs):
    t = H.head_interaction_table(runs)
    assert list(t.columns) == [*H.INTERACTION_COLUMNS, *H.INTERACTION_EXTRA]
    row = t.set_index(["task", "contrast"])
    ba = row.loc[("t1", "b_only - a_only")]
    assert ba["interaction"] == pytest.approx(0.05, abs=0.004) and ba["verdict"] == "better"
    assert ba["interaction"] == pytest.approx(ba["diff_classifier_head"] - ba["diff_full_head"])
    assert ba["ci_method"] == "paired" and ba["n_pairs"] == 5
    assert row.loc[("t1", "b_only - ab"), "verdict"] == "equivalent"
    assert row.loc[("all", "b_only - a_only"), "ci_method"] == "bootstrap"
    # the paired interval is the one-sample t interval of the per-seed differences in differences
    p = runs[runs["task"] == "t1"].set_index(["head", "mode", "seed"])["test_accuracy"].sort_index()
    dd = (p["classifier", "b_only"] - p["classifier", "a_only"]) - (
        p["pooler,classifier", "b_only"] - p["pooler,classifier", "a_only"]
    )
    lo, hi = stats.t.interval(0.95, 4, loc=dd.mean(), scale=stats.sem(dd))
    assert (ba["ci_low"], ba["ci_high"]) == pytest.approx((lo, hi))
    assert ba["p"] == pytest.approx(stats.ttest_1samp(dd, 0).pvalue)
    assert np.allclose(t["p_holm"], R.holm_by_family(t), equal_nan=True)
    per_task = t[t["task"] != "all"]
    assert np.allclose(per_task["p_holm"], R.holm(per_task["p"].to_numpy(float)), equal_nan=True)
    line = H.interaction_lines(t)[0]
    assert "interaction +0.05" in line and "mean over tasks" in line and "Per task: 2 better." in line


def test_interaction_without_common_seeds_is_welch():
    runs = factorial_runs(seeds_full=range(0, 4), seeds_cls=range(4, 9), tasks=("t",))
    t = H.head_interaction_table(runs).set_index("contrast")
    row = t.loc["b_only - a_only"]
    assert row["ci_method"] == "welch" and row["n_pairs"] == 9
    p = runs.set_index(["head", "mode", "seed"])["test_accuracy"].sort_index()
    d_cls = (p["classifier", "b_only"] - p["classifier", "a_only"]).to_numpy()
    d_full = (p["pooler,classifier", "b_only"] - p["pooler,classifier", "a_only"]).to_numpy()
    ref = stats.ttest_ind(d_cls, d_full, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert row["p"] == pytest.approx(ref.pvalue)
    assert (H.head_interaction_table(runs)["task"] != "all").all()  # one task: no pooled row


def test_bad_input():
    runs = factorial_runs(tasks=("t",))
    with pytest.raises(ResultsError, match="no counted runs"):
        H.head_factorial_table(runs.iloc[:0])
    with pytest.raises(ResultsError, match="'head' column"):
        H.head_interaction_table(runs.drop(columns="head"))
    with pytest.raises(ResultsError, match="without a recorded head"):
        H.head_factorial_table(runs.assign(head=None))
    with pytest.raises(ResultsError, match="no task has runs"):
        H.head_interaction_table(runs[runs["head"] == "classifier"])
    assert H.head_arm("pooler,classifier") == H.FULL_HEAD and H.head_arm(None) is None


def test_cli_design_head_prints_the_library_tables(tmp_path, capsys):
    import io

    from asymviz.cli import main
    from asymviz.runs import RunStore
    from tests.conftest import write_run_store

    root = write_run_store(tmp_path / "store", factorial_runs(seeds_full=range(3), seeds_cls=range(3)))
    listed = RunStore(root).list()
    runs = pd.concat([R.counted_runs(listed, group=g) for g in H.HEAD_GROUPS], ignore_index=True)
    for design, fn in (("head", H.head_factorial_table), ("head-interaction", H.head_interaction_table)):
        assert main(["runs", "compare", "--store", str(root), "--design", design, "--format", "csv"]) == 0
        got = pd.read_csv(io.StringIO(capsys.readouterr().out))
        want = fn(runs)
        assert got["verdict"].tolist() == want["verdict"].tolist() and len(got) > 0
        assert np.allclose(got["ci_high"], want["ci_high"], equal_nan=True)
    one_arm = ["--design", "head-interaction", "--group", "minilm_head"]
    assert main(["runs", "compare", "--store", str(root), *one_arm]) == 2
