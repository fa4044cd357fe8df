"""The share of one mode's gain over a control that another mode keeps, over paired seeds, with Fieller's
interval: what the mechanism test (asymviz.mechanism) observes. pandas + numpy + scipy only.

    shares = observed_shares(counted_runs(runs), "test_loss")   # one row per (model, group, task, mode)
    ratio, low, high, reason = fieller_ratio(num, den)           # mean(num) / mean(den), 95 % interval

For a frozen-factor mode m (b_only, a_only) and seeds s that have head_only, ab and m (runs pair on (seed,
init_seed), as in asymviz.results):

    share = mean_s(gain_m,s) / mean_s(gain_ab,s),   gain_x,s = L_head_only,s − L_x,s  (accuracy: x − head_only)

a ratio of paired means (not a mean of per-seed ratios, which a seed with a small A&B gain would dominate), with
Fieller's interval (Fieller 1954, "Some problems in interval estimation", J. R. Stat. Soc. B 16:175-185): the set
of ρ with (ā − ρb̄)² ≤ t²·Var(ā − ρb̄), t with n − 1 df, Var from the sample covariance of the per-seed gains.
It is exact for normal gains and is unbounded when A&B's gain is not significantly above 0: the share then has
no interval, and the row says so instead of printing one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from asymviz.results import PAIR_KEY, ResultsError, lower_is_better

FROZEN_MODES = ("b_only", "a_only")
LEVEL = 0.95
SHARE_COLUMNS = ("model", "group", "task", "mode", "rank", "n_seeds", "observed", "observed_low", "observed_high",
                 "gain_ab", "gain_ab_low", "gain_ab_high", "gap_observed", "gap_low", "gap_high", "reason")  # fmt: skip


def fieller_ratio(num: np.ndarray, den: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, str]:
    """mean(num) / mean(den) with Fieller's interval for paired samples (n ≥ 2).

    The interval is {ρ : (ā − ρb̄)² ≤ t²·Var(ā − ρb̄)}, t = t_{(1+level)/2, n−1}, Var from the sample covariance of
    (num, den) over n. Returns (ratio, low, high, reason): low/high NaN with a reason when the set is unbounded
    (the denominator's mean is not significantly away from 0 at this level) or n < 2; ratio NaN when the
    denominator's mean is ≤ 0 (no gain to share).
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num)
    if n == 0:
        return math.nan, math.nan, math.nan, "no seed has head only, A&B and this mode"
    a, b = float(num.mean()), float(den.mean())
    if not b > 0:
        return math.nan, math.nan, math.nan, f"A&B does not improve on head only (mean gain {b:+.4g})"
    ratio = a / b
    if n < 2:
        return ratio, math.nan, math.nan, "a single seed: no interval"
    cov = np.cov(num, den, ddof=1) / n  # covariance of the two means
    t2 = stats.t.ppf((1 + level) / 2, n - 1) ** 2
    q2, q1, q0 = b * b - t2 * cov[1, 1], a * b - t2 * cov[0, 1], a * a - t2 * cov[0, 0]
    if not q2 > 0:
        return (
            ratio,
            math.nan,
            math.nan,
            "A&B's gain over head only is not significantly > 0: no bounded interval",
        )
    half = math.sqrt(max(q1 * q1 - q0 * q2, 0.0))
    return ratio, (q1 - half) / q2, (q1 + half) / q2, ""


def observed_shares(runs: pd.DataFrame, metric: str = "test_loss", level: float = LEVEL) -> pd.DataFrame:
    """The observed share of A&B's gain kept by b_only and a_only, per (model, group, task).

    runs : counted runs (asymviz.results.counted_runs) of one module's mechanism test: modes head_only, ab,
        b_only, a_only; columns model, group, task, mode, rank, seed, init_seed and `metric`

    Returns
    -------
    DataFrame, one row per (model, group, task, mode), columns
        model, group, task, mode, rank, n_seeds : seeds with all of head_only, ab and the mode
        observed, observed_low, observed_high : mean gain of the mode / mean gain of A&B over head only, Fieller CI
        gain_ab, gain_ab_low, gain_ab_high : A&B's mean gain over head only (metric units, positive = better), t CI
        gap_observed, gap_low, gap_high : (gain of b_only − gain of a_only) / gain of A&B, over seeds with all four
        reason : why an interval or value is missing ("" when none is)

    Raises ResultsError when a mode has several ranks in a cell, or two counted runs for one seed.
    """
    sign = -1.0 if lower_is_better(metric) else 1.0
    if "group" not in runs:
        runs = runs.assign(group="")
    data = runs.dropna(subset=[metric])
    rows = []
    for (model, group, task), cell in data.groupby(["model", "group", "task"], sort=True, dropna=False):
        side = {}
        for mode in ("head_only", "ab", *FROZEN_MODES):
            part = cell[cell["mode"] == mode]
            if mode != "head_only" and part["rank"].nunique() > 1:
                raise ResultsError(f"{task}: {mode} runs of several ranks ({sorted(part['rank'].unique())}); "
                                     "the mechanism test takes one rank per mode")  # fmt: skip
            if part.duplicated(list(PAIR_KEY)).any():
                raise ResultsError(f"{task}: two counted {mode} runs for one seed; pass one group's runs")
            side[mode] = part.set_index(list(PAIR_KEY))
        if side["head_only"].empty or side["ab"].empty:
            continue
        base = (
            side["head_only"][metric]
            .rename("head")
            .to_frame()
            .join(side["ab"][metric].rename("ab"), how="inner")
        )
        gain_ab = sign * (base["ab"] - base["head"])
        for mode in FROZEN_MODES:
            if side[mode].empty:
                continue
            both = base.join(side[mode][metric].rename("m"), how="inner")
            num, den = sign * (both["m"] - both["head"]), sign * (both["ab"] - both["head"])
            ratio, low, high, reason = fieller_ratio(num.to_numpy(), den.to_numpy(), level)
            all4 = base.join(side["b_only"][metric].rename("b"), how="inner").join(
                side["a_only"][metric].rename("a"), how="inner")  # fmt: skip
            gap = fieller_ratio(sign * (all4["b"] - all4["a"]).to_numpy(), sign * (all4["ab"] - all4["head"]).to_numpy(),
                                level)  # fmt: skip
            g = gain_ab.loc[both.index].to_numpy(float)
            g_low, g_high = _t_interval(g, level)
            rows.append({"model": model, "group": group, "task": task, "mode": mode,
                         "rank": int(side[mode]["rank"].iloc[0]), "n_seeds": len(both), "observed": ratio,
                         "observed_low": low, "observed_high": high, "gain_ab": float(g.mean()) if len(g) else math.nan,
                         "gain_ab_low": g_low, "gain_ab_high": g_high, "gap_observed": gap[0], "gap_low": gap[1],
                         "gap_high": gap[2], "reason": reason})  # fmt: skip
    return pd.DataFrame(rows, columns=list(SHARE_COLUMNS))


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    if len(d) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, len(d) - 1) * np.std(d, ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)
