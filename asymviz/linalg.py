"""Linear algebra of ΔW = s·B·A without ever forming the d_out×d_in matrix.

With thin QR factors B = Q_B R_B (Q_B: d_out×r) and Aᵀ = Q_A R_A (Q_A: d_in×r),

    ΔW = s · Q_B (R_B R_Aᵀ) Q_Aᵀ,

so ΔW's singular values are those of the r×r core C = s·R_B R_Aᵀ, its left singular vectors are Q_B U_C and
its right ones Q_A V_C. A's singular values are R_A's, B's are R_B's. Everything here costs O(d·r²).

Small LAPACK calls are slow with several threads each (measured: a 4096×64 QR took 50-110 ms with two MKL
threads against 3 ms with one), so `map_modules` runs one module per worker thread with torch set to one
intra-op thread, and parallelises across modules instead.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

    from asymviz.adapters import LoraAdapter, LoraModule

T = TypeVar("T")

_thread_lock = threading.Lock()
_thread_users = 0
_saved_threads = 1


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch with one intra-op thread inside the block (re-entrant, thread-safe)."""
    import torch

    global _thread_users, _saved_threads
    with _thread_lock:
        if _thread_users == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _thread_users += 1
    try:
        yield
    finally:
        with _thread_lock:
            _thread_users -= 1
            if _thread_users == 0:
                torch.set_num_threads(_saved_threads)


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


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


def map_modules(
    adapter: LoraAdapter,
    fn: Callable[[LoraModule], T],
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> list[T]:
    """fn(module) for every module of the adapter, in order; each worker reads and processes one module at
    a time, so memory holds only a few modules."""
    return parallel_map(lambda spec: fn(adapter._load(spec)), adapter.modules, progress, workers)


# ------------------------------------------------------------------------------------------------------------


def r_factor(M: torch.Tensor) -> torch.Tensor:
    """R of the thin QR of a tall matrix M (d, r): (r, r). Singular values of R = those of M."""
    import torch

    return torch.linalg.qr(M, mode="r")[1]


def spectra_of(module: LoraModule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Singular values (descending) of A, B and ΔW = scaling·B·A, each of length r."""
    import torch

    R_A = r_factor(module.A.T)  # (r, r); Aᵀ = Q_A R_A
    R_B = r_factor(module.B)  # (r, r); B = Q_B R_B
    core = module.scaling * (R_B @ R_A.T)  # (r, r)
    return torch.linalg.svdvals(R_A), torch.linalg.svdvals(R_B), torch.linalg.svdvals(core)


def numerical_rank(sigma: torch.Tensor, shape: tuple[int, int]) -> int:
    """Count of singular values above max(shape)·eps·σ_max (numpy's matrix_rank rule)."""
    import torch

    if sigma.numel() == 0 or float(sigma[0]) == 0.0:
        return 0
    tol = max(shape) * torch.finfo(sigma.dtype).eps * float(sigma[0])
    return int((sigma > tol).sum())


def left_basis(M: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis of M's column space (M: d×r), ordered by singular value, truncated to the
    numerical rank (and to k if given). Returns (U: d×k', sigma: k')."""
    import torch

    Q, R = torch.linalg.qr(M, mode="reduced")  # Q (d, r), R (r, r)
    U_R, S, _ = torch.linalg.svd(R)
    keep = numerical_rank(S, tuple(M.shape))
    if k is not None:
        keep = min(keep, k)
    return Q @ U_R[:, :keep], S[:keep]


def delta_svd(module: LoraModule, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top singular triplets of ΔW = scaling·B·A: U (d_out, k'), S (k'), V (d_in, k'), k' ≤ numerical rank."""
    import torch

    Q_A, R_A = torch.linalg.qr(module.A.T, mode="reduced")
    Q_B, R_B = torch.linalg.qr(module.B, mode="reduced")
    U_C, S, V_Ct = torch.linalg.svd(module.scaling * (R_B @ R_A.T))
    keep = numerical_rank(S, (module.d_out, module.d_in))
    if k is not None:
        keep = min(keep, k)
    return Q_B @ U_C[:, :keep], S[:keep], Q_A @ V_Ct[:keep].T


# ------------------------------------------------------------------------------------------------------------
# implicit orthonormal bases from float64 Gram matrices (for similarities: no Q is ever formed)


@dataclass(frozen=True)
class GramBasis:
    """An orthonormal basis U = M @ W (d×k) of a factor's column space, kept implicit.

    M is the factor (Aᵀ for A's row space, B for B's column space) in float64, W (r×k) = V_k Λ_k^{-1/2}
    from the eigendecomposition MᵀM = V Λ Vᵀ, ordered by singular value and cut at the numerical rank.
    Then U1ᵀU2 = W1ᵀ (M1ᵀM2) W2 costs one d×r×r product per pair. Float64 Grams resolve singular values
    down to ~1e-8·σ₁, well below the float32 data's own rank tolerance, so squaring the condition number
    loses nothing that the data held.
    """

    M: torch.Tensor  # (d, r) float64
    W: torch.Tensor  # (r, k) float64
    sigma: torch.Tensor  # (k,) singular values, descending

    @property
    def d(self) -> int:
        return self.M.shape[0]

    @property
    def k(self) -> int:
        return self.W.shape[1]

    def explicit(self) -> torch.Tensor:
        """U (d, k) float32."""
        return (self.M @ self.W).float()

    def top(self, k: int) -> GramBasis:
        return GramBasis(self.M, self.W[:, :k], self.sigma[:k])


def _rank_tol(shape: tuple[int, int], dtype) -> float:
    import torch

    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    return max(max(shape) * eps, 1e-7)


def gram_basis(M: torch.Tensor, k: int | None = None) -> GramBasis:
    """Implicit orthonormal basis of M's column space (M: d×r), truncated to the numerical rank and k."""
    import torch

    M64 = M.double()
    lam, V = torch.linalg.eigh(M64.T @ M64)  # ascending
    lam, V = lam.flip(0).clamp_min(0), V.flip(1)
    sigma = lam.sqrt()
    keep = int((sigma > _rank_tol(tuple(M.shape), M.dtype) * float(sigma[0])).sum()) if float(sigma[0]) > 0 else 0
    if k is not None:
        keep = min(keep, k)
    return GramBasis(M64, V[:, :keep] / sigma[:keep], sigma[:keep])


def delta_gram_basis(module: LoraModule, k: int | None = None, a: GramBasis | None = None,
                     b: GramBasis | None = None) -> GramBasis:
    """Implicit basis of the top-k column space of ΔW = s·B·A, as B @ W (reuses A's and B's bases if given).

    With R_X = Λ_X^{1/2} V_Xᵀ (so X ≈ (X W_X) R_X), ΔW = s·(B W_B)(R_B R_Aᵀ)(Aᵀ W_A)ᵀ; the left singular
    vectors of the k_B×k_A core give ΔW's: B W_B U_C."""
    import torch

    a = a or gram_basis(module.A.T)
    b = b or gram_basis(module.B)
    if a.k == 0 or b.k == 0:
        return GramBasis(b.M, b.W[:, :0], b.sigma[:0])
    R_A = a.sigma[:, None] * (a.W * a.sigma).T  # (k_A, r): Λ^{1/2} Vᵀ, since W = V Λ^{-1/2}
    R_B = b.sigma[:, None] * (b.W * b.sigma).T  # (k_B, r)
    U_C, S, _ = torch.linalg.svd(module.scaling * (R_B @ R_A.T))
    keep = int((S > _rank_tol((module.d_out, module.d_in), module.B.dtype) * float(S[0])).sum()) if float(S[0]) > 0 else 0
    if k is not None:
        keep = min(keep, k)
    return GramBasis(b.M, b.W @ U_C[:, :keep], S[:keep])


def basis_similarity(b1: GramBasis, b2: GramBasis, cross: torch.Tensor | None = None) -> float:
    """‖U1ᵀU2‖²_F / min(k1, k2) for implicit bases (NaN when either is empty); `cross` = M1ᵀM2 if known."""
    if b1.d != b2.d:
        raise ValueError(f"subspaces live in different spaces: {b1.d} vs {b2.d} dimensions")
    k = min(b1.k, b2.k)
    if k == 0:
        return math.nan
    cross = b1.M.T @ b2.M if cross is None else cross
    return float((b1.W.T @ cross @ b2.W).square().sum()) / k


def basis_overlap(b1: GramBasis, b2: GramBasis) -> torch.Tensor:
    """U1ᵀU2 (k1×k2) for implicit bases (for principal angles and φ grids)."""
    return b1.W.T @ (b1.M.T @ b2.M) @ b2.W
