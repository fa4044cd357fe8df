"""asymviz.linalg against dense references: Grams, bases, spectra, the one numerical-rank rule, and why
the Grams are float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymviz.linalg import (
    FactorGram,
    basis_similarity,
    gram_basis,
    gram_spectra,
    module_bases,
    numerical_rank,
    rank_tolerance,
    stacked_gram,
)


def module(A, B, scaling=2.0):
    """A LoraModule over torch tensors' data (as the readers give it: numpy arrays)."""
    from asymviz.adapters import LoraModule

    return LoraModule(name="m", layer=0, kind="q_proj", A=A.numpy(), B=B.numpy(), scaling=scaling)


def ill_conditioned(d: int, r: int, cond: float, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """d×r with singular values logspaced from 1 to 1/cond, random singular vectors."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=torch.float64))[0]
    sigma = torch.logspace(0, -math.log10(cond), r, dtype=torch.float64)
    return ((U * sigma) @ V.T).to(dtype)


def reference_basis(M: torch.Tensor, shape) -> torch.Tensor:
    """Dense reference: float64 SVD of M, cut by the same rank rule."""
    U, S, _ = torch.linalg.svd(M.double(), full_matrices=False)
    return U[:, : numerical_rank(S, shape, M.dtype)]


def test_rank_tolerance_is_numpys_rule_for_float32_and_the_gram_floor_for_float64():
    assert rank_tolerance((4096, 64), torch.float32) == pytest.approx(4096 * torch.finfo(torch.float32).eps)
    assert rank_tolerance((4096, 64), torch.float16) == rank_tolerance((4096, 64), torch.float32)
    assert rank_tolerance((4096, 64), torch.float64) == pytest.approx(
        math.sqrt(4096 * np.finfo(np.float64).eps)
    )
    sigma = torch.tensor([1.0, 1e-2, 1e-3, 1e-4, 1e-5, 0.0], dtype=torch.float64)
    assert numerical_rank(sigma, (4096, 64), torch.float32) == 3  # tol ≈ 4.9e-4
    assert numerical_rank(sigma, (4096, 64), torch.float64) == 5  # tol ≈ 9.5e-7
    assert numerical_rank(sigma.numpy(), (4096, 64)) == 3  # arrays too; float32 by default
    assert numerical_rank(torch.zeros(3), (3, 3)) == 0 and numerical_rank(torch.zeros(0), (3, 3)) == 0
    for dtype in (np.float64, np.dtype("float64"), "float64", "F64"):  # numpy dtypes and names say the same
        assert rank_tolerance((4096, 64), dtype) == rank_tolerance((4096, 64), torch.float64)
    for dtype in (np.float32, np.float16, "BF16", "F16", "bfloat16", None):
        assert rank_tolerance((4096, 64), dtype) == rank_tolerance((4096, 64), torch.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stacked_gram_equals_dense_product_for_both_layouts(dtype, monkeypatch):
    import asymviz.linalg as linalg

    rng = np.random.default_rng(0)
    A1, A2 = rng.standard_normal((4, 30)).astype(dtype), rng.standard_normal((3, 30)).astype(dtype)
    B1, B2 = rng.standard_normal((25, 4)).astype(dtype), rng.standard_normal((25, 2)).astype(dtype)
    cases = ([A1.T, A2.T], [B1, B2], [B1, A1.T[:25]], [A1.T], [B1])
    for block in (8 * 6 * 7, linalg._BLOCK_BYTES):  # 7 rows a block (several blocks, a short last one), one
        monkeypatch.setattr(linalg, "_BLOCK_BYTES", block)
        monkeypatch.setattr(linalg, "_buffers", __import__("threading").local())
        with linalg.single_threaded():
            for factors in cases:
                X = np.concatenate([f.astype(np.float64) for f in factors], axis=1)
                np.testing.assert_allclose(stacked_gram(factors), X.T @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(stacked_gram([torch.from_numpy(B1)]), stacked_gram([B1]))  # tensors too


def test_bases_span_the_dense_reference_subspaces():
    g = torch.Generator().manual_seed(1)
    A, B = torch.randn(6, 40, generator=g), torch.randn(30, 6, generator=g)
    B[:, 5] = B[:, 0] + B[:, 1]  # B has rank 5
    mb = module_bases(module(A, B))
    for which, ref in (("A", reference_basis(A.T, A.shape)), ("B", reference_basis(B, B.shape))):
        U = torch.from_numpy(mb.basis(which).explicit()).double()
        assert U.shape == ref.shape
        torch.testing.assert_close(U.T @ U, torch.eye(U.shape[1], dtype=torch.float64), atol=1e-6, rtol=0)
        assert ((U.T @ ref).square().sum() / U.shape[1]).item() == pytest.approx(1.0, abs=1e-6)
    dense_U = torch.linalg.svd(mb.scaling * (B.double() @ A.double()))[0]
    for k in (1, 3, 5):
        U = torch.from_numpy(mb.basis("delta", k).explicit()).double()
        assert U.shape[1] == k
        assert ((U.T @ dense_U[:, :k]).square().sum() / k).item() == pytest.approx(1.0, abs=1e-6)
    assert mb.basis("delta").k == 5  # ΔW's numerical rank is B's


def test_spectra_match_dense_svd():
    g = torch.Generator().manual_seed(2)
    A, B = torch.randn(5, 50, generator=g), torch.randn(40, 5, generator=g) * 0.01
    spectra = module_bases(module(A, B, scaling=1.5)).spectra()
    for which, M in (("A", A), ("B", B), ("delta", 1.5 * B.double() @ A.double())):
        sigma, shape = spectra[which]
        assert shape == tuple(M.shape)
        np.testing.assert_allclose(sigma, torch.linalg.svdvals(M.double())[:5].numpy(), rtol=1e-6)


def test_similarity_matches_explicit_qr_bases():
    g = torch.Generator().manual_seed(3)
    M1, M2 = torch.randn(60, 4, generator=g), torch.randn(60, 6, generator=g)
    M2[:, :2] = M1[:, :2] @ torch.randn(2, 2, generator=g)  # share two directions
    Q1, Q2 = torch.linalg.qr(M1.double())[0], torch.linalg.qr(M2.double())[0]
    want = float((Q1.T @ Q2).square().sum()) / 4
    assert basis_similarity(gram_basis(M1.numpy()), gram_basis(M2.numpy())) == pytest.approx(want, abs=1e-9)


def test_float64_gram_is_needed_at_condition_number_1e6():
    """A factor with σ from 1 to 1e-6: the rank rule keeps σ > d·eps32 ≈ 6e-5, whose λ = σ² ≈ 4e-9·λ₁ lie
    below a float32 Gram's rounding. The float64 Gram recovers the dense reference; a float32 one does not."""
    d, r = 512, 16
    M = ill_conditioned(d, r, 1e6)
    ref = reference_basis(M, (d, r))
    k = ref.shape[1]
    assert 8 < k < r  # the cut falls inside the spectrum

    ours = gram_basis(M.numpy())
    assert ours.k == k
    U = torch.from_numpy(ours.explicit()).double()
    assert (U.T @ U - torch.eye(k, dtype=torch.float64)).abs().max() < 1e-5
    assert ((U.T @ ref).square().sum() / k).item() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(ours.sigma, torch.linalg.svdvals(M.double())[:k].numpy(), rtol=1e-6)

    lam32, V32 = torch.linalg.eigh(M.T @ M)  # the float32 Gram route
    lam32, V32 = lam32.flip(0).clamp_min(1e-30), V32.flip(1)
    W32 = V32[:, :k] / lam32[:k].sqrt()
    U32 = (M @ W32).double()
    assert (U32.T @ U32 - torch.eye(k, dtype=torch.float64)).abs().max() > 1e-2  # not orthonormal
    sigma32 = lam32.clamp_min(0).sqrt().double()
    assert numerical_rank(sigma32, (d, r), torch.float32) != k or not torch.allclose(
        sigma32[:k], torch.linalg.svdvals(M.double())[:k], rtol=1e-2
    )


def test_factor_gram_r_factor_reproduces_the_gram():
    M = ill_conditioned(80, 6, 1e3, seed=4).numpy()
    fg = FactorGram.from_gram(M, stacked_gram([M]))
    R = fg.r_factor
    np.testing.assert_allclose(R.T @ R, M.astype(np.float64).T @ M.astype(np.float64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["random", "ill-conditioned", "B zero", "A rank-deficient"])
def test_gram_spectra_agrees_with_module_bases_and_dense_svd(case):
    """spectra's route (eigvalsh, Cholesky roots; eigh's roots for a singular Gram) against ModuleBases'
    (eigh) and against float64 dense SVDs of A, B and ΔW."""
    g = torch.Generator().manual_seed(5)
    A, B = torch.randn(6, 50, generator=g), torch.randn(40, 6, generator=g) * 0.1
    if case == "ill-conditioned":
        A = ill_conditioned(50, 6, 1e5, seed=6).T.contiguous()
    elif case == "B zero":
        B = torch.zeros(40, 6)
    elif case == "A rank-deficient":
        A[5] = A[0] - 2 * A[1]
    m = module(A, B, scaling=1.5)
    GA, GB = stacked_gram([m.A.T]), stacked_gram([m.B])
    got = gram_spectra(GA, GB, 1.5)
    ref = module_bases(m, GA, GB).spectra()
    for which, M, sigma in zip(("A", "B", "delta"), (A, B, 1.5 * B.double() @ A.double()), got, strict=True):
        top = max(float(ref[which][0][0]), 1e-300)
        # to the Gram's resolution: λ = σ² carries an error of ~d·eps₆₄·λ₁ (so tiny σ differ by ~sqrt of it)
        np.testing.assert_allclose(sigma**2, ref[which][0] ** 2, rtol=0, atol=1e-12 * top**2)
        dense = torch.linalg.svdvals(M.double())[:6].numpy()
        np.testing.assert_allclose(sigma, dense, rtol=0, atol=1e-6 * max(top, 1e-30))


def test_an_analysis_nested_in_a_transient_map_keeps_the_outer_modules_arrays(llama_like):
    """map_modules(transient=True) reads into this thread's arena; with workers=1 an analysis run from inside
    fn ran on the same thread and reset that arena, overwriting the module fn
    still held (its A and B changed under fn on 8b2eff2)."""
    from asymviz.adapters import load_adapter
    from asymviz.linalg import map_modules
    from asymviz.similarity import pairwise_similarity
    from asymviz.spectra import singular_spectrum

    outer, other = load_adapter(llama_like), load_adapter(llama_like)

    def fn(m):
        A, B = m.A.copy(), m.B.copy()
        pairwise_similarity([other, load_adapter(llama_like)], names=["x", "y"], workers=1)
        singular_spectrum(load_adapter(llama_like), workers=1)
        return np.array_equal(A, m.A) and np.array_equal(B, m.B)

    assert all(map_modules(outer, fn, workers=1, transient=True))
