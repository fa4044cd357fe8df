"""How much two adapters' factors point the same way: subspace similarity, principal angles, φ grids.

The paper's metric (Zhu et al. 2024, after Hu et al. 2021): for orthonormal bases U1 (d×k1), U2 (d×k2),

    sim(U1, U2) = ‖U1ᵀ U2‖²_F / min(k1, k2)      ∈ [0, 1]

with U the row space of A (in input space, d = d_in), the column space of B (output space, d = d_out) or the
top-k column space of ΔW (d = d_out). Bases are kept implicit, U = M·W with M the factor and W from its
float64 r×r Gram matrix (asymviz.linalg.GramBasis), truncated to the numerical rank: U1ᵀU2 = W1ᵀ(M1ᵀM2)W2
costs one d×r×r product, and no d×r Q is ever formed. Subspaces are compared, never raw singular vectors
(their signs are arbitrary). Every similarity comes with its random baseline, the expected value for uniformly random
subspaces of the same dimensions: E‖U1ᵀU2‖²_F = k1·k2/d, so the baseline is max(k1, k2)/d.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from asymviz.errors import AdapterError
from asymviz.linalg import (
    GramBasis,
    basis_overlap,
    basis_similarity,
    delta_gram_basis,
    gram_basis,
    parallel_map,
)

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from asymviz.adapters import LoraAdapter, LoraModule

WHICH = ("A", "B", "delta")
PAIR_COLUMNS = [
    "adapter_1", "adapter_2", "module", "layer", "kind", "which", "dim", "k1", "k2", "similarity",
    "random_baseline",
]  # fmt: skip


def module_basis(module: LoraModule, which: str, k: int | None = None) -> GramBasis:
    """Implicit orthonormal basis of the row space of A ("A", d = d_in), the column space of B ("B",
    d = d_out) or the top-k column space of ΔW ("delta", d = d_out), ordered by singular value."""
    if which == "A":
        return gram_basis(module.A.T, k)
    if which == "B":
        return gram_basis(module.B, k)
    if which == "delta":
        return delta_gram_basis(module, k)
    raise ValueError(f"which must be one of {WHICH}, got {which!r}")


def orthonormal_basis(module: LoraModule, which: str, k: int | None = None) -> torch.Tensor:
    """Explicit orthonormal basis (d×k', float32) of module_basis(module, which, k); k' ≤ numerical rank."""
    return module_basis(module, which, k).explicit()


def subspace_similarity(U1: torch.Tensor, U2: torch.Tensor) -> float:
    """‖U1ᵀU2‖²_F / min(k1, k2) for orthonormal U1 (d×k1), U2 (d×k2); NaN when either is empty.
    1 when one subspace contains the other, 0 when they are orthogonal."""
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"subspaces live in different spaces: {U1.shape[0]} vs {U2.shape[0]} dimensions")
    k = min(U1.shape[1], U2.shape[1])
    if k == 0:
        return math.nan
    return float((U1.T @ U2).square().sum()) / k


def random_baseline(k1: int, k2: int, d: int) -> float:
    """Expected sim for uniformly random subspaces of dimensions k1, k2 in R^d: max(k1, k2)/d (≤ 1)."""
    if min(k1, k2) == 0 or d == 0:
        return math.nan
    return min(1.0, max(k1, k2) / d)


def principal_angles(U1: torch.Tensor, U2: torch.Tensor, degrees: bool = True):
    """Principal angles (ascending) between the spans of orthonormal U1 and U2: arccos of the singular values
    of U1ᵀU2. Returns a 1-D numpy array of length min(k1, k2)."""
    return _angles(U1.T @ U2, degrees)


def _angles(overlap: torch.Tensor, degrees: bool = True):
    import numpy as np
    import torch

    cos = torch.linalg.svdvals(overlap).clamp(-1.0, 1.0).double().numpy()
    angles = np.arccos(cos)
    return np.degrees(angles) if degrees else angles


def phi_grid(m1: LoraModule, m2: LoraModule, which: str = "A") -> pd.DataFrame:
    """The LoRA paper's φ(i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j) for i ≤ k1, j ≤ k2, with U the
    singular vectors of A (right) or B (left) or ΔW (left), ordered by singular value.

    Returns
    -------
    DataFrame with columns ``i, j, phi`` (one row per pair; i, j from 1).
    """
    import pandas as pd

    b1, b2 = module_basis(m1, which), module_basis(m2, which)
    _check_space(b1.d, b2.d, m1.name, which)
    G = basis_overlap(b1, b2).square()  # (k1, k2)
    cum = G.cumsum(0).cumsum(1).numpy()  # cum[i-1, j-1] = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F
    rows = [
        {"i": i, "j": j, "phi": cum[i - 1, j - 1] / min(i, j)}
        for i in range(1, b1.k + 1)
        for j in range(1, b2.k + 1)
    ]
    return pd.DataFrame(rows, columns=["i", "j", "phi"])


def _check_space(d1: int, d2: int, name: str, which: str) -> None:
    if d1 != d2:
        raise AdapterError(
            f"module {name!r}: the adapters' {which} live in spaces of different dimension "
            f"({d1} vs {d2}); were they trained on the same base model?"
        )


def _common_modules(adapters: Sequence[LoraAdapter]) -> list[str]:
    common = set(adapters[0].names)
    for a in adapters[1:]:
        common &= set(a.names)
    names = [n for n in adapters[0].names if n in common]
    for a in adapters:
        missing = len(a) - len(names)
        if missing:
            note = f"{a.source}: {missing} module(s) are not in every adapter compared and were left out"
            if note not in a.problems:
                a.problems.append(note)
    if not names:
        raise AdapterError("the adapters have no adapted module in common (different base models or targets?)")
    return names


def pairwise_similarity(
    adapters: Sequence[LoraAdapter],
    names: Sequence[str] | None = None,
    which: Iterable[str] | str = WHICH,
    k: int | None = None,
    pairs: str = "upper",
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Subspace similarity between every pair of adapters, per module and factor.

    Parameters
    ----------
    adapters : two or more adapters on the same base model (modules matched by name)
    names : labels for the adapters (default: each adapter's source)
    which : any of "A", "B", "delta"
    k : dimension of ΔW's top-k column space (default: each module's smaller rank); A and B use their
        full numerical rank
    pairs : "upper" (i < j: N(N-1)/2 pairs) or "all" (every ordered pair incl. i = j, for heatmaps)
    progress : called with the number of modules done

    Returns
    -------
    DataFrame, one row per (pair, module, which), columns
        adapter_1, adapter_2 : the names of the two adapters
        module, layer, kind : the module
        which : "A" (row space of A), "B" (column space of B) or "delta" (top-k column space of ΔW)
        dim : the ambient dimension d (d_in for A, d_out for B and delta)
        k1, k2 : the two subspaces' dimensions (numerical rank; 0 gives NaN similarity)
        similarity : ‖U1ᵀU2‖²_F / min(k1, k2)
        random_baseline : max(k1, k2)/d, its expected value for random subspaces
    """
    import pandas as pd

    if len(adapters) < 2:
        raise ValueError("pairwise_similarity needs at least two adapters")
    if pairs not in ("upper", "all"):
        raise ValueError(f"pairs must be 'upper' or 'all', got {pairs!r}")
    which = (which,) if isinstance(which, str) else tuple(which)
    labels = list(names) if names is not None else [a.source for a in adapters]
    if len(labels) != len(adapters) or len(set(labels)) != len(labels):
        raise ValueError("names must give each adapter a distinct label")
    modules = _common_modules(adapters)
    n = len(adapters)
    index_pairs = [(i, j) for i in range(n) for j in range(n) if (i < j if pairs == "upper" else True)]

    def per_module(name: str) -> list[dict]:
        loaded = [a.module(name) for a in adapters]
        if not all(m.finite for m in loaded):
            return []
        first = loaded[0]
        k_delta = k or min(m.r for m in loaded)
        bases = {"A": [gram_basis(m.A.T) for m in loaded], "B": [gram_basis(m.B) for m in loaded]}
        if "delta" in which:
            bases["delta"] = [delta_gram_basis(m, k_delta, a, b) for m, a, b in zip(loaded, bases["A"], bases["B"])]
        rows = []
        for i, j in index_pairs:
            crosses = {}  # M_iᵀ M_j per factor; "delta" shares B's (its bases are B·W)
            for w in which:
                b1, b2 = bases[w][i], bases[w][j]
                _check_space(b1.d, b2.d, name, w)
                factor = "A" if w == "A" else "B"
                if factor not in crosses:
                    crosses[factor] = b1.M.T @ b2.M
                rows.append(
                    {"adapter_1": labels[i], "adapter_2": labels[j], "module": name, "layer": first.layer,
                     "kind": first.kind, "which": w, "dim": b1.d, "k1": b1.k, "k2": b2.k,
                     "similarity": basis_similarity(b1, b2, crosses[factor]),
                     "random_baseline": random_baseline(b1.k, b2.k, b1.d)}
                )  # fmt: skip
        return rows

    results = parallel_map(per_module, modules, progress=progress, workers=workers)
    frame = pd.DataFrame([row for rows in results for row in rows], columns=PAIR_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def adapter_similarity(
    a1: LoraAdapter,
    a2: LoraAdapter,
    which: Iterable[str] | str = WHICH,
    k: int | None = None,
    names: Sequence[str] = ("adapter_1", "adapter_2"),
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Similarity of two adapters per module: pairwise_similarity for one pair (same columns)."""
    return pairwise_similarity([a1, a2], names=names, which=which, k=k, progress=progress)


def module_principal_angles(a1: LoraAdapter, a2: LoraAdapter, which: str = "A") -> pd.DataFrame:
    """Principal angles between two adapters' subspaces, per common module.

    Returns
    -------
    DataFrame with columns ``module, layer, kind, which, i, angle_deg, cosine`` (i from 1, ascending angle).
    """
    import numpy as np
    import pandas as pd

    parts = []
    for name in _common_modules([a1, a2]):
        m1, m2 = a1.module(name), a2.module(name)
        if not (m1.finite and m2.finite):
            continue
        b1, b2 = module_basis(m1, which), module_basis(m2, which)
        _check_space(b1.d, b2.d, name, which)
        angles = _angles(basis_overlap(b1, b2))
        parts.append(
            pd.DataFrame({"module": name, "layer": m1.layer, "kind": m1.kind, "which": which,
                          "i": np.arange(1, angles.size + 1), "angle_deg": angles,
                          "cosine": np.cos(np.radians(angles))})
        )  # fmt: skip
    columns = ["module", "layer", "kind", "which", "i", "angle_deg", "cosine"]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame[columns]
