"""What a run store's finished runs say: tables over seeds, paired comparisons of modes, and the paper's claims
as verdicts computed from them. pandas + numpy + scipy only; the app's Overview, bench/make_results.py
(RESULTS.md) and `asymviz runs compare` all print what these functions return.

    runs = counted_runs(RunStore("cached_runs/minilm_tasks").list())   # main, completed runs only
    summary_table(runs, "test_accuracy")            # mean ± s.e. per (model, group, task, rank, mode)
    table = compare_modes(runs, "test_accuracy", baseline="ab")   # one row per (task, rank, mode) + task "all"
    claims = claim_table(claim_comparisons(runs, "test_accuracy"))  # one row per (claim, model, group, rank)
    claim_lines(claims)                             # the same, as sentences

Statistics (every row of a comparison is one mode against a baseline in one cell (model, group, task, rank)):
- Pairing: runs of two modes pair when they share (seed, init_seed): the same batch order and head init in
  every mode, so the paired difference removes the seed's share of the noise.
- Orientation: diff = mode − baseline for a higher-is-better metric (accuracy, F1) and baseline − mode for a
  lower-is-better one (loss, perplexity), so a positive diff always means the mode is better (`lower_is_better`
  says which was used). The margin is in the metric's units.
- 95 % CI by Student's t on the paired differences (mean ± t_{0.975, n−1} · sd/√n) and a percentile bootstrap
  over seed pairs (`N_BOOT` resamples, a generator seeded from `BOOT_SEED` and the cell, so a cell's interval
  does not depend on the other cells). With 3 seeds a bootstrap can take only 10 distinct values and is too
  narrow, so per-task rows use the t interval (`ci_method` "t"); `boot_low/boot_high` are shown beside it.
- p: two-sided one-sample t-test of the paired differences (scipy.stats.ttest_1samp); `p_holm`: Holm's
  step-down correction (Holm 1979, Scand. J. Statist. 6:65-70) within two families of the returned table: the
  per-task rows, and the pooled rows (task "all", which answer another question: the mean over tasks).
- Equivalence: two one-sided tests (TOST, Schuirmann 1987, J. Pharmacokinet. Biopharm. 15:657-680; Lakens
  2017, Soc. Psychol. Personal. Sci. 8:355-362) at α = 0.05, in its interval form: equivalent when the 90 % CI
  lies strictly inside (−margin, +margin); `p_tost` is the larger one-sided p. Not multiplicity-corrected.
- Verdict: `equivalent` when the TOST passes (even if a difference is significant: it is smaller than the
  margin that matters); else `better` / `worse` when p_holm < 0.05 and the 95 % CI excludes 0; else
  `inconclusive`. Fewer than 2 pairs: `inconclusive`, with the `reason`.
- Pooled over tasks (task "all", per model, group, rank and pair of modes): the mean over tasks of each task's
  mean paired difference (tasks weigh equally); its CI is a two-level percentile bootstrap (resample tasks,
  then seed pairs within each drawn task; `ci_method` "bootstrap"), its p a one-sample t-test of the task
  means (df = tasks − 1), `t_low/t_high` that test's interval. With few tasks a percentile bootstrap is
  narrower than it should be (it only sees the tasks it has), so each verdict needs both methods: a difference
  needs the t-test's p_holm and the bootstrap CI, equivalence needs the bootstrap's and the t-over-tasks' 90 %
  intervals inside the margin (`ci90_low/ci90_high` is the hull of the two; `p_tost` the t-over-tasks TOST).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special  # Student t from its special functions: scipy.stats takes ~0.5-3 s to import

from asymviz.errors import AsymvizError

NOT_COUNTED = ("lr_grid", "lr_superseded")  # run.json roles left out of every table (asymviz.runs.ROLES)
MODE_ORDER = ("ab", "b_only", "a_only", "head_only")
METRICS = ("test_accuracy", "test_macro_f1", "test_loss", "test_perplexity", "validation_accuracy",
           "validation_loss", "heldout_accuracy", "heldout_macro_f1")  # fmt: skip
DEFAULT_METRICS = ("test_accuracy", "test_loss")  # metric=None: the first with values, per model and group
ALPHA = 0.05
MARGIN = 0.01  # equivalence margin in metric units: one point of accuracy
N_BOOT = 10_000
BOOT_SEED = 0
VERDICTS = ("better", "worse", "equivalent", "inconclusive")
SUMMARY_COLUMNS = (
    "model",
    "group",
    "task",
    "rank",
    "mode",
    "mean",
    "se",
    "n",
    "trainable_lora",
    "trainable_head",
)
COMPARE_COLUMNS = ("task", "rank", "mode", "baseline", "n_pairs", "diff_mean", "ci_low", "ci_high", "p_holm",
                   "margin", "verdict")  # fmt: skip
EXTRA_COLUMNS = ("metric", "lower_is_better", "model", "group", "n_tasks", "p", "t_low", "t_high", "boot_low",
                 "boot_high", "ci90_low", "ci90_high", "p_tost", "ci_method", "n_boot", "reason")  # fmt: skip
CELL = ("model", "group", "task", "rank")
# every pair (mode, baseline) of the three LoRA modes and the control: positive diff = mode better
ALL_PAIRS = (("b_only", "a_only"), ("b_only", "ab"), ("a_only", "ab"), ("ab", "head_only"), ("b_only", "head_only"),
             ("a_only", "head_only"))  # fmt: skip
PAIR_KEY = ("seed", "init_seed")


class ResultsError(AsymvizError):
    """A comparison that cannot be made: no runs, an unknown metric or baseline, ambiguous pairs."""


def lower_is_better(metric: str) -> bool:
    """True for losses and perplexities (compared with the sign flipped)."""
    return metric.endswith(("loss", "perplexity"))


# ----------------------------------------------------------------------------------------------------------
# which runs count


def b_only_inits(runs: pd.DataFrame) -> list[str]:
    """The frozen-A inits of the B-only runs (several in an init study), sorted."""
    return sorted(runs.loc[runs["mode"] == "b_only", "a_init"].dropna().unique())


def counted_runs(runs: pd.DataFrame, group: str | None = None, a_init: str | None = "auto") -> pd.DataFrame:
    """The runs every table counts, from `RunStore.list()`: completed, not an lr-grid run nor one superseded
    by a later lr choice (`NOT_COUNTED`); of one group folder if `group`, else each run id once; and where
    B-only runs come with several frozen-A inits, only those with `a_init` ("auto": orthogonal if present,
    else the first; None: keep all). Runs whose weights were dropped to ship the store (`weights_dropped`)
    keep their metrics and count.

    Raises ResultsError for an `a_init` none of several inits has.
    """
    runs = runs[(runs["status"] == "completed") & ~runs["role"].isin(NOT_COUNTED)]
    if group:
        runs = runs[runs["group"] == group]
    else:  # a copy of a run in the same group counts once; the same config trained in two experiments (group
        # folders) counts in each, since every cell is per group
        runs = runs.drop_duplicates(["group", "run_id"] if "group" in runs.columns else "run_id")
    inits = b_only_inits(runs)
    if a_init is not None and len(inits) > 1:
        if a_init == "auto":
            a_init = "orthogonal" if "orthogonal" in inits else inits[0]
        if a_init not in inits:
            raise ResultsError(f"a_init {a_init!r}: the B-only runs have {', '.join(inits)}")
        runs = runs[(runs["mode"] != "b_only") | (runs["a_init"] == a_init)]
    return runs.reset_index(drop=True)


def summary_table(
    runs: pd.DataFrame, metric: str, by: Sequence[str] = ("model", "group", "task", "rank", "mode")
):
    """Mean ± standard error of `metric` over the runs (seeds) of each group, in canonical mode order.

    Returns
    -------
    DataFrame with columns ``*by, mean, se, n, trainable_lora, trainable_head``: se = sample sd / √n (NaN for
    n = 1), the parameter counts the group's median. Runs without the metric are left out.
    """
    by = [c for c in by if c in runs.columns]
    data = runs.dropna(subset=[metric])
    cols = [*by, "mean", "se", "n", "trainable_lora", "trainable_head"]
    if data.empty:
        return pd.DataFrame(columns=cols)
    out = mean_se(data, by, metric)
    params = data.groupby(by, sort=False, dropna=False)[["trainable_lora", "trainable_head"]].median()
    out = out.merge(params.reset_index(), on=by, how="left")
    return _sorted(out[cols], [c for c in by if c != "mode"] + (["mode"] if "mode" in by else []))


def mean_se(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean and standard error of `value` per group, groups in order of appearance (rows without a value are
    left out): the one implementation of mean ± s.e. that every table and figure shows.

    Returns
    -------
    DataFrame with columns ``*by, mean, se, n``: se = sample sd (ddof 1) / √n, NaN when n = 1.
    """
    by = list(by)
    data = frame.dropna(subset=[value])
    if data.empty:
        return pd.DataFrame(columns=[*by, "mean", "se", "n"])
    out = (
        data.groupby(by, sort=False, dropna=False)[value].agg(mean="mean", sd="std", n="count").reset_index()
    )
    out["se"] = out["sd"] / np.sqrt(out["n"])
    out.loc[out["n"] < 2, "se"] = np.nan
    return out[[*by, "mean", "se", "n"]]


ALIGNMENT_BASELINES = {"similarity": "random_baseline", "energy_share": "energy_baseline"}


def alignment_by_mode(frame: pd.DataFrame, value: str = "similarity") -> pd.DataFrame:
    """Per (which, side, layer, mode), the trained adapters' alignment over seeds: each run's mean over the
    layer's modules, then `mean_se` over runs; the random-subspace baseline is the mean over those rows.

    frame : asymviz.probes.alignment.alignment_table rows stacked over runs, with ``run_id`` and ``mode`` added
        (``run_id, mode, layer, source, which, side, reference, <value>, <baseline>``); only source "trained"
        is used.

    Returns
    -------
    DataFrame with columns ``which, side, reference, layer, mode, mean, se, n, <baseline>`` (baseline column
    ``random_baseline`` for similarity, ``energy_baseline`` for energy_share).
    """
    baseline = ALIGNMENT_BASELINES[value]
    cols = ["which", "side", "reference", "layer", "mode", "mean", "se", "n", baseline]
    data = frame[frame["source"] == "trained"].dropna(subset=[value]) if len(frame) else frame
    if data.empty:
        return pd.DataFrame(columns=cols)
    keys = ["which", "side", "reference", "layer"]
    per_run = data.groupby([*keys, "mode", "run_id"], sort=False, dropna=False)[[value, baseline]].mean()
    per_run = per_run.reset_index()
    out = mean_se(per_run, [*keys, "mode"], value)
    base = per_run.groupby([*keys, "mode"], sort=False, dropna=False)[baseline].mean().reset_index()
    return out.merge(base, on=[*keys, "mode"], how="left")[cols]


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(MODE_ORDER)}

    def key(col):
        if col.name in ("mode", "baseline"):
            return col.map(lambda m: (order.get(m, len(order)), str(m)))
        if col.name == "task":
            return col.map(lambda t: (t == "all", str(t)))  # the pooled row after its tasks
        return col

    return frame.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# statistics on one vector of paired differences


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): p_(i) · (m − i + 1) for the i-th smallest, made
    monotone and capped at 1; NaN entries stay NaN and do not count in m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def holm_by_family(table: pd.DataFrame) -> np.ndarray:
    """Holm-adjusted p of a comparison table within two families: its per-task rows, and its pooled rows (task
    "all": an aggregate of the per-task rows, which answers another question, the mean over tasks)."""
    pooled = (table["task"] == "all").to_numpy()
    out = np.full(len(table), np.nan)
    for family in (~pooled, pooled):
        out[family] = holm(table.loc[family, "p"].to_numpy(float))
    return out


def t_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student t interval for the mean of `d` (n ≥ 2): mean ± t_{(1+level)/2, n−1} · sd / √n."""
    n = len(d)
    half = special.stdtrit(n - 1, (1 + level) / 2) * np.std(d, ddof=1) / math.sqrt(n)  # t.ppf
    return float(np.mean(d) - half), float(np.mean(d) + half)


def t_test(d: np.ndarray, margin: float) -> tuple[float, float]:
    """(two-sided p of mean = 0, TOST p of |mean| ≥ margin) for paired differences `d` (n ≥ 2)."""
    n, mean, sd = len(d), float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0:  # every pair differs by the same amount: t is ±∞ (or 0/0 at a difference of exactly 0)
        return (1.0 if mean == 0 else 0.0), (0.0 if abs(mean) < margin else 1.0)
    se = sd / math.sqrt(n)
    t = mean / math.sqrt(float(np.var(d, ddof=1)) / n)  # as scipy.stats.ttest_1samp computes it
    p = float(2 * special.stdtr(n - 1, -abs(t)))  # ttest_1samp's two-sided p: 2·t.sf(|t|)
    p_low = special.stdtr(n - 1, -(mean + margin) / se)  # t.sf: H0: mean ≤ −margin
    p_high = special.stdtr(n - 1, (mean - margin) / se)  # t.cdf: H0: mean ≥ +margin
    return p, float(max(p_low, p_high))


def _rng(key: tuple, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def bootstrap_means(d: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) means of resamples of `d` with replacement."""
    return d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)


def pooled_bootstrap_means(diffs: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) two-level bootstrap of the mean over tasks of each task's mean difference: draw k tasks with
    replacement, then resample each drawn task's seed pairs with replacement (independently per draw)."""
    k = len(diffs)
    pick = rng.integers(0, k, size=(n_boot, k))  # which task fills each of the k slots
    slot_means = np.empty((n_boot, k))
    for t, d in enumerate(diffs):
        means = d[rng.integers(0, len(d), size=(n_boot, k, len(d)))].mean(axis=2)  # (n_boot, k)
        slot_means = np.where(pick == t, means, slot_means)
    return slot_means.mean(axis=1)


# ----------------------------------------------------------------------------------------------------------
# comparisons


def paired_differences(runs: pd.DataFrame, metric: str, mode: str, baseline: str) -> pd.DataFrame:
    """One row per cell (model, group, task, rank) and shared (seed, init_seed) of `mode` and `baseline`:
    columns model, group, task, rank, seed, init_seed, diff (oriented: positive = mode better).

    A control without an adapter (asymviz.modes.CONTROL_MODES: head_only) has no rank: its runs (whatever rank
    their config names) pair with the other mode's runs of every rank.

    Raises ResultsError when a mode has two counted runs for one cell and seed pair (e.g. two learning rates
    without an lr-grid role): pick them with `counted_runs` or a group first.
    """
    from asymviz.modes import CONTROL_MODES

    data = runs.dropna(subset=[metric])
    keys = [*CELL, *PAIR_KEY]
    rankless = {m: m in CONTROL_MODES and (mode in CONTROL_MODES) != (baseline in CONTROL_MODES)
                for m in (mode, baseline)}  # fmt: skip
    sides = []
    for m in (mode, baseline):
        part = data[data["mode"] == m]
        if rankless[m]:  # one copy of the control's runs at every rank the other mode has
            ranks = data.loc[data["mode"] == (baseline if m == mode else mode), "rank"].dropna().unique()
            part = pd.concat([part.assign(rank=r) for r in ranks], ignore_index=True) if len(ranks) else part
        dup = part.duplicated(keys, keep=False)
        if dup.any():
            first = part[dup].iloc[0]
            raise ResultsError(
                f"several counted {m} runs for {first['task']} r={first['rank']} seed {first['seed']} "
                f"(group {first['group'] or '-'}): choose a group or filter the runs first"
            )
        sides.append(part[[*keys, metric]].rename(columns={metric: m}))
    merged = sides[0].merge(sides[1], on=keys, suffixes=("", "_base"))
    base = baseline if baseline != mode else f"{baseline}_base"
    sign = -1.0 if lower_is_better(metric) else 1.0
    merged["diff"] = sign * (merged[mode].astype(float) - merged[base].astype(float))
    return merged[[*keys, "diff"]]


def _row(d: np.ndarray, margin: float, n_boot: int, rng: np.random.Generator) -> dict:
    """The statistics of one task's paired differences."""
    n = len(d)
    row = {"n_pairs": n, "diff_mean": float(np.mean(d)) if n else np.nan, "ci_method": "t", "n_boot": n_boot}
    if n < 2:
        row["reason"] = "no paired seeds" if n == 0 else "a single seed pair: no estimate of the noise"
        return row
    row["t_low"], row["t_high"] = t_interval(d, 1 - ALPHA)
    row["ci_low"], row["ci_high"] = row["t_low"], row["t_high"]
    row["ci90_low"], row["ci90_high"] = t_interval(d, 1 - 2 * ALPHA)
    row["p"], row["p_tost"] = t_test(d, margin)
    boot = bootstrap_means(d, n_boot, rng)
    row["boot_low"], row["boot_high"] = np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    if np.std(d) == 0:
        row["reason"] = "the paired differences do not vary: the intervals have zero width"
    return row


def _pooled_row(diffs: list[np.ndarray], margin: float, n_boot: int, rng: np.random.Generator) -> dict:
    """The statistics of several tasks' paired differences, pooled with tasks weighing equally."""
    task_means = np.array([d.mean() for d in diffs])
    row = {"n_pairs": int(sum(len(d) for d in diffs)), "n_tasks": len(diffs), "diff_mean": float(task_means.mean()),
           "ci_method": "bootstrap", "n_boot": n_boot}  # fmt: skip
    boot = pooled_bootstrap_means(diffs, n_boot, rng)
    row["ci_low"], row["ci_high"] = np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    row["boot_low"], row["boot_high"] = row["ci_low"], row["ci_high"]
    row["t_low"], row["t_high"] = t_interval(task_means, 1 - ALPHA)
    row["p"], row["p_tost"] = t_test(task_means, margin)
    boot90 = np.percentile(boot, [100 * ALPHA, 100 * (1 - ALPHA)])
    t90 = t_interval(task_means, 1 - 2 * ALPHA)
    row["ci90_low"], row["ci90_high"] = min(boot90[0], t90[0]), max(boot90[1], t90[1])  # both must fit
    if row["n_pairs"] < 2:
        row["reason"] = "a single seed pair: no estimate of the noise"
    return row


def _verdict(row: pd.Series) -> tuple[str, str]:
    """(verdict, reason) of one row with its p_holm (see the module docstring)."""
    if row["n_pairs"] < 2 or pd.isna(row["ci_low"]):
        return "inconclusive", row["reason"] if isinstance(row["reason"], str) else "too few seed pairs"
    if -row["margin"] < row["ci90_low"] and row["ci90_high"] < row["margin"]:
        return "equivalent", "90 % CI inside ±margin (TOST)"
    if row["p_holm"] < ALPHA and (row["ci_low"] > 0 or row["ci_high"] < 0):
        return ("better" if row["diff_mean"] > 0 else "worse"), f"p_holm < {ALPHA} and the 95 % CI excludes 0"
    reason = row["reason"] if isinstance(row["reason"], str) else "neither a difference nor equivalence shown"
    return "inconclusive", reason


def _metric_of(runs: pd.DataFrame, metric: str | None) -> str:
    if metric is not None:
        if metric not in METRICS:
            raise ResultsError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric
    for m in DEFAULT_METRICS:
        if m in runs and runs[m].notna().any():
            return m
    return DEFAULT_METRICS[0]


def paired_comparisons(runs: pd.DataFrame, pairs: Sequence[tuple[str, str]], metric: str | None = None,
                       margin: float = MARGIN, pooled: bool = True, n_boot: int = N_BOOT,
                       seed: int = BOOT_SEED) -> pd.DataFrame:  # fmt: skip
    """Each (mode, baseline) of `pairs` compared over paired seeds in every cell (model, group, task, rank)
    where both have runs, plus a pooled row (task "all") per (model, group, rank) with two tasks or more.

    runs   : counted runs (`counted_runs`), columns of `RunStore.list()`
    metric : one of METRICS; None picks, per model and group, the first of DEFAULT_METRICS with values
    margin : equivalence margin, in the metric's units (> 0)

    Returns
    -------
    DataFrame with columns COMPARE_COLUMNS then EXTRA_COLUMNS (statistics in the module docstring); p_holm is
    Holm-corrected within two families: the per-task rows, and the pooled rows (task "all"). Empty (same
    columns) when no cell has both modes.
    """
    if not margin > 0:
        raise ResultsError(f"margin must be > 0, got {margin}")
    if "group" not in runs:  # a frame not from RunStore.list(): one group
        runs = runs.assign(group="")
    rows = []
    for (model, group), part in runs.groupby(["model", "group"], sort=True, dropna=False):
        m = _metric_of(part, metric)
        for mode, baseline in pairs:
            diffs = paired_differences(part, m, mode, baseline)
            for rank, by_rank in diffs.groupby("rank", sort=True):
                per_task = []
                for task, cell in by_rank.groupby("task", sort=True):
                    d = cell["diff"].to_numpy(float)
                    key = (model, group, task, int(rank), mode, baseline, m)
                    rows.append({"task": task, "rank": rank, "mode": mode, "baseline": baseline, "metric": m,
                                 "model": model, "group": group, "n_tasks": 1, **_row(d, margin, n_boot, _rng(key, seed))})  # fmt: skip
                    per_task.append(d)
                if pooled and len(per_task) > 1:
                    key = (model, group, "all", int(rank), mode, baseline, m)
                    rows.append({"task": "all", "rank": rank, "mode": mode, "baseline": baseline, "metric": m,
                                 "model": model, "group": group, **_pooled_row(per_task, margin, n_boot, _rng(key, seed))})  # fmt: skip
    out = pd.DataFrame(rows, columns=[*COMPARE_COLUMNS, *EXTRA_COLUMNS])
    if out.empty:
        return out
    out["margin"] = float(margin)
    out["lower_is_better"] = out["metric"].map(lower_is_better)
    out["p_holm"] = holm_by_family(out)
    out[["verdict", "reason"]] = [list(_verdict(r)) for _, r in out.iterrows()]
    out["rank"] = out["rank"].astype(int)
    out["n_pairs"] = out["n_pairs"].astype(int)
    return _sorted(out, ["model", "group", "baseline", "rank", "mode", "task"])


def compare_modes(runs: pd.DataFrame, metric: str | None = None, baseline: str = "ab", margin: float = MARGIN,
                  pooled: bool = True, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:  # fmt: skip
    """Every other mode against `baseline` (`paired_comparisons`). Raises ResultsError when there are no
    runs or no run of `baseline`."""
    if runs.empty:
        raise ResultsError("no counted runs to compare (completed runs that are not lr-grid runs)")
    modes = [m for m in MODE_ORDER if m in set(runs["mode"])] + sorted(set(runs["mode"]) - set(MODE_ORDER))
    if baseline not in modes:
        raise ResultsError(f"baseline {baseline!r}: no runs of that mode (modes here: {', '.join(modes)})")
    pairs = [(m, baseline) for m in modes if m != baseline]
    return paired_comparisons(runs, pairs, metric, margin, pooled, n_boot, seed)


# ----------------------------------------------------------------------------------------------------------
# the paper's claims

# (mode, baseline, what the paper expects, the verdicts that support it, the claim in words)
CLAIMS = (
    (
        "b_only",
        "ab",
        "equivalent",
        ("equivalent", "better"),
        "B only ≈ A&B (a random, frozen A costs little)",
    ),
    ("b_only", "a_only", "better", ("better",), "B only > A only (training B matters more than training A)"),
    ("ab", "head_only", "better", ("better",), "A&B > head only (the adapter adds to the trained head)"),
    ("b_only", "head_only", "better", ("better",), "B only > head only"),
    ("a_only", "head_only", "better", ("better",), "A only > head only"),
)
CLAIM_COLUMNS = ("claim", "mode", "baseline", "expected", "model", "group", "rank", "metric", "n_tasks",
                 "n_better", "n_worse", "n_equivalent", "n_inconclusive", "pooled", "n_pairs", "diff_mean",
                 "ci_low", "ci_high", "t_low", "t_high", "p_holm", "margin", "verdict", "holds")  # fmt: skip


def claim_comparisons(runs: pd.DataFrame, metric: str | None = None, margin: float = MARGIN, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED) -> pd.DataFrame:  # fmt: skip
    """`paired_comparisons` of the pairs of modes in CLAIMS that have runs (Holm over all of them together)."""
    present = set(runs["mode"])
    pairs = [(m, b) for m, b, *_ in CLAIMS if m in present and b in present]
    return paired_comparisons(runs, pairs, metric, margin, True, n_boot, seed)


def claim_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims judged on a comparison table (`claim_comparisons`): one row per claim and (model,
    group, rank) that has rows.

    Returns
    -------
    DataFrame with columns CLAIM_COLUMNS: n_better ... n_inconclusive count the per-task verdicts; pooled is
    True when the diff_mean .. verdict columns are the pooled row's (task "all"), False when they are the
    only task's; holds is "yes" (the verdict supports the claim), "no" (it contradicts it) or "undecided"
    (inconclusive).
    """
    rows = []
    for mode, baseline, expected, support, text in CLAIMS:
        part = comparisons[(comparisons["mode"] == mode) & (comparisons["baseline"] == baseline)]
        for (model, group, rank), cell in part.groupby(["model", "group", "rank"], sort=True, dropna=False):
            tasks = cell[cell["task"] != "all"]
            top = cell[cell["task"] == "all"]
            top = (top if len(top) else tasks).iloc[0]
            counts = tasks["verdict"].value_counts()
            verdict = top["verdict"]
            rows.append({
                "claim": text, "mode": mode, "baseline": baseline, "expected": expected, "model": model,
                "group": group, "rank": int(rank), "metric": top["metric"], "n_tasks": len(tasks),
                **{f"n_{v}": int(counts.get(v, 0)) for v in VERDICTS}, "pooled": top["task"] == "all",
                **{c: top[c] for c in ("n_pairs", "diff_mean", "ci_low", "ci_high", "t_low", "t_high", "p_holm",
                                       "margin", "verdict")},
                "holds": "yes" if verdict in support else ("undecided" if verdict == "inconclusive" else "no"),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


MODE_WORDS = {"ab": "A&B", "b_only": "B only", "a_only": "A only", "head_only": "head only"}


def claim_lines(claims: pd.DataFrame, digits: int = 3) -> list[str]:
    """Markdown sentences, one per row of `claim_table`: every number in them comes from that row. The
    difference is written the way round that makes positive mean "the mode is better" (baseline − mode for a
    loss)."""
    lines = []
    for _, c in claims.iterrows():
        mode, base = MODE_WORDS.get(c["mode"], c["mode"]), MODE_WORDS.get(c["baseline"], c["baseline"])
        lower = lower_is_better(c["metric"])
        what = f"{base} − {mode}" if lower else f"{mode} − {base}"
        unit = c["metric"].replace("_", " ") + (", lower is better" if lower else "")
        where = f"r = {c['rank']}" + "".join(
            f", {c[k]}" for k in ("model", "group") if claims[k].nunique() > 1 and c[k]
        )
        scope = f"mean over {c['n_tasks']} tasks" if c["pooled"] else f"{c['n_tasks']} task"
        est = f"{what} = {c['diff_mean']:+.{digits}f} ({unit}; {scope}, {c['n_pairs']} seed pair(s)"
        if pd.isna(c["ci_low"]):
            est += ", no interval)"
        elif c["pooled"]:  # the verdict needs both intervals (module docstring): show both
            est += (f"; 95 % CI by a bootstrap over tasks and seeds {c['ci_low']:+.{digits}f} to "
                    f"{c['ci_high']:+.{digits}f}, by a t-test over the {c['n_tasks']} task means "
                    f"{c['t_low']:+.{digits}f} to {c['t_high']:+.{digits}f}; Holm-adjusted p {c['p_holm']:.2g} "
                    "over the pooled rows)")  # fmt: skip
        else:
            est += (f"; 95 % CI {c['ci_low']:+.{digits}f} to {c['ci_high']:+.{digits}f}; Holm-adjusted p "
                    f"{c['p_holm']:.2g})")  # fmt: skip
        per_task = ", ".join(f"{int(c[f'n_{v}'])} {v}" for v in VERDICTS if c[f"n_{v}"])
        undecided = (f"undecided: the mean over {c['n_tasks']} tasks passes neither the test of a difference nor "
                     f"of equivalence (a t-test over {c['n_tasks']} task means has {c['n_tasks'] - 1} degree"
                     f"{'s' if c['n_tasks'] != 2 else ''} of freedom; more tasks, not more seeds, would narrow it)" if c["pooled"]
                     else "cannot tell with these seeds")  # fmt: skip
        holds = {"yes": "supports the claim", "no": "**contradicts** the claim", "undecided": undecided}[
            c["holds"]
        ]
        lines.append(f"**{c['claim']}** ({where}): {est}; verdict **{c['verdict']}** at a margin of "
                     f"±{c['margin']:g}: {holds}. Per task: {per_task}.")  # fmt: skip
    return lines
