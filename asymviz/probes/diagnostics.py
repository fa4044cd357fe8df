"""Adapter diagnostics from the literature that need the base weights W0 but no data.

    table = diagnose(adapter, "minilm")                       # one row per module
    intruders = intruder_dimensions(adapter, model, k=10)     # one row per (module, i)

- **Intruder dimensions** (Shuttleworth et al. 2024, "LoRA vs full fine-tuning: an illusion of equivalence"):
  among the top-k singular vectors of W = W0 + ΔW, those whose best |cosine| with any singular vector of W0
  is below ε (k = 10, ε = 0.5). Left singular vectors by default (`vectors="right"` for the other side).
- **Amplification factor** (Hu et al. 2021, LoRA §7.3): ‖ΔW‖_F / ‖UᵀW0V‖_F with U, V the top-r singular
  vectors of ΔW: how much ΔW amplifies directions that W0 itself barely uses. UᵀW0V is r×r.
- **DoRA decomposition** (Liu et al. 2024): per output unit j (a column of DoRA's W ∈ R^{d_in×d_out}, a row
  of PyTorch's (d_out, d_in) weight, the entries of PEFT's lora_magnitude_vector), the magnitude change
  |‖W_j‖ − ‖W0_j‖| and the direction change 1 − cos(W_j, W0_j), averaged over units (the paper's ΔM, ΔD).

Nothing here forms W0 + ΔW densely or takes its SVD:
- rows of W: ‖W0_j + s·B_j A‖² = ‖W0_j‖² + 2s·B_j (A W0ᵀ)_j + s²·B_j (AAᵀ) B_jᵀ, with A W0ᵀ (r, d_out);
- top-k singular triplets of W (`updated_top_svd`): block subspace iteration on the implicit operator
  x ↦ W0 x + s·B(Ax), started from W0's top right singular vectors (cached SVD) plus A's row space, the
  subspace that W's top singular vectors are close to; each step costs two products with W0 and O(d·r·b),
  and it stops when every top-k residual ‖Wᵀu_i − σ_i v_i‖ is below tol·σ_1 (tests check it against dense
  SVD). W0's full SVD is needed once per base module for "any singular vector of W0" and is cached
  (asymviz.probes.base_weights.weight_svd).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from asymviz.linalg import delta_svd, map_modules

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from asymviz.adapters import LoraAdapter, LoraModule

INTRUDER_COLUMNS = [
    "module",
    "layer",
    "kind",
    "i",
    "sigma",
    "sigma_base",
    "best_cosine",
    "best_match",
    "intruder",
]
DIAGNOSE_COLUMNS = [
    "module", "layer", "kind", "r", "d_out", "d_in", "k", "eps", "n_intruders", "min_best_cosine",
    "delta_fro", "w0_proj_fro", "w0_top_fro", "w0_random_fro", "amplification",
    "magnitude_change", "magnitude_change_rel", "direction_change", "iterations",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# the math, per module


def updated_top_svd(
    W0: torch.Tensor,
    B: torch.Tensor,
    A: torch.Tensor,
    scaling: float,
    k: int,
    V0: torch.Tensor | None = None,
    oversample: int = 8,
    tol: float = 1e-4,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Top-k singular triplets of W = W0 + scaling·B·A without forming W.

    Parameters
    ----------
    W0 : (d_out, d_in); B : (d_out, r); A : (r, d_in)
    V0 : W0's right singular vectors, descending (d_in, ≥ k): the warm start (random when None)
    tol : stop when ‖Wᵀu_i − σ_i v_i‖ ≤ tol·σ_1 for all i ≤ k

    Returns
    -------
    U (d_out, k), S (k,), V (d_in, k), iterations used
    """
    from asymviz.linalg import single_threaded

    with single_threaded():  # many small QR/SVD calls: one intra-op thread is faster (asymviz.linalg)
        return _subspace_iteration(W0, B, A, scaling, k, V0, oversample, tol, max_iter)


def _subspace_iteration(W0, B, A, scaling, k, V0, oversample, tol, max_iter):
    import torch

    d_out, d_in = W0.shape
    k = min(k, d_out, d_in)
    block = min(k + oversample, d_in, d_out)

    def apply(X):  # W X: (d_out, b)
        return W0 @ X + scaling * (B @ (A @ X))

    def apply_t(Y):  # Wᵀ Y: (d_in, b)
        return W0.T @ Y + scaling * (A.T @ (B.T @ Y))

    if V0 is not None:
        start = V0[:, :block]
    else:
        start = torch.randn(d_in, block, generator=torch.Generator().manual_seed(0), dtype=W0.dtype)
    Z = _orth(torch.cat([start, A.T.to(W0.dtype)], dim=1))  # (d_in, b), b ≤ block + r: start + A's row space
    it = 0
    while it < max_iter:
        it += 1
        C = apply(Z)  # (d_out, b); W restricted to span(Z)
        Uc, S, Vct = torch.linalg.svd(C.double(), full_matrices=False)
        Uc, S, V = Uc.to(W0.dtype), S.to(W0.dtype), (Z @ Vct.T.to(W0.dtype))  # Ritz triplets
        R = apply_t(Uc)  # (d_in, b) = Wᵀ U
        residual = (R[:, :k] - V[:, :k] * S[:k]).norm(dim=0)
        if S[0] == 0 or bool((residual <= tol * S[0]).all()):
            break
        Z = _orth(R)
    return Uc[:, :k], S[:k], V[:, :k], it


def _tensor(x) -> torch.Tensor:
    """A LoraModule's numpy factor (or asymviz.linalg's result) as a CPU tensor, sharing its memory."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x


def _orth(M: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.linalg.qr(M, mode="reduced")[0]


def intruders_of(
    W0: torch.Tensor,
    module: LoraModule,
    usv0: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int = 10,
    vectors: str = "left",
) -> dict[str, Any]:
    """Best |cosine| of each of W0+ΔW's top-k singular vectors with any singular vector of W0.

    Returns a dict of numpy arrays: sigma (k,), sigma_base (k,), best_cosine (k,), best_match (k, from 1),
    and iterations (int)."""
    U0, S0, V0 = usv0
    B, A = _tensor(module.B).to(W0.dtype), _tensor(module.A).to(W0.dtype)
    U, S, V, it = updated_top_svd(W0, B, A, module.scaling, k, V0=V0)
    base, top = (U0, U) if vectors == "left" else (V0, V)
    cos = (base.T @ top).abs()  # (m, k)
    best, match = cos.max(dim=0)
    return {
        "sigma": S.double().numpy(),
        "sigma_base": S0[: S.numel()].double().numpy(),
        "best_cosine": best.double().numpy(),
        "best_match": match.numpy() + 1,
        "iterations": it,
    }


def amplification_of(W0: torch.Tensor, module: LoraModule, S0: torch.Tensor) -> dict[str, float]:
    """Hu et al.'s amplification: ‖ΔW‖_F / ‖UᵀW0V‖_F (U, V: ΔW's top-r singular vectors), with the
    references ‖W0‖ on its own top-r directions and on random r-dimensional ones."""
    U, S, V = (_tensor(x) for x in delta_svd(module))  # U (d_out, r'), S (r'), V (d_in, r')
    r = S.numel()
    if r == 0:
        return dict(delta_fro=0.0, w0_proj_fro=math.nan, w0_top_fro=math.nan, w0_random_fro=math.nan,
                    amplification=math.nan)  # fmt: skip
    delta_fro = float(S.double().norm())
    proj = float((U.T @ W0.to(U.dtype) @ V).double().norm())  # (r', r')
    d_out, d_in = W0.shape
    w0_fro = float(S0.double().norm())
    return {
        "delta_fro": delta_fro,
        "w0_proj_fro": proj,
        "w0_top_fro": float(S0[:r].double().norm()),
        "w0_random_fro": w0_fro * r / math.sqrt(d_out * d_in),  # E‖UᵀW0V‖²_F = r²/(d_out·d_in)·‖W0‖²_F
        "amplification": delta_fro / proj if proj > 0 else math.inf,
    }


def row_change(
    W0: torch.Tensor, B: torch.Tensor, A: torch.Tensor, scaling: float, magnitude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row j of W = W0 + s·B·A (an output unit): ‖W0_j‖, the new magnitude ‖W_j‖ (or DoRA's learned
    magnitude when given) and cos(W_j, W0_j), from W0's row norms and r-sized terms. Each (d_out,)."""
    import torch

    W0, B, A = W0.double(), B.double(), A.double()
    n0_sq = W0.square().sum(dim=1)  # (d_out,)
    C = A @ W0.T  # (r, d_out)
    cross = scaling * (B * C.T).sum(dim=1)  # s·B_j·(A W0ᵀ)_j
    quad = scaling**2 * ((B @ (A @ A.T)) * B).sum(dim=1)  # s²·B_j AAᵀ B_jᵀ
    n_sq = (n0_sq + 2 * cross + quad).clamp_min(0)
    n0, n = n0_sq.sqrt(), n_sq.sqrt()
    cos = (n0_sq + cross) / (n * n0)
    cos = torch.where((n > 0) & (n0 > 0), cos, torch.ones_like(cos)).clamp(-1, 1)
    if magnitude is not None and magnitude.numel() == n.numel():
        n = magnitude.double().reshape(-1)  # DoRA: W' = m · W/‖W‖, so the magnitude is m itself
    return n0, n, cos


def dora_of(W0: torch.Tensor, module: LoraModule) -> dict[str, float]:
    """DoRA's ΔM (mean |‖W_j‖ − ‖W0_j‖|), its relative form (mean of |Δ|/‖W0_j‖) and ΔD (mean 1 − cos)."""
    if module.embedding:  # PEFT norms the stored (vocab, hidden) table per token: rows of W0ᵀ + s·Aᵀ·Bᵀ
        n0, n, cos = row_change(W0.T, _tensor(module.A).T, _tensor(module.B).T, module.scaling, None)
    else:
        magnitude = None if module.magnitude is None else _tensor(module.magnitude)
        n0, n, cos = row_change(W0, _tensor(module.B), _tensor(module.A), module.scaling, magnitude)
    change = (n - n0).abs()
    return {
        "magnitude_change": float(change.mean()),
        "magnitude_change_rel": float((change / n0.clamp_min(1e-30)).mean()),
        "direction_change": float((1 - cos).mean()),
    }


# ------------------------------------------------------------------------------------------------------------
# over an adapter


def weight_getter(base) -> Callable[[Any], torch.Tensor]:
    """spec -> W0 (d_out, d_in) from a model name/path (loaded here), a loaded model, or a mapping
    {module name: W0 already oriented (d_out, d_in)}."""
    from asymviz.probes.base_weights import base_weight, load_base_model

    if isinstance(base, Mapping):
        return lambda spec: _checked(base[spec.name], spec)
    if isinstance(base, str):
        base = load_base_model(base, head="base")
    return lambda spec: base_weight(base, spec)


def _checked(W, spec):
    import torch

    from asymviz.errors import AdapterError

    W = torch.as_tensor(W).detach().to(torch.float32)
    if tuple(W.shape) != (spec.d_out, spec.d_in):
        raise AdapterError(
            f"{spec.name}: base weight {tuple(W.shape)} but the adapter expects ({spec.d_out}, {spec.d_in})"
        )
    return W


def _module_diagnostics(module: LoraModule, W0, k: int, eps: float, vectors: str):
    from asymviz.probes.base_weights import weight_svd

    usv0 = weight_svd(W0)
    intr = intruders_of(W0, module, usv0, k=k, vectors=vectors)
    return intr, amplification_of(W0, module, usv0[1]), dora_of(W0, module)


def _run(adapter, base, k, eps, vectors, progress, workers):
    if vectors not in ("left", "right"):
        raise ValueError(f"vectors must be 'left' or 'right', got {vectors!r}")
    if not (0 < eps <= 1):
        raise ValueError(f"eps must be in (0, 1], got {eps}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    get = weight_getter(base)

    def one(module):
        if not module.finite:
            return None
        return _module_diagnostics(module, get(module), k, eps, vectors)

    return map_modules(adapter, one, progress=progress, workers=workers)


def intruder_dimensions(
    adapter: LoraAdapter,
    base,
    k: int = 10,
    eps: float = 0.5,
    vectors: str = "left",
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Intruder dimensions of W0 + ΔW per module (Shuttleworth et al. 2024).

    Parameters
    ----------
    adapter : LoraAdapter
    base : base model name ("minilm", "smollm2", folder), a loaded transformers/PEFT model, or a mapping
        {module name: W0 (d_out, d_in)}
    k : how many top singular vectors of W0 + ΔW to test
    eps : a vector is an intruder when its best |cosine| with W0's singular vectors is below eps
    vectors : "left" (output space, the paper's choice) or "right" (input space)

    Returns
    -------
    DataFrame, one row per (module, i), columns
        module, layer, kind : the module
        i : 1..k, rank of the singular vector of W0 + ΔW
        sigma : its singular value
        sigma_base : W0's i-th singular value, for comparison
        best_cosine : max_j |cos(u_i, u0_j)| over all singular vectors u0_j of W0
        best_match : that j (1 = W0's top direction)
        intruder : best_cosine < eps
    """
    import numpy as np
    import pandas as pd

    results = _run(adapter, base, k, eps, vectors, progress, workers)
    parts = []
    for spec, res in zip(adapter.modules, results, strict=True):
        if res is None:
            continue
        intr = res[0]
        n = intr["sigma"].size
        parts.append(
            pd.DataFrame({"module": spec.name, "layer": spec.layer, "kind": spec.kind, "i": np.arange(1, n + 1),
                          "sigma": intr["sigma"], "sigma_base": intr["sigma_base"],
                          "best_cosine": intr["best_cosine"], "best_match": intr["best_match"],
                          "intruder": intr["best_cosine"] < eps})
        )  # fmt: skip
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INTRUDER_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame[INTRUDER_COLUMNS]


def diagnose(
    adapter: LoraAdapter,
    base,
    k: int = 10,
    eps: float = 0.5,
    vectors: str = "left",
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Intruder dimensions, amplification factor and DoRA decomposition, one row per module.

    Parameters are those of `intruder_dimensions`.

    Returns
    -------
    DataFrame, one row per module, columns
        module, layer, kind, r, d_out, d_in : the module
        k, eps : the intruder test's settings
        n_intruders : how many of W0 + ΔW's top-k singular vectors have best |cosine| < eps with W0's
        min_best_cosine : the smallest best |cosine| among them (low: a direction W0 does not have)
        delta_fro : ‖ΔW‖_F
        w0_proj_fro : ‖UᵀW0V‖_F, W0 on ΔW's top-r singular directions U, V
        w0_top_fro : the same on W0's own top-r directions (‖top-r singular values‖)
        w0_random_fro : its expected value on random r-dimensional directions
        amplification : delta_fro / w0_proj_fro (Hu et al. report ~20 for GPT-3 at r=4; large: ΔW
            amplifies directions W0 hardly uses)
        magnitude_change : DoRA's ΔM, mean over output units of |‖W_j‖ − ‖W0_j‖|
        magnitude_change_rel : mean of |‖W_j‖ − ‖W0_j‖| / ‖W0_j‖
        direction_change : DoRA's ΔD, mean over output units of 1 − cos(W_j, W0_j)
        iterations : subspace-iteration steps used for W0 + ΔW's top-k
    """
    import pandas as pd

    results = _run(adapter, base, k, eps, vectors, progress, workers)
    rows = []
    for spec, res in zip(adapter.modules, results, strict=True):
        if res is None:
            continue
        intr, amp, dora = res
        rows.append(
            {"module": spec.name, "layer": spec.layer, "kind": spec.kind, "r": spec.r, "d_out": spec.d_out,
             "d_in": spec.d_in, "k": int(intr["sigma"].size), "eps": eps,
             "n_intruders": int((intr["best_cosine"] < eps).sum()),
             "min_best_cosine": float(intr["best_cosine"].min()), **amp, **dora,
             "iterations": intr["iterations"]}
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=DIAGNOSE_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame
