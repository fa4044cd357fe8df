"""asymviz.similarity: known answers (identical 1, orthogonal 0, random at baseline), φ grid, angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_factors

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError
from asymviz.similarity import (
    adapter_similarity,
    module_principal_angles,
    orthonormal_basis,
    pairwise_similarity,
    phi_grid,
    principal_angles,
    random_baseline,
    subspace_similarity,
)

NAME = "model.layers.0.self_attn.q_proj"


def adapter_of(make_adapter, A, B, **config):
    return load_adapter(make_adapter({NAME: (A, B)}, config))


def test_identical_subspaces_give_one_even_with_mixed_bases(make_adapter):
    A, B = random_factors(4, 32, 24)
    mix = torch.randn(4, 4)  # same row space of A, same column space of B, different factors
    a1 = adapter_of(make_adapter, A, B)
    a2 = adapter_of(make_adapter, mix @ A, B @ torch.linalg.inv(mix).T)
    sim = adapter_similarity(a1, a2, which=("A", "B")).set_index("which")
    assert sim.loc["A", "similarity"] == pytest.approx(1, abs=1e-5)
    assert sim.loc["B", "similarity"] == pytest.approx(1, abs=1e-5)


def test_orthogonal_subspaces_give_zero(make_adapter):
    eye = torch.eye(16)
    a1 = adapter_of(make_adapter, eye[:4], eye[:, :4])
    a2 = adapter_of(make_adapter, eye[4:8], eye[:, 8:12])
    sim = adapter_similarity(a1, a2)
    assert np.allclose(sim["similarity"], 0, atol=1e-7)
    assert np.allclose(sim["random_baseline"], 4 / 16)


def test_contained_subspace_gives_one_and_baseline_uses_larger_dim():
    U = torch.linalg.qr(torch.randn(50, 8))[0]
    assert subspace_similarity(U[:, :3], U) == pytest.approx(1, abs=1e-6)
    assert random_baseline(3, 8, 50) == pytest.approx(8 / 50)
    assert math.isnan(subspace_similarity(U[:, :0], U))


def test_random_subspaces_sit_at_their_baseline():
    g = torch.Generator().manual_seed(0)
    d, k1, k2 = 64, 4, 8
    sims = [
        subspace_similarity(
            torch.linalg.qr(torch.randn(d, k1, generator=g))[0],
            torch.linalg.qr(torch.randn(d, k2, generator=g))[0],
        )
        for _ in range(400)
    ]
    assert np.mean(sims) == pytest.approx(random_baseline(k1, k2, d), rel=0.05)


def test_principal_angles_known():
    e = torch.eye(3)
    U1 = e[:, :2]
    U2 = torch.stack([e[:, 0], (e[:, 1] + e[:, 2]) / math.sqrt(2)], dim=1)
    np.testing.assert_allclose(principal_angles(U1, U2), [0, 45], atol=1e-5)


def test_phi_grid_diagonal_and_shape(make_adapter):
    A, B = random_factors(4, 32, 24)
    a = adapter_of(make_adapter, A, B)
    grid = phi_grid(a.module(NAME), a.module(NAME), "A")
    assert len(grid) == 16 and list(grid.columns) == ["i", "j", "phi"]
    assert np.allclose(grid[grid.i == grid.j]["phi"], 1, atol=1e-5)  # the same top-i subspaces
    assert (grid["phi"] <= 1 + 1e-6).all()


def test_delta_uses_top_k_column_space(make_adapter):
    A, B = random_factors(4, 32, 24)
    a = adapter_of(make_adapter, A, B)
    m = a.module(NAME)
    U = orthonormal_basis(m, "delta", k=2)
    dense_u = torch.linalg.svd(torch.from_numpy(m.delta_weight()).double())[0][:, :2].float()
    assert subspace_similarity(U, dense_u) == pytest.approx(1, abs=1e-4)


def test_pairwise_all_pairs_and_names(make_adapter):
    adapters = [adapter_of(make_adapter, *random_factors(4, 32, 24, seed=s)) for s in range(3)]
    upper = pairwise_similarity(adapters, names=["s0", "s1", "s2"], which="B")
    assert len(upper) == 3 and set(zip(upper.adapter_1, upper.adapter_2)) == {
        ("s0", "s1"),
        ("s0", "s2"),
        ("s1", "s2"),
    }
    full = pairwise_similarity(adapters, names=["s0", "s1", "s2"], which="B", pairs="all")
    assert len(full) == 9
    assert np.allclose(full[full.adapter_1 == full.adapter_2]["similarity"], 1, atol=1e-5)
    with pytest.raises(ValueError, match="distinct"):
        pairwise_similarity(adapters, names=["x", "x", "y"])


def test_zero_factor_gives_nan_not_crash(make_adapter):
    A, B = random_factors(4, 32, 24)
    sim = adapter_similarity(adapter_of(make_adapter, A, B), adapter_of(make_adapter, A, torch.zeros_like(B)))
    row = sim.set_index("which")
    assert row.loc["A", "similarity"] == pytest.approx(1, abs=1e-5)
    assert math.isnan(row.loc["B", "similarity"]) and row.loc["B", "k2"] == 0


def test_different_spaces_are_refused(make_adapter):
    a1 = adapter_of(make_adapter, *random_factors(4, 32, 24))
    a2 = adapter_of(make_adapter, *random_factors(4, 16, 24))
    with pytest.raises(AdapterError, match="different dimension"):
        adapter_similarity(a1, a2, which="A")


def test_no_common_modules(make_adapter):
    a1 = load_adapter(make_adapter({"x.0.q": random_factors(4, 8, 8)}))
    a2 = load_adapter(make_adapter({"x.0.k": random_factors(4, 8, 8)}))
    with pytest.raises(AdapterError, match="no adapted module in common"):
        adapter_similarity(a1, a2)


def test_module_principal_angles(make_adapter):
    A, B = random_factors(4, 32, 24)
    a = adapter_of(make_adapter, A, B)
    angles = module_principal_angles(a, a, "B")
    assert len(angles) == 4 and np.allclose(angles["angle_deg"], 0, atol=0.1)


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("rank_a", [4, 3])  # 3: A rank-deficient, so ΔW's range is smaller than B's
def test_pairwise_delta_matches_dense_top_k_singular_vectors(make_adapter, k, rank_a):
    """pairwise_similarity compares ΔW's spans without the core's singular vectors when the cut keeps all
    of B's range; against the dense SVD of each ΔW, with and without that shortcut."""
    adapters, dense = [], []
    for seed in (0, 1):
        A, B = random_factors(4, 32, 24, seed=seed)
        A[3] = A[0] + A[1] if rank_a == 3 else A[3]
        B = B + 0.5 * random_factors(4, 32, 24, seed=7)[1]  # share part of the column space
        adapters.append(adapter_of(make_adapter, A, B))
        U, S, _ = torch.linalg.svd(B.double() @ A.double())
        kept = int((S > S[0] * 32 * torch.finfo(torch.float32).eps).sum())
        dense.append(U[:, : min(kept, k or 4)])
    got = pairwise_similarity(adapters, names=["a", "b"], which="delta", k=k).iloc[0]
    assert (got["k1"], got["k2"]) == (dense[0].shape[1], dense[1].shape[1]) == ((k or rank_a),) * 2
    assert got["similarity"] == pytest.approx(subspace_similarity(*dense), abs=1e-6)
