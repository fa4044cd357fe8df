"""The paper's two accuracy claims, checked on a table of results: is B only as good as A&B, and better than
A only? Used by the app's Overview to say plainly where a store's runs agree with the paper and where not.

    verdicts = compare_modes(summary)      # summary: one row per (task, mode) with mean, se, n
    claim_lines(verdicts)                  # sentences, one per claim, with the counts behind them

A difference counts as noise when |diff| <= max(2 · se_diff, tol), se_diff = √(se1² + se2²) (tol: half a point
of accuracy by default); otherwise the first mode is "better" or "worse" (for loss-like metrics, lower is
better and the sign is flipped).
"""

from __future__ import annotations

import math

import pandas as pd

PAIRS = (("b_only", "ab"), ("a_only", "ab"), ("b_only", "a_only"))
VERDICT_COLUMNS = ("task", "first", "second", "diff", "se", "seeds", "verdict")


def verdict(diff: float, se: float, tol: float = 0.005) -> str:
    """'within noise', 'better' or 'worse' for the first mode's advantage `diff` (positive: better)."""
    band = max(2 * se if se == se else 0.0, tol)
    if abs(diff) <= band:
        return "within noise"
    return "better" if diff > 0 else "worse"


def compare_modes(summary: pd.DataFrame, lower_is_better: bool = False, tol: float = 0.005) -> pd.DataFrame:
    """One row per task and pair of modes (PAIRS) present in `summary` (columns task, mode, mean, se, and n the
    number of seeds if known): columns VERDICT_COLUMNS; diff is the first mode's advantage (mean difference, sign
    flipped when lower is better), se the standard error of the difference (NaN with a single seed), seeds the
    smaller of the two seed counts (None without n)."""
    rows = []
    sign = -1.0 if lower_is_better else 1.0
    for task, part in summary.groupby("task", sort=False):
        by_mode = part.set_index("mode")
        for first, second in PAIRS:
            if first not in by_mode.index or second not in by_mode.index:
                continue
            m1, m2 = by_mode.loc[first], by_mode.loc[second]
            diff = sign * (float(m1["mean"]) - float(m2["mean"]))
            se = math.hypot(float(m1["se"]), float(m2["se"]))
            seeds = min(int(m1["n"]), int(m2["n"])) if "n" in by_mode.columns else None
            rows.append({"task": task, "first": first, "second": second, "diff": diff, "se": se, "seeds": seeds,
                         "verdict": verdict(diff, se, tol)})  # fmt: skip
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def claim_lines(verdicts: pd.DataFrame) -> list[str]:
    """Plain sentences: for each of the paper's two claims, on how many tasks these runs agree."""
    lines = []
    b_ab = verdicts[(verdicts["first"] == "b_only") & (verdicts["second"] == "ab")]
    if len(b_ab):
        ok = b_ab["verdict"].isin(["within noise", "better"])
        worse = ", ".join(b_ab.loc[~ok, "task"].astype(str))
        lines.append(
            f"**B only ≈ A&B** (a random frozen A costs little): on {int(ok.sum())} of {len(b_ab)} task(s) B only is "
            f"within noise of A&B or better — {_word(ok.mean())}"
            + (f"; clearly worse on {worse}." if worse else ".")
        )
    b_a = verdicts[(verdicts["first"] == "b_only") & (verdicts["second"] == "a_only")]
    if len(b_a):
        better = b_a["verdict"] == "better"
        ties = int((b_a["verdict"] == "within noise").sum())
        lines.append(
            f"**B only > A only** (training B matters more than training A): B only is better on {int(better.sum())} "
            f"of {len(b_a)} task(s), within noise on {ties}, worse on {len(b_a) - int(better.sum()) - ties} — "
            f"{_word(better.mean())}."
        )
    seeds = verdicts["seeds"].dropna()
    if lines and len(seeds) and seeds.min() < 2:
        lines.append(
            "Some modes have a single seed here, so there is no estimate of the noise: treat these verdicts as "
            "anecdotes until more seeds are in."
        )
    return lines


def _word(share: float) -> str:
    if share >= 0.7:
        return "the paper's claim holds on these runs"
    if share >= 0.4:
        return "the paper's claim holds on about half of these tasks"
    return "the paper's claim does **not** hold on these runs"
