"""How much two adapters' factors point the same way: subspace similarity, principal angles, φ grids.

The paper's metric (Zhu et al. 2024, after Hu et al. 2021): for orthonormal bases U1 (d×k1), U2 (d×k2),

    sim(U1, U2) = ‖U1ᵀ U2‖²_F / min(k1, k2)      ∈ [0, 1]

with U the row space of A (in input space, d = d_in), the column space of B (output space, d = d_out) or the
top-k column space of ΔW (d = d_out). Bases are kept implicit, U = M·W with M the factor and W from its
float64 r×r Gram matrix (asymviz.linalg.GramBasis), truncated to the numerical rank: U1ᵀU2 = W1ᵀ(M1ᵀM2)W2,
and no d×r Q is ever formed. For N adapters, each module's factors are read once and one chunked pass
(asymviz.linalg.stacked_gram) gives every adapter's Gram and every pair's cross product together
(`ModuleGroup`); bases come from the diagonal blocks, so each adapter's bases are computed once, not per pair. Subspaces are compared, never raw singular vectors
(their signs are arbitrary). Every similarity comes with its random baseline, the expected value for uniformly random
subspaces of the same dimensions: E‖U1ᵀU2‖²_F = k1·k2/d, so the baseline is max(k1, k2)/d.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from asymviz.errors import AdapterError
from asymviz.linalg import (
    FactorGram,
    GramBasis,
    basis_overlap,
    finite_gram,
    gram_basis,
    module_bases,
    parallel_map,
    stacked_gram,
    thread_arena,
)

if TYPE_CHECKING:
    import pandas as pd

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
        return module_bases(module).basis("delta", k)
    raise ValueError(f"which must be one of {WHICH}, got {which!r}")


def orthonormal_basis(module: LoraModule, which: str, k: int | None = None) -> np.ndarray:
    """Explicit orthonormal basis (d×k', float32) of module_basis(module, which, k); k' ≤ numerical rank."""
    return module_basis(module, which, k).explicit()


def subspace_similarity(U1: np.ndarray, U2: np.ndarray) -> float:
    """‖U1ᵀU2‖²_F / min(k1, k2) for orthonormal U1 (d×k1), U2 (d×k2) (arrays or CPU tensors); NaN when
    either is empty. 1 when one subspace contains the other, 0 when they are orthogonal."""
    U1, U2 = np.asarray(U1), np.asarray(U2)
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"subspaces live in different spaces: {U1.shape[0]} vs {U2.shape[0]} dimensions")
    k = min(U1.shape[1], U2.shape[1])
    if k == 0:
        return math.nan
    return float(np.square(U1.T @ U2).sum()) / k


def random_baseline(k1: int, k2: int, d: int) -> float:
    """Expected sim for uniformly random subspaces of dimensions k1, k2 in R^d: max(k1, k2)/d (≤ 1)."""
    if min(k1, k2) == 0 or d == 0:
        return math.nan
    return min(1.0, max(k1, k2) / d)


def principal_angles(U1: np.ndarray, U2: np.ndarray, degrees: bool = True):
    """Principal angles (ascending) between the spans of orthonormal U1 and U2 (arrays or CPU tensors):
    arccos of the singular values of U1ᵀU2. Returns a 1-D numpy array of length min(k1, k2)."""
    return _angles(np.asarray(U1).T @ np.asarray(U2), degrees)


def _angles(overlap: np.ndarray, degrees: bool = True):
    cos = np.clip(np.linalg.svd(overlap, compute_uv=False), -1.0, 1.0).astype(np.float64)
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
    G = np.square(basis_overlap(b1, b2))  # (k1, k2)
    cum = G.cumsum(0).cumsum(1)  # cum[i-1, j-1] = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F
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
        raise AdapterError(
            "the adapters have no adapted module in common (different base models or targets?)"
        )
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
    bad = [w for w in which if w not in WHICH]
    if bad:
        raise ValueError(f"which must be among {WHICH}, got {bad}")
    modules = _common_modules(adapters)
    n = len(adapters)
    index_pairs = [(i, j) for i in range(n) for j in range(n) if (i < j if pairs == "upper" else True)]

    def per_module(name: str) -> dict[str, list] | None:
        with thread_arena() as arena:  # the group is dropped in the block: only numbers leave it
            return _pair_columns(ModuleGroup.of([a._load(a.spec(name), arena) for a in adapters], which, k))

    def _pair_columns(group: ModuleGroup | None) -> dict[str, list] | None:
        if group is None:
            return None
        cols: dict[str, list] = {c: [] for c in PAIR_COLUMNS}
        for w in which:
            sim = group.similarity_matrix(w)
            ks = [b.k for b in group.bases[w]]
            d = group.bases[w][0].d
            for i, j in index_pairs:
                for col, value in zip(
                    PAIR_COLUMNS,
                    (
                        labels[i],
                        labels[j],
                        group.name,
                        group.layer,
                        group.kind,
                        w,
                        d,
                        ks[i],
                        ks[j],
                        sim[i, j],
                        random_baseline(ks[i], ks[j], d),
                    ),
                ):
                    cols[col].append(value)
        return cols

    results = [
        c for c in parallel_map(per_module, modules, progress=progress, workers=workers) if c is not None
    ]
    data = {col: [v for c in results for v in c[col]] for col in PAIR_COLUMNS}
    frame = pd.DataFrame(data, columns=PAIR_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    for col in ("dim", "k1", "k2"):
        frame[col] = frame[col].astype("int64")
    frame["similarity"] = frame["similarity"].astype(float)
    frame["random_baseline"] = frame["random_baseline"].astype(float)
    return frame


@dataclass(frozen=True)
class ModuleGroup:
    """One module of N adapters: each adapter's bases (computed once) and the stacked float64 Grams.

    grams["A"] is [A_1ᵀ … A_Nᵀ]ᵀ[A_1ᵀ … A_Nᵀ] ((Σr_i)², float64), grams["B"] the same over the B's;
    block (i, j) is M_iᵀM_j, so every pair's U_iᵀU_j = W_iᵀ G_ij W_j comes without touching d again.
    ΔW's bases are B·W, so "delta" uses grams["B"].
    """

    name: str
    layer: int | None
    kind: str
    bases: dict[str, list[GramBasis]]  # which -> one basis per adapter ("delta": its span, ordered=False)
    grams: dict[str, np.ndarray]  # "A" | "B" -> (Σr, Σr) float64
    offsets: tuple[int, ...]  # column offset of adapter i's factor in the stacked Gram (length N + 1)

    @classmethod
    def of(
        cls, loaded: Sequence[LoraModule], which: Iterable[str], k: int | None = None
    ) -> ModuleGroup | None:
        """Bases of `which` for the N loaded versions of one module. k: ΔW's top-k (default: the smallest r).
        None when any version holds a non-finite value in A or B (the module is then skipped)."""
        which = tuple(which)
        first = loaded[0]
        for w in which:
            if w not in WHICH:
                raise ValueError(f"which must be among {WHICH}, got {w!r}")
            dims = {m.d_in if w == "A" else m.d_out for m in loaded}
            if len(dims) > 1:
                _check_space(*sorted(dims)[:2], first.name, w)
        offsets = [0]
        for m in loaded:
            offsets.append(offsets[-1] + m.r)
        factors = {f for w in which for f in (("A", "B") if w == "delta" else (w,))}
        grams = {}
        if "A" in factors:
            grams["A"] = stacked_gram([m.A.T for m in loaded])
        if "B" in factors:
            grams["B"] = stacked_gram([m.B for m in loaded])
        if not all(finite_gram(G) for G in grams.values()):
            return None
        for f in {"A", "B"} - factors:  # the factor not needed still decides whether the module counts
            if not all(bool(np.isfinite(m.A if f == "A" else m.B).all()) for m in loaded):
                return None

        def block(f: str, i: int):
            return grams[f][offsets[i] : offsets[i + 1], offsets[i] : offsets[i + 1]]

        bases: dict[str, list[GramBasis]] = {}
        if "delta" in which:
            k_delta = k or min(m.r for m in loaded)
            mb = [module_bases(m, block("A", i), block("B", i)) for i, m in enumerate(loaded)]
            bases["delta"] = [b.basis("delta", k_delta, ordered=False) for b in mb]  # spans only
            for w in ("A", "B"):
                if w in which:
                    bases[w] = [b.basis(w) for b in mb]
        else:
            for w in which:
                M = [m.A.T if w == "A" else m.B for m in loaded]
                shapes = [(m.r, m.d_in) if w == "A" else (m.d_out, m.r) for m in loaded]
                bases[w] = [
                    FactorGram.from_gram(M[i], block(w, i)).basis(shapes[i]) for i in range(len(loaded))
                ]
        return cls(first.name, first.layer, first.kind, bases, grams, tuple(offsets))

    def overlap(self, which: str) -> np.ndarray:
        """O = [U_1 … U_N]ᵀ[U_1 … U_N] (Σk × Σk, float64): block (i, j) is U_iᵀU_j."""
        G = self.grams["A" if which == "A" else "B"]
        W = np.zeros((G.shape[0], sum(b.k for b in self.bases[which])))
        col = 0
        for i, b in enumerate(self.bases[which]):
            W[self.offsets[i] : self.offsets[i + 1], col : col + b.k] = b.W
            col += b.k
        return W.T @ G @ W

    def similarity_matrix(self, which: str, overlap: np.ndarray | None = None):
        """N×N numpy array of ‖U_iᵀU_j‖²_F / min(k_i, k_j) (NaN where a subspace is empty); pass
        `overlap` = self.overlap(which) if already computed, else each block U_iᵀU_j = W_iᵀ G_ij W_j is
        computed on its own, for i ≤ j (‖U_jᵀU_i‖ = ‖U_iᵀU_j‖): about a third of the full product's flops
        for two adapters."""
        bases = self.bases[which]
        ks = np.array([b.k for b in bases])
        out = np.full((len(ks), len(ks)), np.nan)
        ok = ks > 0
        if overlap is not None:
            if ok.any():  # block sums over the non-empty blocks (empty ones have no columns to skip)
                starts = np.cumsum([0, *ks])[:-1][ok]
                O2 = np.square(overlap)
                sums = np.add.reduceat(np.add.reduceat(O2, starts, axis=0), starts, axis=1)
                out[np.ix_(ok, ok)] = sums / np.minimum.outer(ks[ok], ks[ok])
            return out
        G, o = self.grams["A" if which == "A" else "B"], self.offsets
        live = np.flatnonzero(ok)
        for n, i in enumerate(live):
            for j in live[n:]:
                block = bases[i].W.T @ G[o[i] : o[i + 1], o[j] : o[j + 1]] @ bases[j].W  # U_iᵀU_j (k_i, k_j)
                out[i, j] = out[j, i] = float(np.square(block).sum()) / min(ks[i], ks[j])
        return out


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
