"""The mechanism test (issue 13, experiment 4): LoRA on one module, the observed B-only vs A-only gap set against
the paper's linear-regression prediction (asymviz.theory) for that module's measured input covariance.

    frame = mechanism_table("cached_runs/minilm_mechanism")   # one row per (model, task, module, mode)
    mechanism_lines(frame)                                     # the same, as RESULTS.md sentences

What is compared (per model, task, and the one adapted module, e.g. MiniLM's top-layer value projection)
-------------------------------------------------------------------------------------------------------
*Observed*: the share of A&B's gain over the head-only control that a frozen-factor mode keeps,

    observed = mean_s(L_head,s − L_mode,s) / mean_s(L_head,s − L_ab,s)      (test loss; accuracy: mode − head)

over the seeds s that have all of head_only, ab and the mode (runs pair on (seed, init_seed), as in
asymviz.results): a ratio of paired means (asymviz.gain_share), with Fieller's 95 % interval (Fieller 1954, J. R. Stat. Soc. B 16:175;
t with n − 1 df and the sample covariance of numerator and denominator). Fieller's set is unbounded when A&B's
gain over head only is not significantly above 0: the ratio has no interval then, and the row says so
(observed_low/high NaN, `reason`). The gap columns do the same for (L_a_only − L_b_only) / (L_head − L_ab).

*Predicted*: the paper's model (theory.py): the module's update is fit by squared loss, excess loss
E(BA) = Tr[(Δ − BA) Σ (Δ − BA)ᵀ], T = Tr(ΔΣΔᵀ), and a mode keeps 1 − E/T of the attainable improvement:
- Σ (d_in × d_in): the module's input second moment over the run's training split, by hooks on the model
  (asymviz.probes.run_moments through activations.collect_moments; padding masked). Only one module is adapted, below it nothing
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

from asymviz.errors import MechanismError
from asymviz.gain_share import FROZEN_MODES, observed_shares
from asymviz.results import counted_runs
from asymviz.theory import projection_weights

if TYPE_CHECKING:
    from asymviz.runs import RunRecord

MECHANISM_COLUMNS = ("model", "task", "module", "d_in", "d_out", "rank", "d_over_r", "mode", "observed",
                     "observed_low", "observed_high", "predicted", "exact", "n_seeds", "quantity")  # fmt: skip
EXTRA_COLUMNS = ("metric", "group", "realised", "n_realised", "predicted_curvature", "exact_curvature",
                 "realised_curvature", "predicted_ab", "gain_ab", "gain_ab_low", "gain_ab_high", "gap_observed",
                 "gap_low", "gap_high", "gap_predicted", "gap_predicted_curvature", "input_effective_rank",
                 "output_effective_rank", "n_delta", "n_tokens", "reason")  # fmt: skip


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


def _factor(run: RunRecord, which: str) -> np.ndarray | None:
    """A run's frozen factor (A or B) as float64, from init/ else adapter/ (frozen: the same); None if neither."""
    from asymviz.runs import has_adapter_files

    for load, folder in ((run.load_init, run.init_path), (run.load_adapter, run.adapter_path)):
        if has_adapter_files(folder):
            module = next(iter(load()))
            return getattr(module, which).astype(np.float64)
    return None


def _delta(run: RunRecord):
    module = next(iter(run.load_adapter()))
    return module, module.delta_weight().astype(np.float64)


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
    from asymviz.probes.run_moments import run_moments
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


TEXT_COLUMNS = ("model", "group", "task", "module", "mode", "quantity", "metric", "reason")


def read_mechanism_file(path: str | Path) -> pd.DataFrame:
    """A mechanism table written as CSV (`mechanism_table(...).to_csv`), read back with its text columns as text: a
    CSV cannot tell "" from a missing value, and "" read back as NaN would print as "nan" in `mechanism_lines`."""
    frame = pd.read_csv(path)
    for col in TEXT_COLUMNS:
        if col in frame:
            frame[col] = frame[col].fillna("").astype(str)
    return frame


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
            text += (f" B only − A only = {_estimate(*gap, digits, True)} of A&B's gain; the paper's model predicts "
                     f"{r['gap_predicted']:+.{digits}f}, which {_judge(r['gap_predicted'], *gap[1:])}; the "
                     f"curvature-weighted model ({r['input_effective_rank']:.1f} effective input directions, "
                     f"{r['output_effective_rank']:.1f} effective output-gradient directions) predicts "
                     f"{r['gap_predicted_curvature']:+.{digits}f}, which "
                     f"{_judge(r['gap_predicted_curvature'], *gap[1:])}.")  # fmt: skip
        lines.append(text)
    return lines
