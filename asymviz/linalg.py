"""Linear algebra of ΔW = s·B·A without ever forming the d_out×d_in matrix, on numpy.

Every analysis starts from each factor's float64 Gram (AAᵀ and BᵀB, r×r; `stacked_gram`, computed once per
module, for N adapters at once when comparing them). Its eigendecomposition MᵀM = V Λ Vᵀ gives

  * the singular values of A and B: sqrt(Λ);
  * an implicit orthonormal basis U = M V Λ^{-1/2} of each factor's space (`GramBasis`; no d×r Q is formed);
  * an R factor R = Λ^{1/2} Vᵀ (M = Q R for an orthonormal Q), so that with R_A, R_B

        ΔW = s · Q_B (R_B R_Aᵀ) Q_Aᵀ,

    ΔW's singular values are those of the r×r core C = s·R_B R_Aᵀ and its left singular vectors Q_B U_C.

`ModuleBases` holds all of it for one module (spectra and similarities share it). Cost: one pass over the
data and d·r² flops per factor. One rule decides every numerical rank: `rank_tolerance`.

Everything here takes and returns numpy arrays (LoraModule's A and B are numpy), so the analyses never
import torch; torch tensors on the CPU are accepted where a factor is expected (np.asarray views them).
Small LAPACK calls are slow with several threads each (measured: a 4096×64 QR took 50-110 ms with two
threads against 3 ms with one), so `parallel_map` runs one module per worker thread with the BLAS (numpy's
and scipy's, through threadpoolctl, and torch's when it is loaded) on one thread, and parallelises across
modules instead; numpy's matmul and LAPACK calls release the GIL, so the threads run them concurrently.
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

import numpy as np

if TYPE_CHECKING:
    from asymviz.adapters import LoraAdapter, LoraModule

T = TypeVar("T")

_thread_lock = threading.Lock()
_thread_users = 0
_saved_threads: int | None = None
_blas_limits = None
_buffers = threading.local()  # per thread: stacked_gram's float64 block, thread_arena's Arena


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the BLAS libraries (numpy's, scipy's; torch's intra-op pool when torch is loaded) on one thread
    inside the block (re-entrant, thread-safe). A multi-threaded BLAS inside parallel_map's worker threads,
    on a busy machine, was measured 20x slower."""
    global _thread_users, _saved_threads, _blas_limits
    with _thread_lock:
        if _thread_users == 0:
            torch = sys.modules.get("torch")
            _saved_threads = None
            if torch is not None and hasattr(torch, "set_num_threads"):
                _saved_threads = torch.get_num_threads()
                torch.set_num_threads(1)
            _blas_limits = _limit_blas()
        _thread_users += 1
    try:
        yield
    finally:
        with _thread_lock:
            _thread_users -= 1
            if _thread_users == 0:
                torch = sys.modules.get("torch")
                if _saved_threads is not None and torch is not None:
                    torch.set_num_threads(_saved_threads)
                if _blas_limits is not None:
                    _blas_limits.restore_original_limits()
                    _blas_limits = None


def _limit_blas():
    """One thread for every loaded BLAS, or None when threadpoolctl is absent (it comes with scikit-learn)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=1, user_api="blas")


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
    """[fn(x) for x in items], in order, over worker threads with the BLAS on one thread each;
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


@contextmanager
def thread_arena():
    """`with thread_arena() as arena:` an asymviz.adapters.tensors.Arena of this thread, reset, for the
    modules read inside the block (see map_modules' `transient`). Arenas wait in a per-thread free list, so
    a block nested in another on the same thread (an analysis run from inside map_modules' transient fn,
    on the caller's thread when workers=1) gets another arena instead of overwriting the outer block's
    arrays."""
    from asymviz.adapters.tensors import Arena

    free = getattr(_buffers, "arenas", None)
    if free is None:
        free = _buffers.arenas = []
    arena = free.pop() if free else Arena()
    arena.reset()
    try:
        yield arena
    finally:
        free.append(arena)


def map_modules(
    adapter: LoraAdapter,
    fn: Callable[[LoraModule], T],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    transient: bool = False,
) -> list[T]:
    """fn(module) for every module of the adapter, in order; each worker reads and processes one module at
    a time, so memory holds only a few modules.

    transient: fn keeps nothing of the module's arrays (it returns derived numbers only), so each worker
    reads into its own reused memory (`thread_arena`) instead of fresh arrays: no page faults per module.
    """
    if transient:

        def run(spec):
            with thread_arena() as arena:
                return fn(adapter._load(spec, arena))

        return parallel_map(run, adapter.modules, progress, workers)
    return parallel_map(lambda spec: fn(adapter._load(spec)), adapter.modules, progress, workers)


# ------------------------------------------------------------------------------------------------------------
# the one numerical-rank rule


def _working_eps(dtype) -> float:
    """eps of the working precision of data of `dtype` (a numpy or torch dtype, or its name): float64's
    for float64 data, float32's for everything else (float16 and bfloat16 data are analysed in float32)."""
    name = str(dtype)
    if dtype is not None and not name.startswith("torch."):
        try:
            name = np.dtype(dtype).name
        except TypeError:  # a safetensors name ("F64", "BF16")
            pass
    float64 = name.removeprefix("torch.") in ("float64", "double", "F64")
    return float(np.finfo(np.float64 if float64 else np.float32).eps)


@lru_cache(maxsize=1024)  # a handful of (shape, dtype) per adapter; called per module and subspace
def rank_tolerance(shape: tuple[int, int], dtype=None) -> float:
    """Relative tolerance τ of the numerical rank: σ_i counts when σ_i > τ·σ₁. The only rank rule in asymviz.

    τ = max(max(rows, cols)·eps, sqrt(max(rows, cols)·eps₆₄)), eps the machine epsilon of the data's working
    precision (float32 for float16/bfloat16/float32 data, float64 for float64 data; default float32).
    The first term is numpy's `matrix_rank` rule: singular values below it are rounding noise of the data.
    The second is what a float64 Gram matrix resolves (λ = σ² carries an error of about d·eps₆₄·λ₁, so
    σ/σ₁ below sqrt(d·eps₆₄) is not resolved); it only binds for float64 data. `dtype`: a numpy or torch
    dtype, or its name.
    """
    n = max(max(shape), 1)
    return max(n * _working_eps(dtype), math.sqrt(n * float(np.finfo(np.float64).eps)))


def numerical_rank(sigma, shape: tuple[int, int], dtype=None) -> int:
    """Count of singular values (1-D, descending; array or CPU tensor) above rank_tolerance(shape, dtype)·σ₁."""
    sigma = np.asarray(sigma)
    if sigma.size == 0 or not float(sigma[0]) > 0.0:
        return 0
    return int((sigma > rank_tolerance(tuple(shape), dtype) * float(sigma[0])).sum())


# ------------------------------------------------------------------------------------------------------------
# Gram matrices: float64, one pass over the data


# Rows of the factors converted to float64 at a time (≈ 2 MB per block at Σr = 128): the float64 copy stays
# in cache and is reused, instead of a fresh d×Σr float64 copy per Gram (1.3 GB over a 7B adapter).
_BLOCK_BYTES = 2 * 2**20


def _block_buffer(n: int) -> np.ndarray:
    """A thread's reusable float64 scratch of at least n elements."""
    buf = getattr(_buffers, "buf", None)
    if buf is None or buf.size < n:
        buf = _buffers.buf = np.empty(max(n, _BLOCK_BYTES // 8))
    return buf[:n]


def stacked_gram(factors: Sequence[np.ndarray]) -> np.ndarray:
    """G = XᵀX (Σr_i × Σr_i, float64) for X = [M_1 … M_N], the factors (d, r_i) side by side.

    Block (i, j) is M_iᵀM_j: the diagonal blocks are each factor's Gram, the others the cross products
    that subspace similarities need. Products of float32 numbers are exact in float64, so G is accurate to
    ~d·eps₆₄·‖M‖². The rows of X are converted to float64 a block at a time into a reused per-thread buffer,
    in the factors' own memory order (a transposing copy costs 3x more: rows of A, stored (r, d), become
    rows of Xᵀ; rows of B, stored (d, r), rows of X), and each block's XᵀX is added to G; numpy's matmul
    calls BLAS syrk for a product of a matrix with its own transpose (half a general product's flops) and
    releases the GIL, so parallel_map's threads run it concurrently.
    """
    factors = [np.asarray(M) for M in factors]
    d = factors[0].shape[0]
    if any(M.shape[0] != d for M in factors):
        raise ValueError(f"factors have different numbers of rows: {[M.shape[0] for M in factors]}")
    width = sum(M.shape[1] for M in factors)
    G = np.zeros((width, width))
    if d == 0 or width == 0:
        return G
    if len(factors) == 1 and factors[0].dtype == np.float64:  # nothing to convert: one product
        M = factors[0]
        return M.T @ M
    by_rows = not factors[0].flags.c_contiguous  # Mᵀ is the contiguous one (A's rows)
    step = max(1, _BLOCK_BYTES // (8 * width))
    buf = _block_buffer(width * min(step, d))
    for start in range(0, d, step):
        c = min(step, d - start)
        if by_rows:
            Y = buf[: width * c].reshape(width, c)  # Xᵀ of this block of rows
            col = 0
            for M in factors:
                np.copyto(Y[col : col + M.shape[1]], M[start : start + c].T)
                col += M.shape[1]
            G += Y @ Y.T
        else:
            X = buf[: width * c].reshape(c, width)
            col = 0
            for M in factors:
                np.copyto(X[:, col : col + M.shape[1]], M[start : start + c])
                col += M.shape[1]
            G += X.T @ X
    return G


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

    M: np.ndarray  # (d, r)
    W: np.ndarray  # (r, k) float64
    sigma: np.ndarray  # (k,) float64 singular values, descending

    @property
    def d(self) -> int:
        return self.M.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[1]

    def explicit(self) -> np.ndarray:
        """U (d, k) float32."""
        return (self.M.astype(np.float64) @ self.W).astype(np.float32)

    def top(self, k: int) -> GramBasis:
        return GramBasis(self.M, self.W[:, :k], self.sigma[:k])


@dataclass(frozen=True)
class FactorGram:
    """The full eigendecomposition of one factor's Gram MᵀM = V Λ Vᵀ (descending), before any truncation."""

    M: np.ndarray  # (d, r)
    V: np.ndarray  # (r, r) float64
    sigma: np.ndarray  # (r,) float64 = sqrt(Λ), descending; the singular values of M

    @classmethod
    def from_gram(cls, M: np.ndarray, G: np.ndarray) -> FactorGram:
        lam, V = np.linalg.eigh(G)  # ascending
        return cls(np.asarray(M), V[:, ::-1], np.sqrt(np.clip(lam[::-1], 0.0, None)))

    def basis(self, shape: tuple[int, int], k: int | None = None) -> GramBasis:
        """Implicit orthonormal basis of span(M), cut at the numerical rank of a matrix of `shape`, and at k."""
        keep = numerical_rank(self.sigma, shape, self.M.dtype)
        keep = keep if k is None else min(keep, k)
        return GramBasis(self.M, self.V[:, :keep] / self.sigma[:keep], self.sigma[:keep])

    @cached_property
    def r_factor(self) -> np.ndarray:
        """R (r, r) = Λ^{1/2} Vᵀ with RᵀR = MᵀM, so M = Q R for an orthonormal Q (a valid QR's R up to a rotation)."""
        return self.sigma[:, None] * self.V.T


def gram_basis(M: np.ndarray, k: int | None = None) -> GramBasis:
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
    def delta_sigma(self) -> np.ndarray:
        """(r,) ΔW's singular values (incl. scaling), descending: those of the core s·R_B R_Aᵀ."""
        return np.linalg.svd(self.scaling * (self.b.r_factor @ self.a.r_factor.T), compute_uv=False)

    @cached_property
    def _a_basis(self) -> GramBasis:
        return self.a.basis((self.r, self.d_in))

    @cached_property
    def _b_basis(self) -> GramBasis:
        return self.b.basis((self.d_out, self.r))

    @property
    def dtype(self) -> np.dtype:
        return self.b.M.dtype

    def spectra(self) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
        """{"A" | "B" | "delta": (σ (r,) float64 descending, (rows, cols) of that matrix)}."""
        return {"A": (self.a.sigma, (self.r, self.d_in)), "B": (self.b.sigma, (self.d_out, self.r)),
                "delta": (self.delta_sigma, (self.d_out, self.d_in))}  # fmt: skip

    def basis(self, which: str, k: int | None = None, ordered: bool = True) -> GramBasis:
        """Row space of A ("A", d = d_in), column space of B ("B", d = d_out) or the top-k column space of
        ΔW ("delta", d = d_out, as B @ W), each cut at its numerical rank.

        ordered=False (for "delta"): only the span matters (subspace similarities), so when the cut keeps
        ΔW's whole range, which is then B's, B's basis is returned (columns not in ΔW's singular order,
        sigma still ΔW's) and the core's singular vectors are not computed."""
        if which == "A":
            return self._a_basis if k is None else self._a_basis.top(k)
        if which == "B":
            return self._b_basis if k is None else self._b_basis.top(k)
        if which == "delta":
            return self._delta_basis(k, ordered)
        raise ValueError(f"which must be 'A', 'B' or 'delta', got {which!r}")

    def _delta_basis(self, k: int | None, ordered: bool = True) -> GramBasis:
        """With X ≈ (X W_X) R_X on each factor's numerical range (R_X = Λ^{1/2}Vᵀ cut to k_X rows),
        ΔW = s·(B W_B)(R_B R_Aᵀ)(Aᵀ W_A)ᵀ: the left singular vectors of the k_B×k_A core give ΔW's, B W_B U_C.
        The cut comes from the core's singular values alone, so both `ordered` answers keep the same k."""
        a, b = self.basis("A"), self.basis("B")
        if a.k == 0 or b.k == 0:
            return GramBasis(b.M, b.W[:, :0], b.sigma[:0])
        core = self.scaling * (self.b.r_factor[: b.k] @ self.a.r_factor[: a.k].T)  # (k_B, k_A)
        S = np.linalg.svd(core, compute_uv=False)
        keep = numerical_rank(S, (self.d_out, self.d_in), self.dtype)
        keep = keep if k is None else min(keep, k)
        if not ordered and keep == b.k:  # span(B W_B U_C) = span(B W_B): U_C is then a k_B×k_B rotation
            return GramBasis(b.M, b.W, S[:keep])
        U_C = np.linalg.svd(core)[0]
        return GramBasis(b.M, b.W @ U_C[:, :keep], S[:keep])


def gram_spectra(gram_a: np.ndarray, gram_b: np.ndarray, scaling: float) -> tuple[np.ndarray, ...]:
    """(σ_A, σ_B, σ_ΔW), each (r,) float64 descending, from the float64 Grams AAᵀ and BᵀB (r, r) alone.

    σ_A and σ_B are the square roots of the Grams' eigenvalues (eigvalsh: no eigenvectors). ΔW =
    s·Q_B (R_B R_Aᵀ) Q_Aᵀ holds for any R with RᵀR = G, so σ_ΔW are the singular values of s·R_B R_Aᵀ with
    Cholesky factors R = Lᵀ (G = LLᵀ) when both Grams are positive definite (measured at r = 64, one
    thread: 0.38 ms a module against 0.62 ms with eigh's R = Λ^{1/2}Vᵀ, ModuleBases' route), else with
    eigh's R, which takes singular Grams (B = 0 at init, a rank-deficient factor); both routes agree to
    rounding (tests/test_linalg.py)."""
    sigma_a = np.sqrt(np.clip(np.linalg.eigvalsh(gram_a)[::-1], 0.0, None))
    sigma_b = np.sqrt(np.clip(np.linalg.eigvalsh(gram_b)[::-1], 0.0, None))
    try:
        R_a, R_b = np.linalg.cholesky(gram_a).T, np.linalg.cholesky(gram_b).T
    except np.linalg.LinAlgError:  # a singular Gram: the eigendecomposition's R takes it
        R_a, R_b = (FactorGram.from_gram(G[:, :0], G).r_factor for G in (gram_a, gram_b))
    return sigma_a, sigma_b, np.linalg.svd(scaling * (R_b @ R_a.T), compute_uv=False)


def finite_gram(G: np.ndarray) -> bool:
    """Whether the factor behind a Gram holds only finite values: its diagonal Σ m² turns NaN or inf with
    any non-finite entry (and float32 data cannot overflow it), so this costs r checks instead of a pass
    over the data."""
    return bool(np.isfinite(np.diagonal(G)).all())


def module_bases(
    module: LoraModule, gram_a: np.ndarray | None = None, gram_b: np.ndarray | None = None
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


def basis_similarity(b1: GramBasis, b2: GramBasis, cross: np.ndarray | None = None) -> float:
    """‖U1ᵀU2‖²_F / min(k1, k2) for implicit bases (NaN when either is empty); `cross` = M1ᵀM2 if known."""
    if b1.d != b2.d:
        raise ValueError(f"subspaces live in different spaces: {b1.d} vs {b2.d} dimensions")
    k = min(b1.k, b2.k)
    if k == 0:
        return math.nan
    cross = stacked_gram([b1.M, b2.M])[: b1.M.shape[1], b1.M.shape[1] :] if cross is None else cross
    return float(np.square(b1.W.T @ cross @ b2.W).sum()) / k


def basis_overlap(b1: GramBasis, b2: GramBasis) -> np.ndarray:
    """U1ᵀU2 (k1×k2, float64) for implicit bases (for principal angles and φ grids)."""
    cross = stacked_gram([b1.M, b2.M])[: b1.M.shape[1], b1.M.shape[1] :]
    return b1.W.T @ cross @ b2.W


# ------------------------------------------------------------------------------------------------------------
# explicit SVD of ΔW's top directions (diagnostics)


def delta_svd(module: LoraModule, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top singular triplets of ΔW = scaling·B·A: U (d_out, k'), S (k'), V (d_in, k'), k' ≤ numerical rank,
    in the factors' dtype (explicit QRs of A and B: for diagnostics that need the vectors)."""
    Q_A, R_A = np.linalg.qr(np.asarray(module.A).T, mode="reduced")
    Q_B, R_B = np.linalg.qr(np.asarray(module.B), mode="reduced")
    U_C, S, V_Ct = np.linalg.svd(module.scaling * (R_B @ R_A.T))
    keep = numerical_rank(S, (module.d_out, module.d_in), module.B.dtype)
    if k is not None:
        keep = min(keep, k)
    return Q_B @ U_C[:, :keep], S[:keep], Q_A @ V_Ct[:keep].T
