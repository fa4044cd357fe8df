"""asymviz.collection: known answers for N adapters (shared A, random B, identical adapters, clusters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asymviz.adapters import load_adapter
from asymviz.collection import (
    CLUSTER_COLUMNS,
    MEAN_COLUMNS,
    SHARED_COLUMNS,
    CollectionConfig,
    analyze_collection,
    random_shared_baseline,
)
from asymviz.similarity import PAIR_COLUMNS, pairwise_similarity

NAMES = ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj")
SHAPES = {NAMES[0]: (48, 200), NAMES[1]: (64, 150)}  # d_in, d_out


def make_set(make_adapter, factors):
    """factors: list (one per adapter) of {name: (A, B)} -> loaded adapters."""
    return [load_adapter(make_adapter(mods, {"lora_alpha": 8})) for mods in factors]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shared_A_is_explained_by_r_directions_and_random_B_sits_at_baseline(make_adapter):
    r, n = 4, 5
    A_shared = {
        name: torch.randn(r, d_in, generator=gen(1 + i)) for i, (name, (d_in, _)) in enumerate(SHAPES.items())
    }
    factors = [
        {name: (A_shared[name], torch.randn(d_out, r, generator=gen(100 + 10 * s + i)))
         for i, (name, (_, d_out)) in enumerate(SHAPES.items())}
        for s in range(n)
    ]  # fmt: skip
    result = analyze_collection(
        make_set(make_adapter, factors), config=CollectionConfig(which=("A", "B"), draws=64)
    )
    shared = result.shared
    assert list(shared.columns) == SHARED_COLUMNS
    a = shared[shared.which == "A"]
    assert np.allclose(a[a.k == r]["variance_explained"], 1.0, atol=1e-9)
    assert (a[a.k == 1]["variance_explained"] > 0.24).all()  # 1/r of it in the top direction at least
    b = shared[shared.which == "B"]
    assert set(b.k) == set(range(1, r + 1))
    # independent Gaussian B's are uniformly random subspaces: at their baseline (one draw vs the mean of 64)
    assert np.abs(b["variance_explained"] - b["random_baseline"]).max() < 0.03
    assert (b["random_baseline"].to_numpy() < 0.5 * a["variance_explained"].to_numpy()).all()
    # and far from sharing: N·r directions hold N independent r-dim subspaces, ~k/(N·r) in the top k
    assert b[b.k == r]["variance_explained"].max() < 0.45


def test_identical_adapters_give_similarity_one(make_adapter):
    mods = {name: (torch.randn(4, d_in, generator=gen(i)), torch.randn(d_out, 4, generator=gen(9 + i)))
            for i, (name, (d_in, d_out)) in enumerate(SHAPES.items())}  # fmt: skip
    result = analyze_collection(make_set(make_adapter, [mods] * 3), names=["x", "y", "z"])
    assert list(result.similarity.columns) == PAIR_COLUMNS
    assert len(result.similarity) == 3 * 3 * len(SHAPES) * 3  # pairs × modules × which
    np.testing.assert_allclose(result.similarity["similarity"], 1.0, atol=1e-9)
    assert list(result.mean.columns) == MEAN_COLUMNS
    np.testing.assert_allclose(result.mean["similarity"], 1.0, atol=1e-9)
    assert (result.mean["modules"] == len(SHAPES)).all()
    assert (result.clusters["cluster"] == 1).all()


def test_matrix_equals_pairwise_similarity(make_adapter):
    factors = [
        {name: (torch.randn(r, d_in, generator=gen(s + i)), torch.randn(d_out, r, generator=gen(50 + s + i)))
         for i, (name, (d_in, d_out)) in enumerate(SHAPES.items())}
        for s, r in enumerate((4, 4, 3, 4))
    ]  # mixed ranks: k1 ≠ k2, and ΔW's k = the smallest r  # fmt: skip
    adapters = make_set(make_adapter, factors)
    labels = ["a", "b", "c", "d"]
    got = analyze_collection(adapters, names=labels).similarity
    want = pairwise_similarity(adapters, names=labels, pairs="all")
    key = ["adapter_1", "adapter_2", "module", "which"]
    merged = got.merge(want, on=key, suffixes=("", "_pair"))
    assert len(merged) == len(want) == len(got)
    for col in ("dim", "k1", "k2"):
        assert (merged[col] == merged[f"{col}_pair"]).all()
    np.testing.assert_allclose(merged["similarity"], merged["similarity_pair"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged["random_baseline"], merged["random_baseline_pair"])


def test_clusters_follow_inits_for_A_and_tasks_for_B(make_adapter):
    """Adapters = (init, task): A near its init's A, B near its task's B (plus noise)."""
    r = 4
    inits = [{name: torch.randn(r, d_in, generator=gen(10 + 2 * i + j)) for j, (name, (d_in, _)) in
              enumerate(SHAPES.items())} for i in range(2)]  # fmt: skip
    tasks = [{name: torch.randn(d_out, r, generator=gen(30 + 2 * t + j)) for j, (name, (_, d_out)) in
              enumerate(SHAPES.items())} for t in range(2)]  # fmt: skip
    factors, labels = [], []
    for i in range(2):
        for t in range(2):
            for rep in range(2):
                g = gen(1000 + 100 * i + 10 * t + rep)
                factors.append({name: (inits[i][name] + 0.05 * torch.randn(inits[i][name].shape, generator=g),
                                       tasks[t][name] + 0.05 * torch.randn(tasks[t][name].shape, generator=g))
                                for name in SHAPES})  # fmt: skip
                labels.append(f"init{i}-task{t}-{rep}")
    result = analyze_collection(
        make_set(make_adapter, factors), names=labels, config=CollectionConfig(which=("A", "B"))
    )
    clusters = result.clusters
    assert list(clusters.columns) == CLUSTER_COLUMNS
    by_a = clusters[clusters.which == "A"].set_index("adapter")["cluster"]
    by_b = clusters[clusters.which == "B"].set_index("adapter")["cluster"]
    assert by_a.nunique() == 2 and by_b.nunique() == 2
    for name in labels:
        assert by_a[name] == by_a[f"init{name[4]}-task0-0"]
        assert by_b[name] == by_b[f"init0-task{name[10]}-0"]
    assert by_a.iloc[0] == 1 and by_b.iloc[0] == 1  # numbered in adapter order


def test_random_baseline_matches_explicit_random_subspaces():
    """Bartlett's Wishart sampling gives the statistic of explicit random orthonormal bases."""
    d, ks, draws = 40, (3, 2, 4), 400
    got = random_shared_baseline(d, ks, draws=draws, seed=1)
    rng = np.random.default_rng(7)
    acc = np.zeros(max(ks))
    for _ in range(draws):
        S = np.concatenate([np.linalg.qr(rng.standard_normal((d, k)))[0] for k in ks], axis=1)
        sigma2 = np.linalg.svd(S, compute_uv=False) ** 2
        acc += np.cumsum(sigma2)[: max(ks)] / sigma2.sum()
    np.testing.assert_allclose(got, acc / draws, atol=0.01)
    np.testing.assert_array_equal(got, random_shared_baseline(d, ks, draws=draws, seed=1))  # seeded
    small = random_shared_baseline(5, (3, 3), draws=50, seed=0)  # d < Σk: sampled directly
    assert small.shape == (3,) and np.all(np.diff(small) > 0) and small[-1] <= 1


def test_config_checks_name_the_field(make_adapter):
    with pytest.raises(ValueError, match="which"):
        CollectionConfig(which=("C",))
    with pytest.raises(ValueError, match="cut"):
        CollectionConfig(cut=1.5)
    with pytest.raises(ValueError, match="draws"):
        CollectionConfig(draws=0)
    adapters = make_set(make_adapter, [{NAMES[0]: (torch.randn(4, 48), torch.randn(200, 4))}])
    with pytest.raises(ValueError, match="two adapters"):
        analyze_collection(adapters)


@pytest.mark.parametrize("which", [("A", "B", "delta"), ("A",)])
def test_a_module_with_non_finite_values_is_skipped(make_adapter, which):
    factors = [
        {name: (torch.randn(4, d_in, generator=gen(s + i)), torch.randn(d_out, 4, generator=gen(70 + s + i)))
         for i, (name, (d_in, d_out)) in enumerate(SHAPES.items())}
        for s in range(3)
    ]  # fmt: skip
    factors[1][NAMES[0]][1][0, 0] = float("inf")  # adapter 1's B in the first module
    adapters = make_set(make_adapter, factors)
    result = analyze_collection(adapters, config=CollectionConfig(which=which))
    assert set(result.similarity["module"]) == set(result.shared["module"]) == {NAMES[1]}
    assert set(pairwise_similarity(adapters, which=which)["module"]) == {NAMES[1]}
