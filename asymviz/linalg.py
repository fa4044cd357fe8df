"""Linear algebra of ΔW = s·B·A without ever forming the d_out×d_in matrix.

Every analysis starts from each factor's float64 Gram (AAᵀ and BᵀB, r×r; `stacked_gram`, computed once per
module, for N adapters at once when comparing them). Its eigendecomposition MᵀM = V Λ Vᵀ gives

  * the singular values of A and B: sqrt(Λ);
  * an implicit orthonormal basis U = M V Λ^{-1/2} of each factor's space (`GramBasis`; no d×r Q is formed);
  * an R factor R = Λ^{1/2} Vᵀ (M = Q R for an orthonormal Q), so that with R_A, R_B

        ΔW = s · Q_B (R_B R_Aᵀ) Q_Aᵀ,

    ΔW's singular values are those of the r×r core C = s·R_B R_Aᵀ and its left singular vectors Q_B U_C.

`ModuleBases` holds all of it for one module (spectra and similarities share it). Cost: one pass over the
data and d·r² flops per factor. One rule decides every numerical rank: `rank_tolerance`.

Small LAPACK calls are slow with several threads each (measured: a 4096×64 QR took 50-110 ms with two MKL
threads against 3 ms with one), so `parallel_map` runs one module per worker thread with torch (and
scipy's OpenBLAS, when stacked_gram uses it) on one thread, and parallelises across modules instead.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

    from asymviz.adapters import LoraAdapter, LoraModule

T = TypeVar("T")

_thread_lock = threading.Lock()
_thread_users = 0
_saved_threads = 1
_blas_limits = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch with one intra-op thread inside the block (re-entrant, thread-safe)."""
    import torch

    global _thread_users, _saved_threads, _blas_limits
    with _thread_lock:
        if _thread_users == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            _blas_limits = _limit_other_blas() if "scipy.linalg.blas" in sys.modules else None
        _thread_users += 1
    try:
        yield
    finally:
        with _thread_lock:
            _thread_users -= 1
            if _thread_users == 0:
                torch.set_num_threads(_saved_threads)
                if _blas_limits is not None:
                    _blas_limits.restore_original_limits()
                    _blas_limits = None


def _limit_other_blas():
    """One thread for scipy's OpenBLAS too (stacked_gram's dsyrk), or None when threadpoolctl is absent
    (it comes with scikit-learn). A multi-threaded OpenBLAS inside our worker threads, on a busy machine,
    was measured 20x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=1, user_api="blas")


def prepare_grams(flops: float) -> None:
    """Call before parallel_map when its Grams will cost `flops` (≈ Σ d·(Σr)² over the stacked_gram calls):
    from 1e9 on (tens of ms) this loads scipy's BLAS, so that stacked_gram can use dsyrk under a one-thread
    OpenBLAS limit; below, the 80 ms import of scipy.linalg would cost more than it saves (small adapters,
    the CLI's latency)."""
    if flops >= 1e9:
        import scipy.linalg.blas  # noqa: F401


def default_workers() -> int:
    return max(
        1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )


def parallel_map(
    fn: Callable[[Any], T],
    items: Sequence[Any],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> list[T]:
    """[fn(x) for x in items], in order, over worker threads with torch on one intra-op thread each;
    progress(n_done) after each item."""
    workers = workers or default_workers()
    done = 0
    lock = threading.Lock()

    def run(item):
        nonlocal done
        result = fn(item)
        if progress:
            with lock:
                done += 1
                progress(done)
        return result

    with single_threaded():
        if workers == 1 or len(items) <= 1:
            return [run(x) for x in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, items))


def gram_flops(adapters: Sequence[LoraAdapter]) -> float:
    """≈ the flops of the stacked Grams of A and B over the adapters' modules (for prepare_grams)."""
    n = len(adapters)
    return float(sum((m.d_in + m.d_out) * (n * m.r) ** 2 for m in adapters[0].modules)) if n else 0.0


def map_modules(
    adapter: LoraAdapter,
    fn: Callable[[LoraModule], T],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> list[T]:
    """fn(module) for every module of the adapter, in order; each worker reads and processes one module at
    a time, so memory holds only a few modules."""
    prepare_grams(gram_flops([adapter]))
    return parallel_map(lambda spec: fn(adapter._load(spec)), adapter.modules, progress, workers)


# ------------------------------------------------------------------------------------------------------------
# the one numerical-rank rule


@lru_cache(maxsize=1024)  # a handful of (shape, dtype) per adapter; called per module and subspace
def rank_tolerance(shape: tuple[int, int], dtype: torch.dtype | None = None) -> float:
    """Relative tolerance τ of the numerical rank: σ_i counts when σ_i > τ·σ₁. The only rank rule in asymviz.

    τ = max(max(rows, cols)·eps, sqrt(max(rows, cols)·eps₆₄)), eps the machine epsilon of the data's working
    precision (float32 for float16/bfloat16/float32 data, float64 for float64 data; default float32).
    The first term is numpy's `matrix_rank` rule: singular values below it are rounding noise of the data.
    The second is what a float64 Gram matrix resolves (λ = σ² carries an error of about d·eps₆₄·λ₁, so
    σ/σ₁ below sqrt(d·eps₆₄) is not resolved); it only binds for float64 data.
    """
    import torch

    if dtype is None or not dtype.is_floating_point or torch.finfo(dtype).bits < 32:
        dtype = torch.float32
    n = max(max(shape), 1)
    return max(n * torch.finfo(dtype).eps, math.sqrt(n * torch.finfo(torch.float64).eps))


def numerical_rank(sigma, shape: tuple[int, int], dtype: torch.dtype | None = None) -> int:
    """Count of singular values (1-D, descending; tensor or array) above rank_tolerance(shape, dtype)·σ₁."""
    import torch

    sigma = torch.as_tensor(sigma)
    if sigma.numel() == 0 or not float(sigma[0]) > 0.0:
        return 0
    return int((sigma > rank_tolerance(tuple(shape), dtype) * float(sigma[0])).sum())


# ------------------------------------------------------------------------------------------------------------
# Gram matrices: float64, one pass over the data


def stacked_gram(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """G = XᵀX (Σr_i × Σr_i, float64) for X = [M_1 … M_N], the factors (d, r_i) side by side.

    Block (i, j) is M_iᵀM_j: the diagonal blocks are each factor's Gram, the others the cross products
    that subspace similarities need. The factors are copied once into one float64 buffer (products of
    float32 numbers are exact in float64, so G is accurate to ~d·eps₆₄·‖M‖²). Inside a single_threaded
    block that limited scipy's OpenBLAS (see prepare_grams), BLAS `dsyrk` computes the upper triangle
    only: d·(Σr)² flops, half a general product's (measured 1.7-2x faster than torch's float64 matmul
    here; scipy's BLAS releases the GIL, so parallel_map's threads run it concurrently). Elsewhere
    torch's float64 matmul computes the same numbers.
    """
    import torch

    d = factors[0].shape[0]
    if any(M.shape[0] != d for M in factors):
        raise ValueError(f"factors have different numbers of rows: {[M.shape[0] for M in factors]}")
    width = sum(M.shape[1] for M in factors)
    if d == 0 or width == 0:
        return torch.zeros(width, width, dtype=torch.float64)
    # Copy into float64 in the factors' own memory order (a transposing copy costs 3x more): rows of A
    # (factor Aᵀ, stored (r, d)) become rows of Y = Xᵀ (Σr, d); rows of B become rows of X (d, Σr).
    by_rows = factors[0].stride(0) == 1  # Mᵀ is the contiguous one
    if _blas_limits is None:
        X = torch.cat([M.double() for M in factors], dim=1)  # (d, Σr)
        return X.T @ X
    from scipy.linalg.blas import dsyrk

    if by_rows:
        Y = torch.empty(width, d, dtype=torch.float64)  # Xᵀ, C order = X in Fortran order
        col = 0
        for M in factors:
            Y[col : col + M.shape[1]].copy_(M.T)
            col += M.shape[1]
        X_f, trans = Y.numpy().T, 1  # (d, Σr) Fortran: dsyrk(trans=1) gives XᵀX
    else:
        X = torch.empty(d, width, dtype=torch.float64)
        col = 0
        for M in factors:
            X[:, col : col + M.shape[1]].copy_(M)
            col += M.shape[1]
        X_f, trans = X.numpy().T, 0  # Xᵀ (Σr, d) Fortran: dsyrk(trans=0) gives XᵀX
    G = torch.from_numpy(dsyrk(1.0, X_f, trans=trans))  # upper triangle of XᵀX
    return G.triu() + G.triu(1).T


# ------------------------------------------------------------------------------------------------------------
# implicit orthonormal bases (no d×r Q is ever formed)


@dataclass(frozen=True)
class GramBasis:
    """An orthonormal basis U = M @ W (d×k) of a factor's column space, kept implicit.

    M is the factor as stored (Aᵀ for A's row space, B for B's column space; float32 or float64, never
    copied), W (r×k) = V_k Λ_k^{-1/2} from the eigendecomposition of the float64 Gram MᵀM = V Λ Vᵀ, ordered
    by singular value and cut at the numerical rank (rank_tolerance). Then U1ᵀU2 = W1ᵀ (M1ᵀM2) W2 costs one
    chunked d×r×r product per pair (stacked_gram). Why float64 Grams: singular values down to the rank
    tolerance (≈ d·eps₃₂ ≈ 5e-4·σ₁ at d = 4096) have λ = σ² ≈ 2e-7·λ₁, at the rounding level of a float32
    Gram, so a float32 Gram would invent or lose directions near the cut (tests/test_linalg.py pins this on
    a factor with condition number 1e6).
    """

    M: torch.Tensor  # (d, r)
    W: torch.Tensor  # (r, k) float64
    sigma: torch.Tensor  # (k,) float64 singular values, descending

    @property
    def d(self) -> int:
        return self.M.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[1]

    def explicit(self) -> torch.Tensor:
        """U (d, k) float32."""
        return (self.M.double() @ self.W).float()

    def top(self, k: int) -> GramBasis:
        return GramBasis(self.M, self.W[:, :k], self.sigma[:k])


@dataclass(frozen=True)
class FactorGram:
    """The full eigendecomposition of one factor's Gram MᵀM = V Λ Vᵀ (descending), before any truncation."""

    M: torch.Tensor  # (d, r)
    V: torch.Tensor  # (r, r) float64
    sigma: torch.Tensor  # (r,) float64 = sqrt(Λ), descending; the singular values of M

    @classmethod
    def from_gram(cls, M: torch.Tensor, G: torch.Tensor) -> FactorGram:
        import torch

        lam, V = torch.linalg.eigh(G)  # ascending
        return cls(M, V.flip(1), lam.flip(0).clamp_min(0).sqrt())

    def basis(self, shape: tuple[int, int], k: int | None = None) -> GramBasis:
        """Implicit orthonormal basis of span(M), cut at the numerical rank of a matrix of `shape`, and at k."""
        keep = numerical_rank(self.sigma, shape, self.M.dtype)
        keep = keep if k is None else min(keep, k)
        return GramBasis(self.M, self.V[:, :keep] / self.sigma[:keep], self.sigma[:keep])

    @cached_property
    def r_factor(self) -> torch.Tensor:
        """R (r, r) = Λ^{1/2} Vᵀ with RᵀR = MᵀM, so M = Q R for an orthonormal Q (a valid QR's R up to a rotation)."""
        return self.sigma[:, None] * self.V.T


def gram_basis(M: torch.Tensor, k: int | None = None) -> GramBasis:
    """Implicit orthonormal basis of M's column space (M: d×r), truncated to the numerical rank and k."""
    return FactorGram.from_gram(M, stacked_gram([M])).basis(tuple(M.shape), k)


@dataclass(frozen=True)
class ModuleBases:
    """Everything the spectra and similarity analyses need from one module, computed once from its factors.

    Build with `module_bases`; it holds references to the module's A and B (no copies) and r×r float64
    matrices, so keeping one per module of an adapter costs about the adapter's size. What only some
    analyses need (ΔW's spectrum, the truncated bases) is computed on first use and kept.
    """

    name: str
    a: FactorGram  # over Aᵀ (d_in, r): A's right singular space
    b: FactorGram  # over B (d_out, r): B's left singular space
    scaling: float
    d_in: int
    d_out: int
    r: int

    @cached_property
    def delta_sigma(self) -> torch.Tensor:
        """(r,) ΔW's singular values (incl. scaling), descending: those of the core s·R_B R_Aᵀ."""
        import torch

        return torch.linalg.svdvals(self.scaling * (self.b.r_factor @ self.a.r_factor.T))

    @cached_property
    def _a_basis(self) -> GramBasis:
        return self.a.basis((self.r, self.d_in))

    @cached_property
    def _b_basis(self) -> GramBasis:
        return self.b.basis((self.d_out, self.r))

    @property
    def dtype(self) -> torch.dtype:
        return self.b.M.dtype

    def spectra(self) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
        """{"A" | "B" | "delta": (σ (r,) float64 descending, (rows, cols) of that matrix)}."""
        return {"A": (self.a.sigma, (self.r, self.d_in)), "B": (self.b.sigma, (self.d_out, self.r)),
                "delta": (self.delta_sigma, (self.d_out, self.d_in))}  # fmt: skip

    def basis(self, which: str, k: int | None = None) -> GramBasis:
        """Row space of A ("A", d = d_in), column space of B ("B", d = d_out) or the top-k column space of
        ΔW ("delta", d = d_out, as B @ W), each cut at its numerical rank."""
        if which == "A":
            return self._a_basis if k is None else self._a_basis.top(k)
        if which == "B":
            return self._b_basis if k is None else self._b_basis.top(k)
        if which == "delta":
            return self._delta_basis(k)
        raise ValueError(f"which must be 'A', 'B' or 'delta', got {which!r}")

    def _delta_basis(self, k: int | None) -> GramBasis:
        """With X ≈ (X W_X) R_X on each factor's numerical range (R_X = Λ^{1/2}Vᵀ cut to k_X rows),
        ΔW = s·(B W_B)(R_B R_Aᵀ)(Aᵀ W_A)ᵀ: the left singular vectors of the k_B×k_A core give ΔW's, B W_B U_C."""
        import torch

        a, b = self.basis("A"), self.basis("B")
        if a.k == 0 or b.k == 0:
            return GramBasis(b.M, b.W[:, :0], b.sigma[:0])
        core = self.scaling * (self.b.r_factor[: b.k] @ self.a.r_factor[: a.k].T)  # (k_B, k_A)
        U_C, S, _ = torch.linalg.svd(core)
        keep = numerical_rank(S, (self.d_out, self.d_in), self.dtype)
        keep = keep if k is None else min(keep, k)
        return GramBasis(b.M, b.W @ U_C[:, :keep], S[:keep])


def finite_gram(G: torch.Tensor) -> bool:
    """Whether the factor behind a Gram holds only finite values: its diagonal Σ m² turns NaN or inf with
    any non-finite entry (and float32 data cannot overflow it), so this costs r checks instead of a pass
    over the data."""
    import torch

    return bool(torch.isfinite(G.diagonal()).all())


def module_bases(
    module: LoraModule, gram_a: torch.Tensor | None = None, gram_b: torch.Tensor | None = None
) -> ModuleBases:
    """ModuleBases of one module; pass its float64 Grams AAᵀ (r, r) and BᵀB (r, r) if already computed.

    ΔW = s·B·A = s·Q_B (R_B R_Aᵀ) Q_Aᵀ with R_X = Λ_X^{1/2} V_Xᵀ from each Gram, so ΔW's singular values
    are those of the r×r core C = s·R_B R_Aᵀ and its left singular vectors are Q_B U_C.
    """
    At = module.A.T  # (d_in, r), a view
    a = FactorGram.from_gram(At, stacked_gram([At]) if gram_a is None else gram_a)
    b = FactorGram.from_gram(module.B, stacked_gram([module.B]) if gram_b is None else gram_b)
    return ModuleBases(module.name, a, b, module.scaling, module.d_in, module.d_out, module.r)


def delta_gram_basis(module: LoraModule, k: int | None = None) -> GramBasis:
    """Implicit basis of the top-k column space of ΔW = s·B·A, as B @ W."""
    return module_bases(module).basis("delta", k)


def basis_similarity(b1: GramBasis, b2: GramBasis, cross: torch.Tensor | None = None) -> float:
    """‖U1ᵀU2‖²_F / min(k1, k2) for implicit bases (NaN when either is empty); `cross` = M1ᵀM2 if known."""
    if b1.d != b2.d:
        raise ValueError(f"subspaces live in different spaces: {b1.d} vs {b2.d} dimensions")
    k = min(b1.k, b2.k)
    if k == 0:
        return math.nan
    cross = stacked_gram([b1.M, b2.M])[: b1.M.shape[1], b1.M.shape[1] :] if cross is None else cross
    return float((b1.W.T @ cross @ b2.W).square().sum()) / k


def basis_overlap(b1: GramBasis, b2: GramBasis) -> torch.Tensor:
    """U1ᵀU2 (k1×k2, float64) for implicit bases (for principal angles and φ grids)."""
    cross = stacked_gram([b1.M, b2.M])[: b1.M.shape[1], b1.M.shape[1] :]
    return b1.W.T @ cross @ b2.W


# ------------------------------------------------------------------------------------------------------------
# explicit SVD of ΔW's top directions (diagnostics)


def delta_svd(module: LoraModule, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top singular triplets of ΔW = scaling·B·A: U (d_out, k'), S (k'), V (d_in, k'), k' ≤ numerical rank."""
    import torch

    Q_A, R_A = torch.linalg.qr(module.A.T, mode="reduced")
    Q_B, R_B = torch.linalg.qr(module.B, mode="reduced")
    U_C, S, V_Ct = torch.linalg.svd(module.scaling * (R_B @ R_A.T))
    keep = numerical_rank(S, (module.d_out, module.d_in), module.B.dtype)
    if k is not None:
        keep = min(keep, k)
    return Q_B @ U_C[:, :keep], S[:keep], Q_A @ V_Ct[:keep].T
