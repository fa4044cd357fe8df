"""The d/r sweep (issue 13, exp 2): how the gaps between LoRA modes move with the rank r, i.e. with d/r.

    runs = counted_runs(RunStore("cached_runs/minilm_rank").list())
    rank_sweep_table(runs)        # one row per (task, rank, comparison): B − A, B − A&B, ... with CIs
    rank_trend_table(runs)        # one row per (task, comparison): the gap's slope per doubling of d/r

Zhu et al. (2024, Section 4.1; asymviz.theory) show in linear regression that B only with a random frozen A
and A only with a random frozen B lose differently as the share r/d of the input space a factor sees shrinks,
so B-only's edge over A-only should grow with d/r (the issue's reading of the paper, tested here). MiniLM's query and value are 384 × 384: d/r runs from 384 (r = 1) to 6 (r = 64).

Statistics are asymviz.results' (nothing is re-implemented here): the per-rank rows are
`results.paired_comparisons` (paired over (seed, init_seed), t interval, Holm over every row of the table, TOST
equivalence at ±margin, verdicts better / worse / equivalent / inconclusive; the head_only control has no rank
and pairs with every rank). The trend rows: for each seed pair, the paired difference at each rank regressed on
log2(d/r) by ordinary least squares (`numpy.polyfit`, degree 1) gives one slope per seed (a within-seed
contrast: the seeds share batch order and init across ranks); the slopes over seeds then get exactly the
per-task statistics of a paired difference (`results._row`: t interval, t-test, TOST at ±margin per doubling,
bootstrap) and the verdict rule (`results._verdict`), Holm over the rows of the trend table. A seed pair counts
only where it has every rank its task has, so every slope is fitted on the same design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from asymviz import results as R
from asymviz.results import BOOT_SEED, MARGIN, N_BOOT, ResultsError

# (mode, baseline): positive diff = mode better (results.py's orientation)
RANK_PAIRS = R.ALL_PAIRS
RANK_GROUP = "minilm_rank"  # the d/r sweep's group folder in cached_runs/ (issue 13)
TREND_PAIRS = (("b_only", "a_only"), ("b_only", "ab"))  # the two gaps the paper's theory speaks to
RANK_COLUMNS = ("task", "rank", "d_in", "d_over_r", "mode", "baseline", "n_pairs", "diff_mean", "ci_low",
                "ci_high", "p_holm", "margin", "verdict")  # fmt: skip
RANK_EXTRA = ("metric", "model", "group", "p", "ci90_low", "ci90_high", "p_tost", "ci_method", "reason")
TREND_COLUMNS = ("task", "mode", "baseline", "n_ranks", "d_over_r_min", "d_over_r_max", "n_seeds", "slope",
                 "ci_low", "ci_high", "p_holm", "margin", "verdict")  # fmt: skip
TREND_EXTRA = ("metric", "model", "group", "p", "ci90_low", "ci90_high", "p_tost", "reason")
TREND_WORDS = {"better": "grows", "worse": "shrinks", "equivalent": "flat", "inconclusive": "inconclusive"}
TREND_SENTENCES = {"better": "the gap **grows** with d/r", "worse": "the gap **shrinks** as d/r grows",
                   "equivalent": "the gap **stays flat** across d/r", "inconclusive": "**cannot tell** whether the gap moves"}  # fmt: skip


def d_in_of(runs: pd.DataFrame, d_in: int | Mapping[str, int] | None = None,
            source: pd.DataFrame | None = None) -> dict[str, int]:  # fmt: skip
    """{model: d_in} of the adapted modules, the d of d/r.

    d_in   : an int (every model), a {model: int} mapping, or None: read from the first run of each model that
        keeps its trained adapter (`has_weights`; the modules' A is r × d_in), which must give every adapted
        module one d_in
    source : where to look for such a run (default: `runs`), e.g. the whole store when the sweep's own runs
        were shipped without weights; only runs of the same model and, where the column exists, the same
        `targets` as `runs` count

    Raises ResultsError when a model has no run with weights (pass d_in) or its modules differ in d_in.
    """
    models = sorted(runs["model"].dropna().unique())
    if isinstance(d_in, int):
        return dict.fromkeys(models, d_in)
    given = dict(d_in or {})
    out = {}
    for model in models:
        if model in given:
            out[model] = int(given[model])
            continue
        pool = runs if source is None else source
        kept = pool[(pool["model"] == model) & pool.get("has_weights", False) & (pool["mode"] != "head_only")]
        targets = runs.loc[runs["model"] == model, "targets"].dropna().unique() if "targets" in runs else []
        if len(targets) and "targets" in kept:  # runs that recorded no targets cannot be matched: any counts
            kept = kept[kept["targets"].isin(targets)]
        if kept.empty:
            raise ResultsError(f"d_in of {model}: no run keeps its adapter; pass d_in (e.g. 384 for MiniLM)")
        from asymviz.runs import RunRecord

        adapter = RunRecord.load(kept["path"].iloc[0]).load_adapter()
        dims = {spec.d_in for spec in adapter.modules}  # from the file's header: no tensor is read
        if len(dims) != 1:
            raise ResultsError(f"d_in of {model}: the adapted modules have d_in {sorted(dims)}; pass d_in")
        out[model] = dims.pop()
    return out


def rank_sweep_table(runs: pd.DataFrame, metric: str | None = None, margin: float = MARGIN,
                     d_in: int | Mapping[str, int] | None = None, pairs: Sequence[tuple[str, str]] = RANK_PAIRS,
                     n_boot: int = N_BOOT, seed: int = BOOT_SEED, source: pd.DataFrame | None = None,
                     ) -> pd.DataFrame:  # fmt: skip
    """Each comparison of `pairs` at every rank, per task (asymviz.results.paired_comparisons, no pooled row).

    runs   : counted runs of the d/r sweep (`results.counted_runs`), columns of `RunStore.list()`
    metric : one of results.METRICS; None: test_accuracy, else test_loss
    margin : equivalence margin in the metric's units (> 0)
    d_in   : the adapted modules' input dimension (see `d_in_of`); d_over_r = d_in / rank
    source : runs to read d_in from when `d_in` is None (`d_in_of`), e.g. the whole store's `RunStore.list()`:
        a slimmed sweep keeps no adapter of its own

    Returns
    -------
    DataFrame with columns RANK_COLUMNS then RANK_EXTRA: one row per (task, rank, mode, baseline) where both
    modes have runs, sorted by task, comparison (in `pairs` order) and rank; diff_mean > 0 means `mode` is
    better; p_holm is Holm-corrected over every row; verdict better / worse / equivalent / inconclusive.

    Raises ResultsError when there are no runs or no comparison has runs of both modes.
    """
    if runs.empty:
        raise ResultsError("no counted runs for the d/r sweep")
    present = set(runs["mode"])
    pairs = [(m, b) for m, b in pairs if m in present and b in present]
    comp = R.paired_comparisons(runs, pairs, metric, margin, pooled=False, n_boot=n_boot, seed=seed)
    if comp.empty:
        raise ResultsError(f"no rank has runs of both modes of any of {pairs or list(RANK_PAIRS)}")
    dims = d_in_of(runs, d_in, source)
    comp["d_in"] = comp["model"].map(dims).astype(int)
    comp["d_over_r"] = comp["d_in"] / comp["rank"]
    order = {p: i for i, p in enumerate(pairs)}
    comp["_pair"] = [order[(m, b)] for m, b in zip(comp["mode"], comp["baseline"], strict=True)]
    comp = comp.sort_values(["model", "group", "task", "_pair", "rank"], kind="stable")
    return comp[[*RANK_COLUMNS, *RANK_EXTRA]].reset_index(drop=True)


def rank_trend_table(runs: pd.DataFrame, metric: str | None = None, margin: float = MARGIN,
                     d_in: int | Mapping[str, int] | None = None, pairs: Sequence[tuple[str, str]] = TREND_PAIRS,
                     n_boot: int = N_BOOT, seed: int = BOOT_SEED, source: pd.DataFrame | None = None,
                     ) -> pd.DataFrame:  # fmt: skip
    """Does the gap `mode − baseline` grow with d/r? One slope per seed pair, then statistics over seeds.

    For each task and seed pair (seed, init_seed) that has every rank of the task, the paired differences
    (`results.paired_differences`, positive = mode better) are regressed on log2(d_in / rank); slope is the
    mean over seed pairs of those slopes, in metric units per doubling of d/r. Interval, p, TOST and verdict
    as for a per-task paired difference in asymviz.results, Holm over the rows of this table. The equivalence
    margin is `margin` over the whole d/r range the task spans: a slope within ±margin / log2(d/r max / d/r min)
    per doubling (the `margin` column) moves the gap by less than ±margin from the smallest rank to the largest,
    the margin every other verdict uses. d_in and source as in `rank_sweep_table`.

    Returns
    -------
    DataFrame with columns TREND_COLUMNS then TREND_EXTRA: one row per (task, mode, baseline) with two ranks
    or more; verdict is results.py's word for the slope: better (the gap grows with d/r, i.e. as r shrinks),
    worse (it shrinks), equivalent (|slope| < margin, TOST), inconclusive (TREND_WORDS says it in words).
    """
    if runs.empty:
        raise ResultsError("no counted runs for the d/r sweep")
    dims = d_in_of(runs, d_in, source)
    if "group" not in runs:
        runs = runs.assign(group="")
    present = set(runs["mode"])
    rows = []
    for (model, group), part in runs.groupby(["model", "group"], sort=True, dropna=False):
        m = R._metric_of(part, metric)
        for mode, baseline in pairs:
            if mode not in present or baseline not in present:
                continue
            diffs = R.paired_differences(part, m, mode, baseline)
            diffs["x"] = np.log2(dims[model] / diffs["rank"].astype(float))
            for task, cell in diffs.groupby("task", sort=True):
                ranks = sorted(cell["rank"].unique())
                if len(ranks) < 2:
                    continue
                slopes = [np.polyfit(g["x"].to_numpy(float), g["diff"].to_numpy(float), 1)[0]
                          for _, g in cell.groupby(list(R.PAIR_KEY), sort=True, dropna=False) if g["rank"].nunique() == len(ranks)]  # fmt: skip
                key = (model, group, task, "trend", mode, baseline, m)
                per_doubling = margin / np.log2(max(ranks) / min(ranks))  # ±margin over the whole d/r range
                row = R._row(np.asarray(slopes, float), per_doubling, n_boot, R._rng(key, seed))
                row["margin"] = per_doubling
                row["slope"] = row.pop("diff_mean")
                row["n_seeds"] = row.pop("n_pairs")
                rows.append({"task": task, "mode": mode, "baseline": baseline, "n_ranks": len(ranks),
                             "d_over_r_min": dims[model] / max(ranks), "d_over_r_max": dims[model] / min(ranks),
                             "metric": m, "model": model, "group": group, **row})  # fmt: skip
    out = pd.DataFrame(rows, columns=[*TREND_COLUMNS, *TREND_EXTRA, "n_pairs", "diff_mean"])
    if out.empty:
        raise ResultsError("no task has two ranks or more with runs of both modes")
    out["p_holm"] = R.holm(out["p"].to_numpy(float))
    out["n_pairs"], out["diff_mean"] = out["n_seeds"], out["slope"]  # the names results._verdict reads
    out[["verdict", "reason"]] = [list(R._verdict(r)) for _, r in out.iterrows()]
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out[[*TREND_COLUMNS, *TREND_EXTRA]].reset_index(drop=True)


def trend_lines(trend: pd.DataFrame, digits: int = 3) -> list[str]:
    """One Markdown sentence per row of `rank_trend_table`, every number from that row."""
    lines = []
    for _, t in trend.iterrows():
        mode, base = R.MODE_WORDS.get(t["mode"], t["mode"]), R.MODE_WORDS.get(t["baseline"], t["baseline"])
        ci = ("no interval" if pd.isna(t["ci_low"]) else
              f"95 % CI {t['ci_low']:+.{digits}f} to {t['ci_high']:+.{digits}f}, Holm-adjusted p {t['p_holm']:.2g}")  # fmt: skip
        lines.append(
            f"**{mode} − {base} against d/r, {t['task']}**: slope {t['slope']:+.{digits}f} {t['metric']} per "
            f"doubling of d/r ({t['n_ranks']} ranks, d/r {t['d_over_r_min']:g} to {t['d_over_r_max']:g}; "
            f"{t['n_seeds']} seed(s); {ci}): {TREND_SENTENCES[t['verdict']]} "
            f"(verdict {t['verdict']} at ±{t['margin']:.2g} per doubling, i.e. ±"
            f"{t['margin'] * np.log2(t['d_over_r_max'] / t['d_over_r_min']):.2g} over the range)."
        )
    return lines
