"""asymviz.probes.diagnostics: intruder dimensions, amplification factor, DoRA decomposition; known answers and
low-rank methods checked against dense computations on small matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymviz.adapters import from_state_dict, load_adapter
from asymviz.probes.base_weights import base_weight, clear_svd_cache, weight_svd
from asymviz.probes.diagnostics import (
    DIAGNOSE_COLUMNS,
    INTRUDER_COLUMNS,
    diagnose,
    dora_of,
    intruder_dimensions,
    row_change,
    updated_top_svd,
)

NAME = "model.layers.0.self_attn.q_proj"


@pytest.fixture(autouse=True)
def _svd_cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path / "cache"))
    clear_svd_cache()


def matrix_with_spectrum(d_out, d_in, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = min(d_out, d_in)
    U = torch.linalg.qr(torch.randn(d_out, m, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d_in, m, generator=g, dtype=torch.float64))[0]
    return U, torch.as_tensor(sigma, dtype=torch.float64), V


def single(A, B, scaling=1.0, config=None):
    cfg = {
        "peft_type": "LORA",
        "r": A.shape[0],
        "lora_alpha": scaling * A.shape[0],
        "target_modules": ["q_proj"],
    }
    cfg.update(config or {})
    sd = {
        f"base_model.model.{NAME}.lora_A.weight": A.float(),
        f"base_model.model.{NAME}.lora_B.weight": B.float(),
    }
    return from_state_dict(sd, cfg)


# ---- the low-rank top-k SVD ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(40, 40), (60, 24), (24, 60)])
@pytest.mark.parametrize("warm", [True, False])
def test_updated_top_svd_matches_dense_svd(shape, warm):
    d_out, d_in = shape
    m = min(shape)
    U, S, V = matrix_with_spectrum(d_out, d_in, 10 * 0.8 ** torch.arange(m, dtype=torch.float64))
    W0 = (U * S) @ V.T
    g = torch.Generator().manual_seed(1)
    A = torch.randn(3, d_in, generator=g, dtype=torch.float64)
    B = torch.randn(d_out, 3, generator=g, dtype=torch.float64)
    Uk, Sk, Vk, it = updated_top_svd(W0, B, A, 0.7, k=6, V0=V if warm else None, tol=1e-10)
    Ud, Sd, Vdh = torch.linalg.svd(W0 + 0.7 * B @ A)
    assert torch.allclose(Sk, Sd[:6], rtol=1e-8)
    # compare subspaces vector by vector (signs are arbitrary): |cos| = 1
    assert torch.allclose((Ud[:, :6].T @ Uk).diagonal().abs(), torch.ones(6, dtype=torch.float64), atol=1e-6)
    assert torch.allclose((Vdh[:6] @ Vk).diagonal().abs(), torch.ones(6, dtype=torch.float64), atol=1e-6)
    assert it >= 1


def test_updated_top_svd_converges_in_one_step_when_the_update_is_inside_the_start():
    U, S, V = matrix_with_spectrum(30, 30, torch.linspace(5, 0.1, 30, dtype=torch.float64))
    W0 = (U * S) @ V.T
    A = V[:, :2].T.clone()  # the update lives in W0's top right singular directions: the warm start has it
    B = U[:, :2] * 3
    _, Sk, _, it = updated_top_svd(W0, B, A, 1.0, k=4, V0=V, tol=1e-9)
    assert it == 1
    assert torch.allclose(Sk, torch.linalg.svdvals(W0 + B @ A)[:4])


# ---- intruder dimensions ---------------------------------------------------------------------------------


def test_rescaling_w0s_top_direction_gives_no_intruders():
    U, S, V = matrix_with_spectrum(32, 32, torch.linspace(8, 0.2, 32, dtype=torch.float64))
    W0 = ((U * S) @ V.T).float()
    A = V[:, :1].T * 2.0  # ΔW = 2·c·u1 v1ᵀ: only W0's top singular value grows
    B = U[:, :1] * 1.5
    frame = intruder_dimensions(single(A, B), {NAME: W0}, k=10, eps=0.5)
    assert list(frame.columns) == INTRUDER_COLUMNS
    assert len(frame) == 10
    assert not frame["intruder"].any()
    assert np.allclose(frame["best_cosine"], 1, atol=1e-4)
    assert list(frame["best_match"]) == list(range(1, 11))
    assert frame["sigma"].iloc[0] == pytest.approx(8 + 3.0, rel=1e-5)


def test_a_new_direction_spread_over_all_of_w0s_directions_is_one_intruder():
    d = 64
    U, S, V = matrix_with_spectrum(d, d, torch.linspace(4, 0.1, d, dtype=torch.float64))
    W0 = ((U * S) @ V.T).float()
    u = U.sum(dim=1, keepdim=True) / math.sqrt(d)  # |cos| with every singular vector of W0 is 1/√d
    v = V.sum(dim=1, keepdim=True) / math.sqrt(d)
    frame = intruder_dimensions(single(v.T, 20 * u), {NAME: W0}, k=5, eps=0.5)
    assert frame["intruder"].tolist() == [True, False, False, False, False]
    assert frame["best_cosine"].iloc[0] < 0.2
    # right singular vectors see the same intruder
    right = intruder_dimensions(single(v.T, 20 * u), {NAME: W0}, k=5, vectors="right")
    assert right["intruder"].tolist()[0]


def test_intruders_match_a_dense_computation_on_tiny_peft_models(peft_adapter):
    folder, model = peft_adapter("llama", r=4, lora_alpha=32, target_modules=["q_proj", "down_proj"])
    adapter = load_adapter(folder)
    frame = intruder_dimensions(adapter, model, k=6, eps=0.5)
    for spec in adapter.modules:
        m = adapter.module(spec.name)
        W0 = base_weight(model, spec).double()
        U0 = torch.linalg.svd(W0, full_matrices=False)[0]
        Ud = torch.linalg.svd(W0 + torch.from_numpy(m.delta_weight()).double(), full_matrices=False)[0][:, :6]
        best = (U0.T @ Ud).abs().max(dim=0).values.numpy()
        got = frame[frame["module"] == spec.name]["best_cosine"].to_numpy()
        assert np.allclose(got, best, atol=1e-3)


# ---- amplification ---------------------------------------------------------------------------------------


def test_amplification_factor_known_value():
    W0 = torch.diag(torch.tensor([10.0, 5.0, 1.0, 0.5, 0.25, 0.1]))
    e3 = torch.eye(6)[:, 2:3]
    table = diagnose(single(e3.T, 2 * e3), {NAME: W0}, k=3).iloc[0]  # ΔW = 2·e3 e3ᵀ, r = 1
    assert table["delta_fro"] == pytest.approx(2.0)
    assert table["w0_proj_fro"] == pytest.approx(1.0)  # e3ᵀ W0 e3
    assert table["amplification"] == pytest.approx(2.0)
    assert table["w0_top_fro"] == pytest.approx(10.0)
    assert table["w0_random_fro"] == pytest.approx(float(W0.norm()) / 6)


def test_amplification_matches_dense_and_is_nan_for_a_zero_update(peft_adapter, make_adapter):
    folder, model = peft_adapter("bert", r=4, lora_alpha=8, target_modules=["query"])
    adapter = load_adapter(folder)
    table = diagnose(adapter, model).set_index("module")
    for spec in adapter.modules:
        delta = torch.from_numpy(adapter.module(spec.name).delta_weight()).double()
        U, S, Vh = torch.linalg.svd(delta)
        W0 = base_weight(model, spec).double()
        expected = float(S[:4].norm() / (U[:, :4].T @ W0 @ Vh[:4].T).norm())
        assert table.loc[spec.name, "amplification"] == pytest.approx(expected, rel=1e-4)
    A = torch.randn(2, 8)
    zero = diagnose(single(A, torch.zeros(8, 2)), {NAME: torch.randn(8, 8)}).iloc[0]
    assert zero["delta_fro"] == 0 and math.isnan(zero["amplification"])
    assert zero["n_intruders"] == 0 and zero["direction_change"] == pytest.approx(0, abs=1e-12)


# ---- DoRA decomposition ----------------------------------------------------------------------------------


def test_row_change_matches_dense_rows():
    g = torch.Generator().manual_seed(3)
    W0, A, B = (
        torch.randn(12, 20, generator=g),
        torch.randn(3, 20, generator=g),
        torch.randn(12, 3, generator=g),
    )
    n0, n, cos = row_change(W0, B, A, 0.5)
    W = W0 + 0.5 * B @ A
    assert torch.allclose(n0, W0.norm(dim=1).double(), rtol=1e-6)
    assert torch.allclose(n, W.norm(dim=1).double(), rtol=1e-5)
    assert torch.allclose(cos, torch.nn.functional.cosine_similarity(W, W0, dim=1).double(), atol=1e-6)


def test_scaling_w0_changes_magnitude_not_direction():
    g = torch.Generator().manual_seed(4)
    B0, A0 = torch.randn(10, 2, generator=g), torch.randn(2, 16, generator=g)
    W0 = B0 @ A0  # rank 2, so ΔW = 0.5·W0 is a rank-2 LoRA update
    stats = dora_of(W0, single(A0, 0.5 * B0).module(NAME))
    assert stats["direction_change"] == pytest.approx(0, abs=1e-9)
    assert stats["magnitude_change_rel"] == pytest.approx(0.5, rel=1e-9)
    assert stats["magnitude_change"] == pytest.approx(0.5 * float(W0.norm(dim=1).mean()), rel=1e-6)


def test_dora_adapters_use_their_magnitude_vector_like_peft_merges_them(peft_adapter):
    folder, model = peft_adapter("llama", r=4, lora_alpha=8, target_modules=["v_proj"], use_dora=True)
    adapter = load_adapter(folder)
    spec = adapter.modules[0]
    W0 = base_weight(model, spec).clone()
    stats = diagnose(adapter, model).iloc[0]
    merged = model.merge_and_unload()
    W = base_weight(merged, spec)
    assert stats["magnitude_change"] == pytest.approx(
        float((W.norm(dim=1) - W0.norm(dim=1)).abs().mean()), rel=1e-4
    )
    cos = torch.nn.functional.cosine_similarity(W, W0, dim=1)
    assert stats["direction_change"] == pytest.approx(float((1 - cos).mean()), rel=1e-3, abs=1e-6)


# ---- over adapters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch, targets",
    [("gpt2", ["c_attn"]), ("llama", ["embed_tokens", "q_proj"]), ("bert", ["query", "value"])],
)
def test_diagnose_is_consistent_with_peft_merged_weights(peft_adapter, arch, targets):
    folder, model = peft_adapter(arch, r=4, lora_alpha=16, target_modules=targets)
    adapter = load_adapter(folder)
    before = {spec.name: base_weight(model, spec).clone() for spec in adapter.modules}
    table = diagnose(adapter, model, k=5).set_index("module")
    assert list(table.reset_index().columns) == DIAGNOSE_COLUMNS
    merged = model.merge_and_unload()
    for spec in adapter.modules:
        W0, W = before[spec.name].double(), base_weight(merged, spec).double()
        assert torch.allclose(
            W, W0 + torch.from_numpy(adapter.module(spec.name).delta_weight()).double(), atol=1e-5
        )
        rows = (W0, W) if not spec.embedding else (W0.T, W.T)  # embeddings: per token, as PEFT's DoRA
        cos = torch.nn.functional.cosine_similarity(rows[1], rows[0], dim=1)
        assert table.loc[spec.name, "direction_change"] == pytest.approx(
            float((1 - cos).mean()), rel=1e-3, abs=1e-7
        )
        U0 = torch.linalg.svd(W0, full_matrices=False)[0]
        Ud = torch.linalg.svd(W, full_matrices=False)[0][:, :5]
        n_dense = int(((U0.T @ Ud).abs().max(dim=0).values < 0.5).sum())
        assert table.loc[spec.name, "n_intruders"] == n_dense


def test_w0_svd_is_cached_in_memory_and_on_disk(tmp_path):
    W = torch.randn(20, 12)
    U, S, V = weight_svd(W)
    assert torch.allclose((U * S) @ V.T, W, atol=1e-5)
    assert weight_svd(W.clone())[0] is U  # same content, same cache entry
    assert len(list((tmp_path / "cache" / "svd").glob("*.safetensors"))) == 1
    clear_svd_cache()
    U2, _, _ = weight_svd(W)
    assert torch.equal(U2, U)  # read back from disk
    assert weight_svd(W + 1)[1][0] != S[0]  # other content, other entry


def test_mismatched_base_weights_name_the_module():
    from asymviz.errors import AdapterError

    with pytest.raises(AdapterError, match="q_proj"):
        diagnose(single(torch.randn(2, 8), torch.randn(8, 2)), {NAME: torch.randn(8, 9)})
