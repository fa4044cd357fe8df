"""The head factorial (issue 13, exp 3): does the trained head absorb what a frozen factor loses?

    runs = counted_runs(pd.concat([RunStore("cached_runs/minilm_tasks").list(),
                                   RunStore("cached_runs/minilm_head").list()]))
    head_factorial_table(runs)      # per head arm: the modes compared over paired seeds (results.py)
    head_interaction_table(runs)    # per task and contrast: gap with the classifier-only head − with the full head

In every mode of exp 1 the head (MiniLM's pooler + classifier, about 149k parameters) trains in full, more than
the LoRA factors; exp 3 repeats the r = 8 runs with only the classifier trained (the pooler frozen). The arm of
a run is its `head` column (RunStore.list(): the head modules it trained, comma-joined), shown as 'pooler+classifier'
or 'classifier'.

Statistics
----------
- Within an arm: asymviz.results.paired_comparisons (pairs over (seed, init_seed), t interval, Holm over every
  row of the table, both arms together, TOST at ±margin, verdicts; task "all" pools the tasks).
- Interaction (a difference in differences): per task and contrast `mode − baseline`,
  interaction = gap(classifier head) − gap(full head), each gap the mean paired difference over seeds.
  *Pairing across arms by seed.* A seed fixes the draw of every random input of a run: the data order, the
  dropout masks and (through init_seed) the LoRA and classifier init; the pooler is the pretrained one in both
  arms. So the four runs (2 modes × 2 arms) of one seed are functions of one draw, and draws are independent
  across seeds: the per-seed differences in differences dd_s = (m_cls − b_cls)_s − (m_full − b_full)_s are
  i.i.d., and a one-sample t interval on them is valid whatever their correlation within a seed (pairing can
  only remove the shared seed effect, it cannot bias the mean, which equals the difference of the two gaps).
  That is `ci_method` "paired" (results._row: t interval, t-test, TOST, bootstrap), used on the seeds all four
  cells have when there are two or more. Otherwise (seeds that do not line up across arms) the two arms' gaps
  are compared as independent samples: Welch's t interval with Welch–Satterthwaite df (scipy.stats.ttest_ind,
  equal_var=False), TOST in its interval form (the 90 % Welch interval inside ±margin), `ci_method` "welch".
  Task "all": results._pooled_row on the tasks' paired dd vectors (tasks weigh equally; two-level bootstrap and
  the t-test over task means), when every task is paired.
- Verdict: results._verdict over the interaction table with Holm over its rows: better (the gap is larger
  with the classifier-only head, i.e. the full head absorbed part of it), worse (smaller), equivalent (the
  head does not change the gap by more than ±margin), inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from asymviz import results as R
from asymviz.results import ALPHA, BOOT_SEED, MARGIN, N_BOOT, ResultsError

HEAD_GROUPS = ("minilm_tasks", "minilm_head")  # the two arms' group folders in cached_runs/ (issue 13)
FULL_HEAD = "pooler+classifier"
CLASSIFIER_HEAD = "classifier"
HEADS = (FULL_HEAD, CLASSIFIER_HEAD)
HEAD_PAIRS = R.ALL_PAIRS
FACTORIAL_COLUMNS = (
    "task",
    "head",
    "mode",
    "baseline",
    "n_pairs",
    "diff_mean",
    "ci_low",
    "ci_high",
    "verdict",
)
FACTORIAL_EXTRA = ("rank", "p_holm", "margin", "metric", "model", "p", "ci90_low", "ci90_high", "p_tost",
                   "ci_method", "reason")  # fmt: skip
INTERACTION_COLUMNS = ("task", "contrast", "diff_full_head", "diff_classifier_head", "interaction", "ci_low",
                       "ci_high", "verdict")  # fmt: skip
INTERACTION_EXTRA = ("mode", "baseline", "rank", "n_pairs", "p_holm", "margin", "metric", "model", "p", "ci90_low",
                     "ci90_high", "p_tost", "ci_method", "reason")  # fmt: skip


def head_arm(head: str | None) -> str | None:
    """The run table's `head` ("pooler,classifier") as an arm label ("pooler+classifier"); None stays None."""
    if head is None or (isinstance(head, float) and math.isnan(head)):
        return None
    return "+".join(h.strip() for h in str(head).split(","))


def _arms(runs: pd.DataFrame, rank: int) -> pd.DataFrame:
    """The runs at `rank` (the control at any rank), with `arm` from `head`; ResultsError when they lack it."""
    from asymviz.modes import CONTROL_MODES

    if runs.empty:
        raise ResultsError("no counted runs for the head factorial")
    if "head" not in runs:
        raise ResultsError("the runs have no 'head' column (RunStore.list() of this asymviz gives it)")
    runs = runs[runs["mode"].isin(CONTROL_MODES) | (runs["rank"] == rank)].copy()
    runs["arm"] = runs["head"].map(head_arm)
    if runs["arm"].isna().any():
        ids = runs.loc[runs["arm"].isna(), "run_id"].head(3).tolist() if "run_id" in runs else []
        raise ResultsError(
            f"runs without a recorded head (run.json head_modules): {', '.join(map(str, ids))}"
        )
    return runs


def head_factorial_table(runs: pd.DataFrame, metric: str | None = None, margin: float = MARGIN, rank: int = 8,
                         pairs: Sequence[tuple[str, str]] = HEAD_PAIRS, n_boot: int = N_BOOT,
                         seed: int = BOOT_SEED) -> pd.DataFrame:  # fmt: skip
    """The modes compared within each head arm (asymviz.results.paired_comparisons, pooled rows included).

    runs : counted runs of both arms (exp 1's r = 8 runs and exp 3's), columns of `RunStore.list()` incl. head
    rank : the LoRA rank compared (the head_only control, which has no rank, pairs with it)

    Returns
    -------
    DataFrame with columns FACTORIAL_COLUMNS then FACTORIAL_EXTRA: one row per (task, head, mode, baseline),
    head 'pooler+classifier' | 'classifier' (any other head as its modules joined by '+'), task "all" the mean
    over tasks; diff_mean > 0 means `mode` is better; p_holm over both arms, per-task and pooled rows apart
    (results.holm_by_family).

    Raises ResultsError when there are no runs, a run has no head recorded, or no arm has both modes of a pair.
    """
    runs = _arms(runs, rank)
    present = set(runs["mode"])
    pairs = [(m, b) for m, b in pairs if m in present and b in present]
    comp = R.paired_comparisons(runs.assign(group=runs["arm"]), pairs, metric, margin, True, n_boot, seed)
    if comp.empty:
        raise ResultsError(f"no head arm has runs of both modes of any of {list(pairs) or list(HEAD_PAIRS)}")
    comp = comp.rename(columns={"group": "head"})
    arm_order = {h: i for i, h in enumerate(HEADS)}
    pair_order = {p: i for i, p in enumerate(pairs)}
    comp["_k"] = [(arm_order.get(h, len(HEADS)), h, pair_order[(m, b)], t == "all", t)
                  for h, m, b, t in zip(comp["head"], comp["mode"], comp["baseline"], comp["task"], strict=True)]  # fmt: skip
    comp = comp.sort_values(["model", "_k"], kind="stable")
    return comp[[*FACTORIAL_COLUMNS, *FACTORIAL_EXTRA]].reset_index(drop=True)


def _welch_row(d_full: np.ndarray, d_cls: np.ndarray, margin: float) -> dict:
    """Welch's t statistics of mean(d_cls) − mean(d_full) for two independent samples (each n ≥ 2)."""
    test = stats.ttest_ind(d_cls, d_full, equal_var=False)
    v1, v2 = d_cls.var(ddof=1) / len(d_cls), d_full.var(ddof=1) / len(d_full)
    se = math.sqrt(v1 + v2)
    diff = float(d_cls.mean() - d_full.mean())
    row = {
        "n_pairs": len(d_cls) + len(d_full),
        "diff_mean": diff,
        "ci_method": "welch",
        "p": float(test.pvalue),
    }
    if se == 0:
        row.update(t_low=diff, t_high=diff, ci_low=diff, ci_high=diff, ci90_low=diff, ci90_high=diff,
                   p=1.0 if diff == 0 else 0.0, p_tost=0.0 if abs(diff) < margin else 1.0,
                   reason="the differences do not vary: the intervals have zero width")  # fmt: skip
        return row
    df = (v1 + v2) ** 2 / (v1**2 / (len(d_cls) - 1) + v2**2 / (len(d_full) - 1))  # Welch–Satterthwaite
    for level, lo, hi in ((1 - ALPHA, "ci_low", "ci_high"), (1 - 2 * ALPHA, "ci90_low", "ci90_high")):
        half = stats.t.ppf((1 + level) / 2, df) * se
        row[lo], row[hi] = diff - half, diff + half
    row["t_low"], row["t_high"] = row["ci_low"], row["ci_high"]
    row["p_tost"] = float(max(stats.t.sf((diff + margin) / se, df), stats.t.cdf((diff - margin) / se, df)))
    return row


def head_interaction_table(runs: pd.DataFrame, metric: str | None = None, margin: float = MARGIN, rank: int = 8,
                           pairs: Sequence[tuple[str, str]] = HEAD_PAIRS, n_boot: int = N_BOOT,
                           seed: int = BOOT_SEED) -> pd.DataFrame:  # fmt: skip
    """How much each gap `mode − baseline` changes when only the classifier trains (see the module docstring).

    Returns
    -------
    DataFrame with columns INTERACTION_COLUMNS then INTERACTION_EXTRA: one row per (task, contrast) where
    both arms have both modes, contrast 'b_only - a_only' etc., task "all" the mean over tasks (when every
    task pairs by seed); diff_full_head / diff_classifier_head the two gaps (mean paired difference over each
    arm's seeds, positive = mode better), interaction their difference (classifier − full; with "paired", the
    mean over the seeds both arms have, which is that difference when the arms have the same seeds) with its 95 % CI
    (ci_method "paired": t over the per-seed differences in differences; "welch": two independent samples),
    n_pairs the seeds of the paired estimate (or the two arms' seed pairs together for Welch), p_holm Holm
    over the rows, verdict better / worse / equivalent / inconclusive as in asymviz.results.

    Raises ResultsError when there are no runs, a run has no head recorded, or no contrast has both arms.
    """
    runs = _arms(runs, rank)
    unknown = set(runs["arm"]) - set(HEADS)
    if unknown:
        raise ResultsError(
            f"head arms {sorted(unknown)}: the interaction compares {' and '.join(HEADS)} only"
        )
    rows = []
    for model, part in runs.groupby("model", sort=True):
        m = R._metric_of(part, metric)
        for mode, baseline in pairs:
            if not {mode, baseline} <= set(part["mode"]):
                continue
            arms = {arm: R.paired_differences(part[part["arm"] == arm], m, mode, baseline) for arm in HEADS}
            paired_dd = []
            for task in sorted(set(arms[FULL_HEAD]["task"]) & set(arms[CLASSIFIER_HEAD]["task"])):
                key = [*R.PAIR_KEY]
                full = arms[FULL_HEAD][arms[FULL_HEAD]["task"] == task].set_index(key)["diff"]
                cls = arms[CLASSIFIER_HEAD][arms[CLASSIFIER_HEAD]["task"] == task].set_index(key)["diff"]
                common = full.index.intersection(cls.index)
                rng = R._rng((model, task, mode, baseline, m, "head interaction"), seed)
                if len(common) >= 2:
                    dd = (cls.loc[common] - full.loc[common]).to_numpy(float)
                    stat = R._row(dd, margin, n_boot, rng) | {"ci_method": "paired"}
                    paired_dd.append(dd)
                elif len(full) >= 2 and len(cls) >= 2:
                    stat = _welch_row(full.to_numpy(float), cls.to_numpy(float), margin)
                    paired_dd.append(None)
                else:
                    stat = {"n_pairs": len(common), "diff_mean": float(cls.mean() - full.mean()),
                            "ci_method": "paired", "reason": "fewer than two seeds in an arm"}  # fmt: skip
                    paired_dd.append(None)
                rows.append({"task": task, "contrast": f"{mode} - {baseline}", "diff_full_head": float(full.mean()),
                             "diff_classifier_head": float(cls.mean()), "mode": mode, "baseline": baseline,
                             "rank": rank, "metric": m, "model": model, **stat})  # fmt: skip
            done = [d for d in paired_dd if d is not None]
            if len(paired_dd) > 1 and len(done) == len(paired_dd):
                tasks = [
                    r for r in rows if r["model"] == model and r["mode"] == mode and r["baseline"] == baseline
                ]
                key = (model, "all", mode, baseline, m, "head interaction")
                stat = R._pooled_row(done, margin, n_boot, R._rng(key, seed))
                rows.append({"task": "all", "contrast": f"{mode} - {baseline}",
                             "diff_full_head": float(np.mean([r["diff_full_head"] for r in tasks])),
                             "diff_classifier_head": float(np.mean([r["diff_classifier_head"] for r in tasks])),
                             "mode": mode, "baseline": baseline, "rank": rank, "metric": m, "model": model,
                             **stat, "ci_method": "bootstrap"})  # fmt: skip
    cols = [*INTERACTION_COLUMNS, *INTERACTION_EXTRA]
    out = pd.DataFrame(rows, columns=[*cols, "diff_mean"])
    if out.empty:
        raise ResultsError("no task has runs of both modes of a contrast in both head arms")
    out["interaction"] = out["diff_mean"]
    out["margin"] = float(margin)
    out["p_holm"] = R.holm_by_family(out)
    out[["verdict", "reason"]] = [list(R._verdict(r)) for _, r in out.iterrows()]
    out["n_pairs"] = out["n_pairs"].astype(int)
    return out[cols].reset_index(drop=True)


def interaction_lines(table: pd.DataFrame, digits: int = 3) -> list[str]:
    """One Markdown sentence per pooled row (task "all") of `head_interaction_table` with the per-task verdict
    counts of its contrast, or per row where no contrast has a pooled row; every number from the table."""
    pooled = (table["task"] == "all").any()
    rows = table[table["task"] == "all"] if pooled else table
    lines = []
    for _, t in rows.iterrows():
        mode, base = R.MODE_WORDS.get(t["mode"], t["mode"]), R.MODE_WORDS.get(t["baseline"], t["baseline"])
        ci = ("no interval" if pd.isna(t["ci_low"]) else
              f"95 % CI {t['ci_low']:+.{digits}f} to {t['ci_high']:+.{digits}f}, Holm-adjusted p {t['p_holm']:.2g}")  # fmt: skip
        where = "mean over tasks" if t["task"] == "all" else t["task"]
        line = (
            f"**{mode} − {base}, classifier-only head vs pooler + classifier ({where})**: gap "
            f"{t['diff_classifier_head']:+.{digits}f} vs {t['diff_full_head']:+.{digits}f}, interaction "
            f"{t['interaction']:+.{digits}f} ({ci}); verdict **{t['verdict']}** at ±{t['margin']:g}."
        )
        if pooled:
            tasks = table[(table["contrast"] == t["contrast"]) & (table["task"] != "all")]
            counts = tasks["verdict"].value_counts()
            line += (
                " Per task: " + ", ".join(f"{int(counts[v])} {v}" for v in R.VERDICTS if v in counts) + "."
            )
        lines.append(line)
    return lines
