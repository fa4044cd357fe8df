"""asymviz.rank_sweep: the d/r table and the trend over d/r, on synthetic runs whose gaps are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from asymviz import rank_sweep as S
from asymviz import results as R
from asymviz.results import ResultsError

RANKS = (1, 2, 4, 8, 16, 32, 64)
D = 384


def sweep_runs(gap_slope=0.01, sd=0.002, seeds=range(5), tasks=("t1", "t2"), ranks=RANKS) -> pd.DataFrame:
    """Counted runs: a seed effect every mode shares (sd 0.05), then
    b_only − a_only = gap_slope · log2(D / r), b_only − ab = 0, ab − head_only = 0.1, each ± `sd` per run."""
    rng = np.random.default_rng(1)
    rows = []
    for task in tasks:
        for s in seeds:
            seed_effect = rng.normal(0, 0.05)
            rows.append({"mode": "head_only", "rank": 8, "value": 0.7 + seed_effect, "task": task, "seed": s})
            for r in ranks:
                base = 0.8 + seed_effect
                gap = gap_slope * np.log2(D / r)
                for mode, v in (("ab", base), ("b_only", base), ("a_only", base - gap)):
                    rows.append(
                        {"mode": mode, "rank": r, "value": v + rng.normal(0, sd), "task": task, "seed": s}
                    )
    f = pd.DataFrame(rows).rename(columns={"value": "test_accuracy"})
    return f.assign(model="tiny", group="g", init_seed=f["seed"], has_weights=False)


@pytest.fixture(scope="module")
def runs():
    return sweep_runs()


@pytest.fixture(scope="module")
def table(runs):
    return S.rank_sweep_table(runs, d_in=D)


def test_columns_rows_and_d_over_r(table):
    assert list(table.columns) == [*S.RANK_COLUMNS, *S.RANK_EXTRA]
    assert len(table) == 2 * len(S.RANK_PAIRS) * len(RANKS)  # head_only pairs with every rank
    assert (table["d_over_r"] == D / table["rank"]).all() and set(table["d_in"]) == {D}
    first = table[table["task"] == "t1"]
    # comparisons in RANK_PAIRS order, then ranks ascending
    assert list(first["mode"].iloc[: len(RANKS)]) == ["b_only"] * len(RANKS)
    assert list(first["rank"].iloc[: len(RANKS)]) == list(RANKS)


def test_known_gaps_and_verdicts(runs, table):
    ba = table[(table["mode"] == "b_only") & (table["baseline"] == "a_only")]
    expected = 0.01 * np.log2(D / ba["rank"].astype(float))
    assert np.allclose(ba["diff_mean"], expected, atol=0.004)
    assert (ba["verdict"] == "better").all()  # the smallest gap, 0.026 at r = 64, is 13 sd of the noise
    bab = table[(table["mode"] == "b_only") & (table["baseline"] == "ab")]
    assert (bab["verdict"] == "equivalent").all()
    head = table[table["baseline"] == "head_only"]
    assert (head[head["mode"] != "a_only"]["verdict"] == "better").all()
    # one row against a direct computation: mean of the paired differences, t interval, Holm over the table
    row = ba[(ba["task"] == "t2") & (ba["rank"] == 4)].iloc[0]
    part = runs[(runs["task"] == "t2") & (runs["rank"] == 4)].set_index(["mode", "seed"])["test_accuracy"]
    d = (part["b_only"] - part["a_only"]).to_numpy()
    assert row["diff_mean"] == pytest.approx(d.mean())
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    assert np.allclose(table["p_holm"], R.holm(table["p"].to_numpy(float)), equal_nan=True)


def test_trend_slope_per_seed_against_linregress(runs):
    trend = S.rank_trend_table(runs, d_in=D)
    assert list(trend.columns) == [*S.TREND_COLUMNS, *S.TREND_EXTRA]
    assert len(trend) == 2 * len(S.TREND_PAIRS)
    t = trend.set_index(["task", "mode", "baseline"])
    row = t.loc[("t1", "b_only", "a_only")]
    part = runs[runs["task"] == "t1"]
    slopes = []
    for s in range(5):
        p = part[part["seed"] == s].set_index(["mode", "rank"])["test_accuracy"]
        diff = p["b_only"].sort_index() - p["a_only"].sort_index()
        slopes.append(stats.linregress(np.log2(D / diff.index.to_numpy(float)), diff.to_numpy()).slope)
    assert row["slope"] == pytest.approx(np.mean(slopes))
    assert row["slope"] == pytest.approx(0.01, abs=0.002)
    assert row["verdict"] == "better" and row["n_seeds"] == 5 and row["n_ranks"] == len(RANKS)
    assert (row["d_over_r_min"], row["d_over_r_max"]) == (D / 64, D / 1)
    assert t.loc[("t1", "b_only", "ab"), "verdict"] == "equivalent"  # no trend within ±0.01 per doubling
    assert "grows" in S.trend_lines(trend.iloc[[0]])[0]


def test_a_shrinking_gap_is_worse_and_a_seed_missing_a_rank_is_left_out():
    runs = sweep_runs(gap_slope=-0.01, tasks=("t",))
    runs = runs[~((runs["seed"] == 4) & (runs["rank"] == 2))]
    trend = S.rank_trend_table(runs, d_in={"tiny": D}).set_index(["mode", "baseline"])
    assert trend.loc[("b_only", "a_only"), "verdict"] == "worse"
    assert trend.loc[("b_only", "a_only"), "n_seeds"] == 4


def test_d_in_read_from_a_kept_adapter(tmp_path):
    import torch

    from tests.conftest import write_adapter

    runs = sweep_runs(seeds=range(2), tasks=("t",), ranks=(4, 8))
    run_dir = tmp_path / "run"
    (run_dir / "run.json").parent.mkdir()
    (run_dir / "run.json").write_text('{"run_id": "run", "mode": "ab", "status": "completed"}')
    g = torch.Generator().manual_seed(0)
    write_adapter(run_dir / "adapter", {f"l.{i}.q": (torch.randn(4, 24, generator=g), torch.randn(16, 4, generator=g))
                                        for i in range(2)})  # fmt: skip
    runs.loc[runs.index[1], ["has_weights", "path"]] = [True, str(run_dir)]
    assert S.d_in_of(runs) == {"tiny": 24}
    assert S.d_in_of(runs.assign(targets=None)) == {"tiny": 24}  # runs that recorded no targets: any adapter
    assert sorted(set(S.rank_sweep_table(runs)["d_over_r"])) == [24 / 8, 24 / 4]
    with pytest.raises(ResultsError, match="pass d_in"):
        S.d_in_of(runs.assign(has_weights=False))
    assert S.d_in_of(runs.assign(has_weights=False), source=runs) == {"tiny": 24}  # e.g. the whole store
    slim = runs.assign(has_weights=False)
    assert set(S.rank_trend_table(slim, source=runs)["d_over_r_max"]) == {24 / 4}
    other_targets = runs.assign(targets="value")
    with pytest.raises(ResultsError, match="pass d_in"):  # an adapter of other modules does not give d_in
        S.d_in_of(other_targets.assign(has_weights=False), source=runs.assign(targets="query,value"))


def test_no_runs_or_no_pairs_raise():
    with pytest.raises(ResultsError, match="no counted runs"):
        S.rank_sweep_table(sweep_runs().iloc[:0], d_in=D)
    only_ab = sweep_runs()
    with pytest.raises(ResultsError, match="no rank has runs"):
        S.rank_sweep_table(only_ab[only_ab["mode"] == "ab"], d_in=D)
    with pytest.raises(ResultsError, match="two ranks"):
        S.rank_trend_table(sweep_runs(ranks=(8,)), d_in=D)


def test_cli_design_rank_prints_the_library_tables(tmp_path, capsys):
    import io

    from asymviz.cli import main
    from asymviz.runs import RunStore
    from tests.conftest import write_run_store

    root = write_run_store(
        tmp_path / "store", sweep_runs(seeds=range(3), tasks=("t",)).assign(group=S.RANK_GROUP)
    )
    runs = R.counted_runs(RunStore(root).list(), group=S.RANK_GROUP)
    for design, fn in (("rank", S.rank_sweep_table), ("rank-trend", S.rank_trend_table)):
        args = [
            "runs",
            "compare",
            "--store",
            str(root),
            "--design",
            design,
            "--d-in",
            str(D),
            "--format",
            "csv",
        ]
        assert main(args) == 0
        got = pd.read_csv(io.StringIO(capsys.readouterr().out))
        want = fn(runs, d_in=D)
        assert got["verdict"].tolist() == want["verdict"].tolist()
        assert np.allclose(got["ci_low"], want["ci_low"], equal_nan=True)
    assert main(["runs", "compare", "--store", str(root), "--design", "rank"]) == 2  # no adapter: no d_in
    assert "pass d_in" in capsys.readouterr().err
