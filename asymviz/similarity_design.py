"""The 2×2 similarity design (issue 13, exp 5): is a learned factor shared because of its init or its task?

    runs = design_runs(RunStore("cached_runs/similarity").list())   # ab, one rank, runs with adapters
    pairs = similarity_pairs(runs)        # one row per (pair of runs, factor): mean similarity over modules
    similarity_2x2(pairs)                 # one row per (factor, same init?, same task?) with a 95 % CI
    similarity_contrasts(pairs)           # init effect, task effect, B − A per cell, each cell vs chance

Runs cross tasks × init_seed × seed (init_seed draws A, B and the head at step 0; seed draws the batch order
and dropout). Every pair of runs falls in one of four cells: same init × same task (the two differ only in
seed), same init × other task, other init × same task, other init × other task. Zhu et al. (2024, Figure 1)
find learned A's similar across tasks; follow-up work argues that comes from the shared init (A barely moves
from it) and that B may be the factor tasks share: the 2×2 separates the two readings, for A and for B.

Similarity: asymviz.similarity's ‖U1ᵀU2‖²_F / min(k1, k2) of A's row space and B's column space per module,
computed by `pairwise_similarity` (each module read once from every adapter, one stacked Gram, each adapter's
bases computed once: asymviz.similarity.ModuleGroup), then averaged over the modules (the pair's similarity).
random_baseline is `similarity.random_baseline`, max(k1, k2)/d, averaged the same way.

Interval: the pairs are not independent (a run sits in many pairs), so the 95 % interval is a percentile
bootstrap over runs, the vertex bootstrap of dyadic data (Snijders & Borgatti 1999, Connections 22:161-170):
draw the N runs with replacement (counts w_i) and take each cell's weighted mean Σ w_i w_j s_ij / Σ w_i w_j
over its pairs of distinct runs (a run drawn twice is not paired with itself). One set of draws serves every
cell, factor and contrast, so contrasts are differences of cell means within each draw. It treats runs as
exchangeable draws; with 3 init draws and 4 tasks a bootstrap over inits or tasks would have too few units,
so the clustering by init or task beyond the shared runs is not in the interval: read it as a lower bound on
the uncertainty about other inits and tasks. Verdict of a contrast: higher (the 95 % interval is above 0),
lower (below), inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from asymviz.results import ALPHA, BOOT_SEED, N_BOOT, ResultsError

if TYPE_CHECKING:
    from asymviz.adapters import LoraAdapter

SIMILARITY_GROUP = "similarity"  # the 2×2's group folder in cached_runs/ (issue 13)
FACTORS = ("A", "B")
PAIR_COLUMNS = ("run_1", "run_2", "task_1", "task_2", "init_seed_1", "init_seed_2", "seed_1", "seed_2",
                "same_init", "same_task", "which", "modules", "similarity", "random_baseline", "k")  # fmt: skip
CELL_COLUMNS = (
    "which",
    "same_init",
    "same_task",
    "n_pairs",
    "mean",
    "ci_low",
    "ci_high",
    "random_baseline",
    "k",
)
CELL_EXTRA = ("n_runs", "ci_method", "n_boot")
CONTRAST_COLUMNS = ("which", "contrast", "estimate", "ci_low", "ci_high", "verdict", "n_boot")
CELLS = ((True, True), (True, False), (False, True), (False, False))  # (same_init, same_task), display order


def cell_name(same_init: bool, same_task: bool) -> str:
    return f"{'same' if same_init else 'other'} init, {'same' if same_task else 'other'} task"


def design_runs(runs: pd.DataFrame, mode: str = "ab", rank: int | None = None) -> pd.DataFrame:
    """The runs of a 2×2 design from `RunStore.list()`: counted (asymviz.results.counted_runs), of `mode`,
    at `rank` (None: the only rank there is), with their trained adapter kept (`has_weights`).

    Raises ResultsError when fewer than two runs qualify, several ranks or models are left, or two runs
    share task, init_seed and seed (the same configuration twice: no cell for that pair).
    """
    from asymviz.results import counted_runs

    runs = counted_runs(runs, a_init=None)
    runs = runs[(runs["mode"] == mode) & runs["has_weights"].astype(bool)]
    if rank is not None:
        runs = runs[runs["rank"] == rank]
    for col in ("rank", "model"):
        values = sorted(runs[col].dropna().unique())
        if len(values) > 1:
            raise ResultsError(f"the {mode} runs with adapters have several {col}s ({values}): choose one")
    if len(runs) < 2:
        raise ResultsError(f"fewer than two counted {mode} runs with their adapter kept (found {len(runs)})")
    dup = runs.duplicated(["task", "init_seed", "seed"], keep=False)
    if dup.any():
        first = runs[dup].iloc[0]
        raise ResultsError(f"several runs of {first['task']} with init_seed {first['init_seed']} and seed "
                           f"{first['seed']} (the same configuration twice): filter them first")  # fmt: skip
    return runs.reset_index(drop=True)


def similarity_pairs(runs: pd.DataFrame, adapters: Sequence[LoraAdapter] | None = None,
                     which: Sequence[str] = FACTORS, progress: Callable[[int], None] | None = None,
                     workers: int | None = None) -> pd.DataFrame:  # fmt: skip
    """Every pair of runs (i < j), classified into the 2×2 and scored per factor (mean over modules).

    runs     : `design_runs` output (columns run_id, task, init_seed, seed and, without `adapters`, path)
    adapters : the runs' trained adapters in the same order (default: loaded from each run folder)
    which    : factors, among "A" (row space of A, d = d_in) and "B" (column space of B, d = d_out)

    Returns
    -------
    DataFrame with columns PAIR_COLUMNS: one row per (pair, factor); similarity and random_baseline are the
    means over the modules where both subspaces are non-empty (`modules` = how many), k the median over them
    of min(k1, k2), the numerical rank of the smaller subspace (r for full-rank factors).

    Raises ResultsError for fewer than two runs or duplicate run ids, ValueError for an unknown factor.
    """
    from asymviz.similarity import pairwise_similarity

    bad = [w for w in which if w not in FACTORS]
    if bad:
        raise ValueError(f"which must be among {FACTORS}, got {bad}")
    if len(runs) < 2 or runs["run_id"].duplicated().any():
        raise ResultsError("the 2×2 needs two runs or more, each once")
    if adapters is None:
        from asymviz.runs import RunRecord

        adapters = [RunRecord.load(p).load_adapter() for p in runs["path"]]
    if len(adapters) != len(runs):
        raise ResultsError(f"{len(adapters)} adapters for {len(runs)} runs")
    ids = [str(r) for r in runs["run_id"]]
    sim = pairwise_similarity(adapters, names=ids, which=tuple(which), pairs="upper", progress=progress,
                              workers=workers).dropna(subset=["similarity"])  # fmt: skip
    sim["kmin"] = np.minimum(sim["k1"], sim["k2"])
    g = sim.groupby(["adapter_1", "adapter_2", "which"], sort=False)
    out = g.agg(modules=("similarity", "size"), similarity=("similarity", "mean"),
                random_baseline=("random_baseline", "mean"), k=("kmin", "median")).reset_index()  # fmt: skip
    out["k"] = out["k"].round().astype(int)
    meta = runs.set_index(runs["run_id"].astype(str))[["task", "init_seed", "seed"]]
    for n, col in ((1, "adapter_1"), (2, "adapter_2")):
        m = meta.loc[out[col]]
        out[f"run_{n}"] = out[col]
        for c in ("task", "init_seed", "seed"):
            out[f"{c}_{n}"] = m[c].to_numpy()
    out["same_init"] = (out["init_seed_1"] == out["init_seed_2"]).astype(bool)
    out["same_task"] = (out["task_1"] == out["task_2"]).astype(bool)
    order = {w: i for i, w in enumerate(which)}
    out = out.sort_values("which", key=lambda c: c.map(order), kind="stable")
    return out[list(PAIR_COLUMNS)].reset_index(drop=True)


def vertex_bootstrap_means(
    i: np.ndarray, j: np.ndarray, values: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """(n_boot,) weighted means Σ_p w_{i_p} w_{j_p} v_p / Σ_p w_{i_p} w_{j_p} over pairs p = (i_p, j_p) of
    distinct runs, w = counts (n_boot × N: how often each run was drawn); NaN where no pair was drawn."""
    weight = counts[:, i] * counts[:, j]  # (n_boot, pairs)
    total = weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weight * values).sum(axis=1) / total, np.nan)


def _draws(pairs: pd.DataFrame, n_boot: int, seed: int) -> tuple[dict, np.ndarray, int]:
    """Run indices of each pair and the bootstrap's draw counts (n_boot × N runs), seeded by `seed`."""
    runs = pd.Index(sorted(set(pairs["run_1"]) | set(pairs["run_2"])))
    n = len(runs)
    rng = np.random.default_rng([seed, n])
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    index = {"i": runs.get_indexer(pairs["run_1"]), "j": runs.get_indexer(pairs["run_2"])}
    return index, counts, n


def _cell_draws(pairs: pd.DataFrame, n_boot: int, seed: int) -> tuple[dict, int]:
    """{(which, same_init, same_task): (estimate, (n_boot,) bootstrap means, rows)} over the cells present."""
    index, counts, n = _draws(pairs, n_boot, seed)
    out = {}
    for (w, si, st), part in pairs.groupby(["which", "same_init", "same_task"], sort=False):
        rows = part.index.to_numpy()
        boot = vertex_bootstrap_means(
            index["i"][rows], index["j"][rows], part["similarity"].to_numpy(float), counts
        )
        out[(w, bool(si), bool(st))] = (float(part["similarity"].mean()), boot, part)
    return out, n


def _interval(boot: np.ndarray) -> tuple[float, float]:
    ok = boot[~np.isnan(boot)]
    if ok.size == 0:
        return np.nan, np.nan
    lo, hi = np.percentile(ok, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(lo), float(hi)


def similarity_2x2(pairs: pd.DataFrame, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """The four cells per factor: mean similarity over the cell's pairs with a vertex-bootstrap 95 % CI.

    pairs : `similarity_pairs` output

    Returns
    -------
    DataFrame with columns CELL_COLUMNS then CELL_EXTRA: one row per (which, same_init, same_task) that has
    pairs, in CELLS order; mean over pairs (each pair weighs alike), ci_low / ci_high the percentile interval
    of the bootstrap over runs (module docstring), random_baseline the cell's mean baseline (max(k1, k2)/d),
    k the median of the pairs' k, n_runs the runs in the cell's pairs, ci_method "run bootstrap", n_boot the
    bootstrap draws that held a pair of the cell (draws without one are left out of the interval).

    Raises ResultsError when `pairs` is empty.
    """
    if pairs.empty:
        raise ResultsError("no pairs of runs to put in the 2×2")
    draws, _ = _cell_draws(pairs, n_boot, seed)
    rows = []
    for w in [f for f in FACTORS if f in set(pairs["which"])]:
        for si, st in CELLS:
            if (w, si, st) not in draws:
                continue
            est, boot, part = draws[(w, si, st)]
            lo, hi = _interval(boot)
            rows.append({"which": w, "same_init": si, "same_task": st, "n_pairs": len(part), "mean": est,
                         "ci_low": lo, "ci_high": hi, "random_baseline": float(part["random_baseline"].mean()),
                         "k": int(np.median(part["k"])), "n_runs": len(set(part["run_1"]) | set(part["run_2"])),
                         "ci_method": "run bootstrap", "n_boot": int((~np.isnan(boot)).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=[*CELL_COLUMNS, *CELL_EXTRA])


def _verdict(lo: float, hi: float) -> str:
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return "inconclusive"


def similarity_contrasts(pairs: pd.DataFrame, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """The readings the 2×2 tells apart, each with the same run bootstrap as `similarity_2x2`.

    Per factor A, B: "same init - other init" (the mean of the two task levels' differences) and "same task -
    other task" (the mean over the two init levels); per cell "B - A" (which "B-A": the same pairs scored on
    both factors); per factor and cell "<cell> - random" (the cell's mean minus its random baseline).

    Returns
    -------
    DataFrame with columns CONTRAST_COLUMNS: estimate from the pairs, 95 % percentile interval of the
    bootstrap over runs (n_boot: the draws where every cell of the contrast had a pair), verdict higher / lower
    / inconclusive (the interval above 0, below 0, or across it).
    A contrast whose cells are not all present is left out.
    """
    if pairs.empty:
        raise ResultsError("no pairs of runs to put in the 2×2")
    draws, _ = _cell_draws(pairs, n_boot, seed)
    rows = []

    def add(which: str, name: str, terms: list[tuple[float, tuple]]):
        if not all(key in draws for _, key in terms):
            return
        est = sum(c * draws[key][0] for c, key in terms)
        boot = sum(c * draws[key][1] for c, key in terms)
        lo, hi = _interval(np.asarray(boot))
        rows.append({"which": which, "contrast": name, "estimate": float(est), "ci_low": lo, "ci_high": hi,
                     "verdict": _verdict(lo, hi), "n_boot": int((~np.isnan(boot)).sum())})  # fmt: skip

    for w in FACTORS:
        add(w, "same init - other init", [(0.5, (w, True, t)) for t in (True, False)]
            + [(-0.5, (w, False, t)) for t in (True, False)])  # fmt: skip
        add(w, "same task - other task", [(0.5, (w, i, True)) for i in (True, False)]
            + [(-0.5, (w, i, False)) for i in (True, False)])  # fmt: skip
    for si, st in CELLS:
        add("B-A", f"B - A, {cell_name(si, st)}", [(1.0, ("B", si, st)), (-1.0, ("A", si, st))])
    for w in FACTORS:
        for si, st in CELLS:
            if (w, si, st) in draws:
                part = draws[(w, si, st)][2]
                base = float(part["random_baseline"].mean())
                est, boot, _ = draws[(w, si, st)]
                lo, hi = _interval(boot - base)
                rows.append({"which": w, "contrast": f"{cell_name(si, st)} - random", "estimate": est - base,
                             "ci_low": lo, "ci_high": hi, "verdict": _verdict(lo, hi),
                             "n_boot": int((~np.isnan(boot)).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=list(CONTRAST_COLUMNS))
