"""The mechanism test (issue 13, experiment 4): LoRA on one module, the observed B-only vs A-only gap set against
the paper's linear-regression prediction (asymviz.theory) for that module's measured input covariance.

    frame = mechanism_table("cached_runs/minilm_mechanism")   # one row per (model, task, module, mode)
    mechanism_lines(frame)                                     # the same, as RESULTS.md sentences

What is compared (per model, task, and the one adapted module, e.g. MiniLM's top-layer value projection)
-------------------------------------------------------------------------------------------------------
*Observed*: the share of A&B's gain over the head-only control that a frozen-factor mode keeps,

    observed = mean_s(L_head,s − L_mode,s) / mean_s(L_head,s − L_ab,s)      (test loss; accuracy: mode − head)

over the seeds s that have all of head_only, ab and the mode (runs pair on (seed, init_seed), as in
asymviz.results): a ratio of paired means, with Fieller's 95 % interval (Fieller 1954, J. R. Stat. Soc. B 16:175;
t with n − 1 df and the sample covariance of numerator and denominator). Fieller's set is unbounded when A&B's
gain over head only is not significantly above 0: the ratio has no interval then, and the row says so
(observed_low/high NaN, `reason`). The gap columns do the same for (L_a_only − L_b_only) / (L_head − L_ab).

*Predicted*: the paper's model (theory.py): the module's update is fit by squared loss, excess loss
E(BA) = Tr[(Δ − BA) Σ (Δ − BA)ᵀ], T = Tr(ΔΣΔᵀ), and a mode keeps 1 − E/T of the attainable improvement:
- Σ (d_in × d_in): the module's input second moment over the run's training split, by hooks on the model
  (asymviz.probes.activations.collect_moments; padding masked). Only one module is adapted, below it nothing
  changes, so this is the base model's Σ (for MiniLM's top value projection: the previous layer's output tokens).
- Δ (d_out × d_in): A&B's learned ΔW = (α/r)·B·A of the module (each ab run whose adapter was kept; the
  predictions are averaged over them, `n_delta`). Δ has rank ≤ r, so A&B keeps all of it (Eckart–Young share
  `predicted_ab` = 1): the A&B run is the normaliser on both sides, which is why observed divides by A&B's gain.
- B only (A = Q random, frozen): E[kept] = Σᵢ pᵢ λᵢ ‖Δvᵢ‖² / T, pᵢ from theory.projection_weights (exact for a
  flat spectrum: min(r, k)/k; otherwise the deterministic equivalent, `exact` False).
- A only (B = U random, frozen): E[kept] = r/d_out exactly, whatever Σ and Δ.
- `realised`: the same kept share for each frozen-factor run's *actual* frozen factor (from its init/ or
  adapter/ where kept): 1 − E_B(Q)/T = Tr(ΔΣQᵀ(QΣQᵀ)⁺QΣΔᵀ)/T and 1 − E_A(U)/T = Tr((UᵀU)⁺UᵀΔΣΔᵀU)/T.

What the mapping to a classifier's cross-entropy assumes, and where it cannot hold
----------------------------------------------------------------------------------
1. The loss is quadratic in the module's update over the range the runs reach, with the minimiser at A&B's ΔW
   (second-order expansion around it). A&B's ΔW is the best rank-r update SGD found, not the best update: gains
   beyond rank r are not counted on either side.
2. The paper's excess loss weighs every output direction alike (a regression on the module's own output).
   In a network the curvature seen at the module's output is G = E[g gᵀ], g = ∂loss/∂output, and with a
   few-class classifier above, G is far from isotropic. With the Kronecker-factored curvature Σ ⊗ G (K-FAC,
   Martens & Grosse 2015) the excess loss becomes ‖G^½(Δ − BA)Σ^½‖²_F and the theory turns symmetric:
   B only keeps Σᵢ pᵢ(Σ) λᵢ ‖G^½Δvᵢ‖² / T_G and A only keeps Σⱼ qⱼ(G) γⱼ ‖wⱼᵀΔΣ^½‖² / T_G (qⱼ: the same
   projection weights on G's spectrum γ, eigenvectors wⱼ), so A only is no longer r/d_out: it is cheap when
   the output gradients occupy few directions, as B only is when the inputs do. `predicted_curvature` and
   `realised_curvature` give that version, with G the empirical second moment of the loss gradient at the
   module's output (true labels, over the same split), measured on the first A&B run with weights (its trained
   adapter and classifier). K-FAC also assumes inputs and output gradients independent and no cross-token
   terms; the empirical Fisher is not the Gauss–Newton matrix away from the optimum.
3. The head trains in every mode. The control's gain is subtracted as if the head's share were the same in
   every mode; where the head absorbs what a frozen factor loses (experiment 3), observed exceeds predicted.
4. Observed uses the test loss (generalisation included), the theory a population loss at the optimum; runs
   that stopped short of their optimum (finite epochs, a chosen lr) move observed, not predicted.
A prediction is therefore a yardstick for the direction and size of the asymmetry, not a fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from asymviz.errors import AsymvizError
from asymviz.results import PAIR_KEY, counted_runs, lower_is_better
from asymviz.theory import projection_weights

if TYPE_CHECKING:
    from asymviz.runs import RunRecord

MECHANISM_COLUMNS = ("model", "task", "module", "d_in", "d_out", "rank", "d_over_r", "mode", "observed",
                     "observed_low", "observed_high", "predicted", "exact", "n_seeds", "quantity")  # fmt: skip
EXTRA_COLUMNS = ("metric", "group", "realised", "n_realised", "predicted_curvature", "exact_curvature",
                 "realised_curvature", "predicted_ab", "gain_ab", "gain_ab_low", "gain_ab_high", "gap_observed",
                 "gap_low", "gap_high", "gap_predicted", "gap_predicted_curvature", "input_effective_rank",
                 "output_effective_rank", "n_delta", "n_tokens", "reason")  # fmt: skip
FROZEN_MODES = ("b_only", "a_only")
LEVEL = 0.95


class MechanismError(AsymvizError):
    """A store without what the mechanism test needs (its runs, an A&B adapter, a control)."""


# ------------------------------------------------------------------------------------------------------------
# the theory on measured matrices (float64 numpy)


def psd_eig(M: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (d,), descending, and eigenvectors (d, d) of a symmetric PSD matrix; eigenvalues below
    tol·λ_max are set to 0 (moments are sums of float32 products: what lies below is rounding noise)."""
    M = np.asarray(M, dtype=float)
    evals, evecs = np.linalg.eigh(0.5 * (M + M.T))
    evals, evecs = evals[::-1].copy(), evecs[:, ::-1]
    top = evals[0] if evals.size else 0.0
    evals[evals <= tol * max(top, 0.0)] = 0.0
    return evals, evecs


def _sqrt_psd(M: np.ndarray) -> np.ndarray:
    lam, V = psd_eig(M)
    return (V * np.sqrt(lam)) @ V.T


def predicted_share(sigma: np.ndarray, delta: np.ndarray, mode: str, r: int,
                    G: np.ndarray | None = None) -> tuple[float, bool]:  # fmt: skip
    """The expected share 1 − E[excess]/T a mode keeps, over the random draw of its frozen factor.

    sigma : (d_in, d_in) input second moment; delta : (d_out, d_in) target update; r : the mode's rank
    G : (d_out, d_out) output curvature (None: the paper's identity)
    mode : "b_only" (A random), "a_only" (B random) or "ab" (Eckart–Young: top-r share of G^½ΔΣ^½'s σ²)

    Returns (share, exact): exact False where the deterministic equivalent was used (theory.projection_weights).
    """
    d_out = delta.shape[0]
    gd = delta if G is None else _sqrt_psd(G) @ delta  # G^½Δ (d_out, d_in)
    if mode == "ab":
        s2 = np.linalg.svd(gd @ _sqrt_psd(sigma), compute_uv=False) ** 2
        return (float(s2[:r].sum() / s2.sum()) if s2.sum() > 0 else math.nan), True
    if mode == "b_only":
        lam, V = psd_eig(sigma)
        energy = lam * np.sum((gd @ V) ** 2, axis=0)  # λᵢ ‖G^½Δvᵢ‖²
        p, exact = projection_weights(lam, r)
    elif mode == "a_only":
        if G is None:
            return min(r, d_out) / d_out, True
        gam, W = psd_eig(G)
        energy = gam * np.sum((W.T @ delta @ _sqrt_psd(sigma)) ** 2, axis=1)  # γⱼ ‖wⱼᵀΔΣ^½‖²
        p, exact = projection_weights(gam, r)
    else:
        raise ValueError(f"mode must be b_only, a_only or ab, got {mode!r}")
    total = energy.sum()
    return (float(np.sum(p * energy) / total) if total > 0 else math.nan), exact


def realised_share(sigma: np.ndarray, delta: np.ndarray, mode: str, frozen: np.ndarray,
                   G: np.ndarray | None = None) -> float:  # fmt: skip
    """The share 1 − E/T kept with this frozen factor: A (r, d_in) for b_only, B (d_out, r) for a_only.

    b_only: Tr(G·ΔΣAᵀ(AΣAᵀ)⁺AΣΔᵀ) / Tr(GΔΣΔᵀ); a_only: Tr((BᵀGB)⁺BᵀGΔΣΔᵀGB) / Tr(GΔΣΔᵀ) (G = I: the paper's).
    """
    G = np.eye(delta.shape[0]) if G is None else np.asarray(G, dtype=float)
    dsd = delta @ sigma @ delta.T  # ΔΣΔᵀ (d_out, d_out)
    total = float(np.trace(G @ dsd))
    if not total > 0:
        return math.nan
    if mode == "b_only":
        M = delta @ sigma @ frozen.T  # (d_out, r)
        K = frozen @ sigma @ frozen.T  # (r, r)
        kept = np.trace(G @ M @ np.linalg.pinv(K, rcond=1e-10, hermitian=True) @ M.T)
    elif mode == "a_only":
        GB = G @ frozen  # (d_out, r)
        K = frozen.T @ GB
        kept = np.trace(np.linalg.pinv(K, rcond=1e-10, hermitian=True) @ GB.T @ dsd @ GB)
    else:
        raise ValueError(f"mode must be b_only or a_only, got {mode!r}")
    return float(kept / total)


def effective_rank(M: np.ndarray) -> float:
    """Participation ratio (Σλ)² / Σλ² of a PSD matrix's eigenvalues: k for a spectrum flat on k directions."""
    lam = psd_eig(M)[0]
    return float(lam.sum() ** 2 / np.sum(lam**2)) if lam.sum() > 0 else math.nan


# ------------------------------------------------------------------------------------------------------------
# the observed share, over paired seeds


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

    Raises MechanismError when a mode has several ranks in a cell, or two runs for one seed.
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
                raise MechanismError(f"{task}: {mode} runs of several ranks ({sorted(part['rank'].unique())}); "
                                     "the mechanism test takes one rank per mode")  # fmt: skip
            if part.duplicated(list(PAIR_KEY)).any():
                raise MechanismError(f"{task}: two counted {mode} runs for one seed; pass one group's runs")
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
    cols = ["model", "group", "task", "mode", "rank", "n_seeds", "observed", "observed_low", "observed_high",
            "gain_ab", "gain_ab_low", "gain_ab_high", "gap_observed", "gap_low", "gap_high", "reason"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    if len(d) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, len(d) - 1) * np.std(d, ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


# ------------------------------------------------------------------------------------------------------------
# from a run store


def mechanism_runs(store: str | Path) -> pd.DataFrame:
    """The counted runs of a store (or a group folder) that adapt one module: one target with top_layers 1
    (head_only controls included: they carry the sweep's flags). Columns of RunStore.list().

    Raises MechanismError when the store does not exist or holds no such run.
    """
    from asymviz.runs import RunRecord, RunStore

    root = Path(store)
    if not root.is_dir():
        raise MechanismError(f"no run store at {store}")
    runs = counted_runs(RunStore(root).list())  # B only: the orthogonal A where several inits exist

    def one_module(path: str) -> bool:
        config = RunRecord.load(path).config
        return len(config.get("targets") or ()) == 1 and config.get("top_layers") == 1

    keep = runs["path"].map(one_module) if len(runs) else pd.Series(dtype=bool)
    runs = runs[keep.astype(bool)].reset_index(drop=True)
    if (
        runs.empty
        or not {"head_only", "ab"} <= set(runs["mode"])
        or not set(FROZEN_MODES) & set(runs["mode"])
    ):
        raise MechanismError(f"{store}: no mechanism-test runs (completed head_only, ab and b_only or a_only runs "
                             "with LoRA on one module: one --targets name and --top-layers 1)")  # fmt: skip
    return runs


def base_model_of(run: RunRecord, base: str | None = None) -> str:
    """The base model to load for a run: `base` if given; else the run's model when it is a name or a folder
    that exists here; else a folder `models/<its last path part>` next to the run or up to three folders above
    it (a GPU store names its own path, e.g. .gpu_store/models/vit-fmnist, shipped as cached_runs/models/).

    Raises MechanismError naming the missing folder when none is found.
    """
    if base:
        return base
    model = str(run.config.get("model") or run.data.get("model") or "")
    path = Path(model).expanduser()
    looks_like_folder = model.startswith(("/", ".", "~")) or model.count("/") > 1
    if not looks_like_folder or path.exists():
        return model
    for folder in [run.path, *list(run.path.parents)[:3]]:
        candidate = folder / "models" / path.name
        if (candidate / "config.json").exists():
            return str(candidate)
    raise MechanismError(f"{run.run_id}: its base model {model!r} is not here; give the base model (--base)")


def run_moments(run: RunRecord, max_examples: int | None = None, batch_size: int = 32, seed: int = 0,
                progress: Callable[[int, int], None] | None = None, base: str | None = None):  # fmt: skip
    """Input and output-gradient second moments of a run's one adapted module over its training split.

    The run's base model (`base_model_of`) with its trained adapter and head (PEFT), the run's training split and
    tokenisation (the training engine's Workspace), eval mode, CPU; `max_examples` draws a seeded subset.
    Returns asymviz.probes.activations.ModuleMoments (inputs Σ x xᵀ (d_in, d_in), outputs Σ g gᵀ (d_out, d_out)).
    """
    import torch
    from peft import PeftModel

    from asymviz.probes.activations import collect_moments
    from asymviz.training.config import TrainConfig
    from asymviz.training.workspace import Workspace

    adapter = run.load_adapter()
    if len(adapter) != 1:
        raise MechanismError(f"{run.run_id}: adapts {len(adapter)} modules; the mechanism test needs one")
    config = TrainConfig.from_dict(run.config).replace(device="cpu", model=base_model_of(run, base))
    ws = Workspace(keep_models=False)
    task = ws.task(config)
    base, tokenizer, source = ws.model(config, task)
    enc = ws.encoded(config, task, tokenizer, source)["train"]
    model = PeftModel.from_pretrained(base, str(run.adapter_path), is_trainable=False).eval()
    rows = torch.arange(len(enc))
    if max_examples is not None and max_examples < len(enc):
        rows = torch.randperm(len(enc), generator=torch.Generator().manual_seed(seed))[:max_examples]
    rows = rows[torch.argsort(enc.lengths[rows], stable=True)]  # similar lengths together: less padding
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    batches = (enc.batch(c) for c in chunks)
    report = (lambda i: progress(i, len(chunks))) if progress else None
    moments = collect_moments(model, adapter.names, batches, output="gradient", progress=report)
    if adapter.names[0] not in moments:
        raise MechanismError(f"{run.run_id}: no activations reached {adapter.names[0]}")
    return moments[adapter.names[0]]


def _factor(run: RunRecord, which: str) -> np.ndarray | None:
    """A run's frozen factor (A or B) as float64, from init/ else adapter/ (frozen: the same); None if neither."""
    from asymviz.runs import has_adapter_files

    for load, folder in ((run.load_init, run.init_path), (run.load_adapter, run.adapter_path)):
        if has_adapter_files(folder):
            module = next(iter(load()))
            return getattr(module, which).double().numpy()
    return None


def _delta(run: RunRecord):
    module = next(iter(run.load_adapter()))
    return module, module.delta_weight().double().numpy()


def mechanism_table(store: str | Path, metric: str = "test_loss", max_examples: int | None = None,
                    batch_size: int = 32, progress: Callable[[str, int, int], None] | None = None,
                    base: str | None = None) -> pd.DataFrame:  # fmt: skip
    """Observed vs predicted share of A&B's gain kept by B only and by A only, per (model, task, module).

    Parameters
    ----------
    store : a run store or one group folder of it (e.g. cached_runs/minilm_mechanism); its mechanism-test runs
        (`mechanism_runs`) are used, with at least one ab run whose adapter was kept (Δ) per task
    metric : test_loss (default; lower is better) or test_accuracy, the observed share's metric
    max_examples : moments over a seeded subset of this many training examples (None: the whole split)
    progress : called as progress(stage, done, total), stage "moments <task>" (batches)
    base : the base model to load (a name or folder) instead of the runs' own (`base_model_of`)

    Returns
    -------
    DataFrame, one row per (model, group, task, module, mode ∈ b_only, a_only); MECHANISM_COLUMNS, then
    EXTRA_COLUMNS (formulas and assumptions in the module docstring):
        model, task, module : the adapted module's full name
        d_in, d_out, rank : its shape and the mode's r
        d_over_r : dimension of the frozen factor's space over r (b_only: d_in / r; a_only: d_out / r)
        mode : "b_only" | "a_only"
        observed, observed_low, observed_high : share of A&B's gain over head only kept by the mode (ratio
            of paired means over seeds), Fieller 95 % CI (NaN: unbounded or one seed, see reason)
        predicted : 1 − E[excess]/T in the paper's squared-loss model (G = I), averaged over the Δ's
        exact : False where B only's expectation used the deterministic equivalent
        n_seeds : seeds paired in observed
        quantity : what observed and predicted measure, in words
        metric, group
        realised, n_realised : predicted's kept share for the runs' actual frozen factors (mean), how many
        predicted_curvature, exact_curvature, realised_curvature : the same with the output curvature G
        predicted_ab : A&B's Eckart–Young share (1 when Δ has rank ≤ r: the normaliser)
        gain_ab, gain_ab_low, gain_ab_high : A&B's gain over head only in metric units (positive: better), t CI
        gap_observed, gap_low, gap_high : (B only − A only) share of A&B's gain, Fieller CI (same on both rows)
        gap_predicted, gap_predicted_curvature : predicted B only − predicted A only (G = I; G measured)
        input_effective_rank, output_effective_rank : participation ratios of Σ and G
        n_delta : A&B adapters used as Δ; n_tokens : tokens in Σ and G
        reason : why a value or interval is missing ("" when none is)

    Raises MechanismError without mechanism runs, a control, or a kept A&B adapter for a task.
    """
    from asymviz.runs import RunRecord

    if metric not in ("test_loss", "test_accuracy"):
        raise MechanismError(f"metric must be test_loss or test_accuracy, got {metric!r}")
    runs = mechanism_runs(store)
    observed = observed_shares(runs, metric)
    if observed.empty:
        raise MechanismError(f"{store}: no task has head_only, ab and a frozen-factor mode with {metric}")
    quantity = _quantity(metric)
    rows = []
    for (model, group, task), obs in observed.groupby(["model", "group", "task"], sort=True, dropna=False):
        cell = runs[(runs["model"] == model) & (runs["group"] == group) & (runs["task"] == task)]
        ab = [RunRecord.load(p) for p in cell.loc[(cell["mode"] == "ab") & cell["has_weights"], "path"]]
        if not ab:
            raise MechanismError(f"{task}: no A&B run kept its adapter, so Δ (A&B's ΔW) is unknown")
        stage = f"moments {task}"
        mom = run_moments(ab[0], max_examples, batch_size, base=base,
                          progress=(lambda i, n, s=stage: progress(s, i, n)) if progress else None)  # fmt: skip
        sigma, G = mom.inputs.double().numpy(), mom.outputs.double().numpy()
        modules, deltas = zip(*(_delta(r) for r in ab))
        module = modules[0]
        if any(
            m.name != module.name or m.delta_weight().shape != module.delta_weight().shape for m in modules
        ):
            raise MechanismError(f"{task}: the A&B adapters adapt different modules")
        frozen = {}
        for mode, which in (("b_only", "A"), ("a_only", "B")):
            paths = cell.loc[cell["mode"] == mode, "path"]
            frozen[mode] = [f for f in (_factor(RunRecord.load(p), which) for p in paths) if f is not None]
        shares = {}
        for _, o in obs.iterrows():
            mode, r = o["mode"], int(o["rank"])
            pred = [predicted_share(sigma, d, mode, r) for d in deltas]
            curv = [predicted_share(sigma, d, mode, r, G) for d in deltas]
            real = [realised_share(sigma, d, mode, f) for d in deltas for f in frozen[mode]]
            real_c = [realised_share(sigma, d, mode, f, G) for d in deltas for f in frozen[mode]]
            ab_rank = int(cell.loc[cell["mode"] == "ab", "rank"].iloc[0])
            d_frozen = module.d_in if mode == "b_only" else module.d_out
            shares[mode] = (np.mean([p for p, _ in pred]), np.mean([p for p, _ in curv]))
            rows.append({
                "model": model, "task": task, "module": module.name, "d_in": module.d_in, "d_out": module.d_out,
                "rank": r, "d_over_r": d_frozen / r, "mode": mode, "observed": o["observed"],
                "observed_low": o["observed_low"], "observed_high": o["observed_high"], "predicted": shares[mode][0],
                "exact": all(e for _, e in pred), "n_seeds": int(o["n_seeds"]), "quantity": quantity,
                "metric": metric, "group": group, "realised": np.mean(real) if real else math.nan,
                "n_realised": len(frozen[mode]), "predicted_curvature": shares[mode][1],
                "exact_curvature": all(e for _, e in curv), "realised_curvature": np.mean(real_c) if real_c else math.nan,
                "predicted_ab": np.mean([predicted_share(sigma, d, "ab", ab_rank)[0] for d in deltas]),
                **{c: o[c] for c in ("gain_ab", "gain_ab_low", "gain_ab_high", "gap_observed", "gap_low", "gap_high")},
                "input_effective_rank": effective_rank(sigma), "output_effective_rank": effective_rank(G),
                "n_delta": len(deltas), "n_tokens": int(mom.n_tokens), "reason": o["reason"],
            })  # fmt: skip
        for row in rows[len(rows) - len(obs) :]:
            b, a = shares.get("b_only"), shares.get("a_only")
            row["gap_predicted"] = b[0] - a[0] if a and b else math.nan
            row["gap_predicted_curvature"] = b[1] - a[1] if a and b else math.nan
    frame = pd.DataFrame(rows, columns=[*MECHANISM_COLUMNS, *EXTRA_COLUMNS])
    for col in ("d_in", "d_out", "rank", "n_seeds", "n_realised", "n_delta", "n_tokens"):
        frame[col] = frame[col].astype(int)
    return frame


def _quantity(metric: str) -> str:
    what = "test loss" if metric == "test_loss" else "test accuracy"
    return (f"share of A&B's {what} gain over head only kept by the mode: observed over paired seeds, predicted by "
            "the paper's squared-loss model with Σ = the module's input second moment and Δ = A&B's ΔW")  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# RESULTS.md


def _estimate(value: float, low: float, high: float, digits: int, signed: bool = False) -> str:
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if pd.isna(value):
        return "undefined"
    if pd.isna(low):
        return f"{fmt.format(value)} (no interval)"
    return f"{fmt.format(value)} (95 % CI {fmt.format(low)} to {fmt.format(high)})"


def _judge(value: float, low: float, high: float) -> str:
    if pd.isna(low) or pd.isna(value):
        return "cannot be judged (no interval)"
    return (
        "lies inside the observed gap's 95 % CI"
        if low <= value <= high
        else "lies outside the observed gap's 95 % CI"
    )


def mechanism_lines(frame: pd.DataFrame, digits: int = 2) -> list[str]:
    """Markdown sentences, one per (model, group, task, module) of `mechanism_table`; every number comes from
    the frame (the same figures on both of its rows are said once)."""
    lines = []
    keys = ["model", "group", "task", "module"]
    for (model, group, task, module), cell in frame.groupby(keys, sort=False, dropna=False):
        rows = {r["mode"]: r for _, r in cell.iterrows()}
        first = cell.iloc[0]
        what = "test-loss" if first["metric"] == "test_loss" else "test-accuracy"
        where = f"{model} on {task}" + (f" ({group})" if isinstance(group, str) and group else "")
        text = (f"**Mechanism test, {where}** (LoRA on `{module}` only, {first['d_in']} → {first['d_out']}): "
                f"A&B's {what} gain over head only is "
                f"{_estimate(first['gain_ab'], first['gain_ab_low'], first['gain_ab_high'], 4, True)}.")  # fmt: skip
        for mode, name in (("b_only", "B only"), ("a_only", "A only")):
            if mode not in rows:
                continue
            r = rows[mode]
            text += (f" {name} (r = {r['rank']}, d/r = {r['d_over_r']:g}) keeps "
                     f"{_estimate(r['observed'], r['observed_low'], r['observed_high'], digits)} of it over "
                     f"{r['n_seeds']} seeds; the paper's squared-loss model predicts {r['predicted']:.{digits}f}"
                     f" ({'exact' if r['exact'] else 'deterministic equivalent, approximate'}")  # fmt: skip
            if r["n_realised"]:
                text += f"; {r['realised']:.{digits}f} for the {r['n_realised']} runs' actual frozen factors"
            text += (
                f"), weighting outputs by the measured loss curvature {r['predicted_curvature']:.{digits}f}."
            )
            if isinstance(r["reason"], str) and r["reason"]:
                text += f" ({r['reason']}.)"
        if {"b_only", "a_only"} <= set(rows):
            r = rows["b_only"]
            gap = (r["gap_observed"], r["gap_low"], r["gap_high"])
            text += (f" B only − A only = {_estimate(*gap, digits, True)} of A&B's gain; the paper predicts "
                     f"{r['gap_predicted']:+.{digits}f}, which {_judge(r['gap_predicted'], *gap[1:])}; the "
                     f"curvature-weighted model ({r['input_effective_rank']:.1f} effective input directions, "
                     f"{r['output_effective_rank']:.1f} effective output-gradient directions) predicts "
                     f"{r['gap_predicted_curvature']:+.{digits}f}, which "
                     f"{_judge(r['gap_predicted_curvature'], *gap[1:])}.")  # fmt: skip
        lines.append(text)
    return lines
