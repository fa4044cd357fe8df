"""asymviz.results: verdicts known by construction on a synthetic run store, Holm and the t interval against
references, the claims, and `asymviz runs compare`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from asymviz import results as R
from asymviz.cli import main
from asymviz.runs import RunStore, write_json_atomic

SEEDS = range(5)


def write_run(store, task, mode, seed, value, metric="test_accuracy", rank=8, **fields):
    """One finished run folder in the documented run.json schema (asymviz.runs)."""
    run_id = f"{task}_{mode}_r{rank}_s{seed}" + "".join(f"_{v}" for v in fields.values())
    folder = store / fields.pop("group", "") / run_id
    folder.mkdir(parents=True)
    data = {"schema": 1, "run_id": run_id, "status": fields.pop("status", "completed"), "model": "tiny",
            "task": task, "mode": mode, "rank": rank, "seed": seed, "init_seed": seed,
            "config": {"lr": 1e-3, "a_init": fields.pop("a_init", "orthogonal")},
            "role": fields.pop("role", "main"), "metrics": {metric: value}, **fields}  # fmt: skip
    write_json_atomic(folder / "run.json", data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Known answers: every seed shifts every mode alike (sd 0.05, which pairing removes), then
    - task "clear": b_only = ab + 0.001 ± 0.0005 (equivalent), a_only = ab − 0.10 (worse), head_only = ab + 0.10
      (better), each ± 0.002;
    - task "noisy": every mode = ab ± 0.1 (inconclusive);
    - task "single": one seed (inconclusive: n_pairs 1)."""
    root = tmp_path_factory.mktemp("results") / "store"
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.05, len(SEEDS))
    shift = {
        "ab": (0.0, 0.0),
        "b_only": (0.001, 0.0005),
        "a_only": (-0.10, 0.002),
        "head_only": (0.10, 0.002),
    }
    for s in SEEDS:
        for mode, (mu, sd) in shift.items():
            write_run(root, "clear", mode, s, 0.8 + seed_effect[s] + mu + rng.normal(0, sd))
            write_run(
                root, "noisy", mode, s, 0.7 + seed_effect[s] + (rng.normal(0, 0.1) if mode != "ab" else 0)
            )
    for mode in shift:
        write_run(root, "single", mode, 0, 0.6 + shift[mode][0])
    return root


@pytest.fixture(scope="module")
def table(store):
    return R.compare_modes(R.counted_runs(RunStore(store).list()), "test_accuracy", baseline="ab")


def test_verdicts_known_by_construction(table):
    got = table.set_index(["task", "mode"])["verdict"].to_dict()
    assert got[("clear", "b_only")] == "equivalent"
    assert got[("clear", "a_only")] == "worse"
    assert got[("clear", "head_only")] == "better"
    for mode in ("b_only", "a_only", "head_only"):
        assert got[("noisy", mode)] == "inconclusive"
        assert got[("single", mode)] == "inconclusive"
    single = table[table["task"] == "single"]
    assert (single["n_pairs"] == 1).all() and single["reason"].str.contains("single seed pair").all()
    assert single["ci_low"].isna().all() and single["p"].isna().all()
    assert list(table.columns[: len(R.COMPARE_COLUMNS)]) == list(R.COMPARE_COLUMNS)
    assert list(table.columns) == [*R.COMPARE_COLUMNS, *R.EXTRA_COLUMNS]
    assert set(table["baseline"]) == {"ab"} and set(table["margin"]) == {0.01}


def test_pairing_removes_the_seed_effect(store, table):
    """Unpaired, a_only's 0.10 drop would hide in the seeds' spread of ±0.05; paired, its CI is tight."""
    row = table[(table["task"] == "clear") & (table["mode"] == "a_only")].iloc[0]
    assert row["ci_high"] - row["ci_low"] < 0.02
    assert row["diff_mean"] == pytest.approx(-0.10, abs=0.005)


def test_t_interval_and_p_match_scipy(store, table):
    runs = RunStore(store).list()
    clear = runs[runs["task"] == "clear"].set_index(["mode", "seed"])["test_accuracy"]
    d = (clear["a_only"] - clear["ab"]).to_numpy()
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    row = table[(table["task"] == "clear") & (table["mode"] == "a_only")].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12)
    assert row["t_low"] == row["ci_low"] and row["ci_method"] == "t"
    assert row["p"] == pytest.approx(stats.ttest_rel(clear["a_only"], clear["ab"]).pvalue, rel=1e-12)
    low90, high90 = stats.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (row["ci90_low"], row["ci90_high"]) == pytest.approx((low90, high90), rel=1e-12)


def test_holm_against_a_hand_computation():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> 0.06 (monotone)
    got = R.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(got[4])
    assert R.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert len(R.holm([])) == 0


def test_p_holm_is_holm_within_the_per_task_rows_and_within_the_pooled_rows(table):
    """Two families: a pooled row (task "all") aggregates the per-task rows and answers another question."""
    for family in (table["task"] != "all", table["task"] == "all"):
        part = table[family]
        assert part["p_holm"].to_numpy() == pytest.approx(R.holm(part["p"].to_numpy()), nan_ok=True)
    assert (table["task"] == "all").any() and (table["task"] != "all").any()
    assert (table["p_holm"].dropna() >= table["p"].dropna()).all()


def test_tost_p_agrees_with_the_90_percent_interval(table):
    rows = table[table["ci_method"] == "t"].dropna(subset=["p_tost"])
    inside = (rows["ci90_low"] > -rows["margin"]) & (rows["ci90_high"] < rows["margin"])
    assert ((rows["p_tost"] < 0.05) == inside).all()
    assert inside.any() and (~inside).any()


def test_bootstrap_is_reproducible_and_within_the_data(store, table):
    again = R.compare_modes(R.counted_runs(RunStore(store).list()), "test_accuracy")
    pd.testing.assert_frame_equal(table, again)
    row = table[(table["task"] == "noisy") & (table["mode"] == "b_only")].iloc[0]
    runs = RunStore(store).list()
    noisy = runs[runs["task"] == "noisy"].set_index(["mode", "seed"])["test_accuracy"]
    d = (noisy["b_only"] - noisy["ab"]).to_numpy()
    assert d.min() <= row["boot_low"] < row["boot_high"] <= d.max()
    assert row["n_boot"] == R.N_BOOT


def test_pooled_rows_weigh_tasks_equally(table):
    pooled = table[(table["task"] == "all") & (table["mode"] == "a_only")].iloc[0]
    tasks = table[(table["task"] != "all") & (table["mode"] == "a_only")]
    assert pooled["diff_mean"] == pytest.approx(tasks["diff_mean"].mean())
    assert pooled["n_tasks"] == 3 and pooled["n_pairs"] == tasks["n_pairs"].sum()
    assert pooled["ci_method"] == "bootstrap" and pooled["ci_low"] <= pooled["diff_mean"] <= pooled["ci_high"]
    assert pooled["p"] == pytest.approx(stats.ttest_1samp(tasks["diff_mean"], 0).pvalue)
    t90 = stats.t.interval(0.90, 2, loc=tasks["diff_mean"].mean(), scale=stats.sem(tasks["diff_mean"]))
    assert pooled["ci90_low"] <= t90[0] + 1e-12 and pooled["ci90_high"] >= t90[1] - 1e-12  # needs both


def test_pooled_bootstrap_of_identical_tasks_is_the_seed_bootstrap():
    rng = np.random.default_rng(1)
    d = np.array([0.1, 0.2, 0.3])
    boot = R.pooled_bootstrap_means([d, d], 4000, rng)
    assert boot.min() >= 0.1 and boot.max() <= 0.3 and boot.mean() == pytest.approx(0.2, abs=0.005)


def test_loss_is_compared_lower_is_better(tmp_path):
    for s in SEEDS:
        write_run(tmp_path, "lm", "ab", s, 3.0 + 0.1 * s + 0.001 * s**2, metric="test_loss")
        write_run(tmp_path, "lm", "b_only", s, 2.5 + 0.1 * s, metric="test_loss")
    t = R.compare_modes(RunStore(tmp_path).list(), None)  # metric picked: the store has only losses
    row = t.iloc[0]
    assert row["metric"] == "test_loss" and row["lower_is_better"]
    assert row["diff_mean"] > 0.4 and row["verdict"] == "better"


def test_counted_runs_leave_out_grid_superseded_unfinished_and_other_inits(tmp_path):
    write_run(tmp_path, "t", "ab", 0, 0.8)
    write_run(tmp_path, "t", "ab", 1, 0.1, role="lr_grid")
    write_run(tmp_path, "t", "ab", 2, 0.1, role="lr_superseded")
    write_run(tmp_path, "t", "ab", 3, 0.1, status="failed")
    write_run(tmp_path, "t", "b_only", 0, 0.8, a_init="orthogonal")
    write_run(tmp_path, "t", "b_only", 0, 0.1, a_init="gaussian")
    runs = R.counted_runs(RunStore(tmp_path).list())
    assert sorted(zip(runs["mode"], runs["seed"], runs["a_init"].fillna("-"), strict=True)) == [
        ("ab", 0, "-"), ("b_only", 0, "orthogonal")]  # fmt: skip
    assert len(R.counted_runs(RunStore(tmp_path).list(), a_init="gaussian")) == 2
    with pytest.raises(R.ResultsError, match="kaiming"):
        R.counted_runs(RunStore(tmp_path).list(), a_init="kaiming")
    with pytest.raises(R.ResultsError, match="several counted b_only runs"):
        R.compare_modes(R.counted_runs(RunStore(tmp_path).list(), a_init=None))


def test_summary_table_is_mean_and_se_over_seeds(store):
    runs = RunStore(store).list()
    s = R.summary_table(runs, "test_accuracy")
    row = s[(s["task"] == "noisy") & (s["mode"] == "a_only")].iloc[0]
    vals = runs[(runs["task"] == "noisy") & (runs["mode"] == "a_only")]["test_accuracy"]
    assert row["mean"] == pytest.approx(vals.mean()) and row["se"] == pytest.approx(stats.sem(vals))
    assert row["n"] == 5 and math.isnan(s[s["task"] == "single"]["se"].iloc[0])
    assert list(s.columns) == list(R.SUMMARY_COLUMNS)
    assert list(s[s["task"] == "clear"]["mode"]) == ["ab", "b_only", "a_only", "head_only"]


def test_claims_are_computed_from_the_table(store):
    comparisons = R.claim_comparisons(R.counted_runs(RunStore(store).list()), "test_accuracy")
    claims = R.claim_table(comparisons)
    assert list(claims.columns) == list(R.CLAIM_COLUMNS)
    by = claims.set_index(["mode", "baseline"])
    assert by.loc[("b_only", "ab"), "n_equivalent"] == 1 and by.loc[("b_only", "ab"), "n_inconclusive"] == 2
    assert by.loc[("a_only", "head_only"), "n_worse"] == 1  # a_only = ab − 0.1 < head_only = ab + 0.1
    for (mode, base), c in by.iterrows():
        pooled = comparisons[(comparisons["mode"] == mode) & (comparisons["baseline"] == base)
                             & (comparisons["task"] == "all")].iloc[0]  # fmt: skip
        assert c["verdict"] == pooled["verdict"] and c["diff_mean"] == pooled["diff_mean"] and c["pooled"]
        support = {"b_only": ("equivalent", "better")}.get(mode if base == "ab" else "", ("better",))
        expected = (
            "yes" if c["verdict"] in support else "undecided" if c["verdict"] == "inconclusive" else "no"
        )
        assert c["holds"] == expected
    lines = R.claim_lines(claims)
    assert len(lines) == len(claims) == 5
    first = claims.iloc[0]
    assert f"{first['diff_mean']:+.3f}" in lines[0] and first["verdict"] in lines[0]


def test_no_pairs_no_rows_and_bad_input(tmp_path):
    write_run(tmp_path, "t", "ab", 0, 0.8)
    write_run(tmp_path, "u", "b_only", 0, 0.8)
    runs = RunStore(tmp_path).list()
    assert R.compare_modes(runs).empty
    with pytest.raises(R.ResultsError, match="baseline 'a_only'"):
        R.compare_modes(runs, baseline="a_only")
    with pytest.raises(R.ResultsError, match="no counted runs"):
        R.compare_modes(runs.iloc[:0])
    with pytest.raises(R.ResultsError, match="margin"):
        R.compare_modes(runs, margin=0)


# ----------------------------------------------------------------------------------------------------------
# the CLI


def test_cli_csv_and_json(store, tmp_path, capsys):
    assert main(["runs", "compare", "--store", str(store), "--format", "csv"]) == 0
    head = capsys.readouterr().out.splitlines()[0].split(",")
    assert head[:11] == list(R.COMPARE_COLUMNS)
    out = tmp_path / "c.json"
    assert main(["runs", "compare", "--store", str(store), "--baseline", "head_only", "--margin", "0.02",
                 "--format", "json", "-o", str(out)]) == 0  # fmt: skip
    rows = json.loads(out.read_text())
    assert {r["baseline"] for r in rows} == {"head_only"} and {r["margin"] for r in rows} == {0.02}


@pytest.mark.parametrize("args,message", [
    (["--store", "{missing}"], "no run store"),
    (["--store", "{empty}"], "no counted runs"),
    (["--store", "{store}", "--baseline", "zz"], "baseline 'zz'"),
    (["--store", "{store}", "--metric", "zz"], "unknown metric"),
    (["--store", "{store}", "--group", "zz"], "group 'zz'"),
    (["--store", "{store}", "--metric", "test_loss"], "nothing to compare"),
])  # fmt: skip
def test_cli_bad_input_is_one_error_line_and_exit_2(store, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "store": store}
    assert main(["runs", "compare", *[a.format(**paths) for a in args]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_mean_se_known_values():
    """results.mean_se, the one mean ± s.e. of the tables and figures: sd (ddof 1) / sqrt(n), NaN for one seed."""
    runs = pd.DataFrame({"task": "t", "mode": ["ab"] * 3 + ["b_only"], "seed": [0, 1, 2, 0],
                         "test_accuracy": [0.80, 0.81, 0.82, 0.7]})  # fmt: skip
    out = R.mean_se(runs, by=["task", "mode"], value="test_accuracy")
    assert list(out.columns) == ["task", "mode", "mean", "se", "n"]
    ab = out[out["mode"] == "ab"].iloc[0]
    assert ab["mean"] == pytest.approx(0.81) and ab["n"] == 3
    assert ab["se"] == pytest.approx(0.01 / math.sqrt(3))  # the sd of (0.80, 0.81, 0.82) is 0.01
    assert math.isnan(out[out["mode"] == "b_only"].iloc[0]["se"])


def test_alignment_by_mode_means_runs_first_then_seeds():
    rows = []
    for run, mode, values in (
        ("a0", "ab", (0.2, 0.6)),
        ("a1", "ab", (0.6, 0.6)),
        ("b0", "b_only", (0.3, 0.3)),
    ):
        for module, v in enumerate(values):  # two modules of layer 0: the run's value is their mean
            rows.append({"run_id": run, "mode": mode, "layer": 0, "module": module, "source": "trained",
                         "which": "A", "side": "input", "reference": "inputs", "similarity": v,
                         "random_baseline": 0.1})  # fmt: skip
    out = R.alignment_by_mode(pd.DataFrame(rows)).set_index("mode")
    assert out.loc["ab", "mean"] == pytest.approx(0.5) and out.loc["ab", "n"] == 2  # runs 0.4 and 0.6
    assert out.loc["ab", "se"] == pytest.approx(0.1)  # sd 0.1414 / sqrt(2)
    assert out.loc["b_only", "n"] == 1 and out.loc["ab", "random_baseline"] == pytest.approx(0.1)


def test_head_only_pairs_with_every_rank(tmp_path):
    """The control has no adapter and no rank: its runs (rank 8 in their config) are the baseline of every rank."""
    for s in range(3):
        write_run(tmp_path, "t", "head_only", s, 0.70 + 0.01 * s, rank=8)
        write_run(tmp_path, "t", "ab", s, 0.80 + 0.01 * s, rank=8)
        write_run(tmp_path, "t", "ab", s, 0.85 + 0.01 * s, rank=16)
    table = R.compare_modes(R.counted_runs(RunStore(tmp_path).list()), "test_accuracy", baseline="head_only")
    assert sorted(table["rank"]) == [8, 16] and set(table["n_pairs"]) == {3}
    assert table.set_index("rank")["diff_mean"].to_dict() == pytest.approx({8: 0.10, 16: 0.15})


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_t_test_and_interval_equal_scipy_stats(n):
    """results computes Student t from scipy.special (scipy.stats is slow to import): same numbers."""
    rng = np.random.default_rng(n)
    for _ in range(20):
        d = rng.normal(rng.normal(0, 0.05), rng.uniform(0.001, 0.1), size=n)
        margin = 0.01
        p, p_tost = R.t_test(d, margin)
        se = stats.sem(d)
        assert p == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-12)
        expected_tost = max(
            stats.t.sf((d.mean() + margin) / se, n - 1), stats.t.cdf((d.mean() - margin) / se, n - 1)
        )
        assert p_tost == pytest.approx(expected_tost, rel=1e-12)
        for level in (0.9, 0.95):
            low, high = stats.t.interval(level, n - 1, loc=d.mean(), scale=se)
            assert R.t_interval(d, level) == pytest.approx((low, high), rel=1e-12)
