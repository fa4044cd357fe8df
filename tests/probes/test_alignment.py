"""asymviz.probes.alignment (+ asymviz.probes.activations): known answers for A vs inputs, B vs output gradients, both vs
W0, with their random baselines; moments from hooks checked against direct computations on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_task import write_tiny_adapter, write_tiny_bert, write_tiny_llama_lm, write_tiny_task

from asymviz.adapters import from_state_dict
from asymviz.linalg import single_threaded
from asymviz.probes.activations import ModuleMoments, collect_moments
from asymviz.probes.alignment import (
    ALIGN_COLUMNS,
    align,
    alignment_summary,
    alignment_table,
    energy_share,
    module_alignment,
    principal_subspace,
)
from asymviz.probes.base_weights import clear_svd_cache, find_module, weight_svd

NAME = "model.layers.0.self_attn.q_proj"


@pytest.fixture(autouse=True)
def _svd_cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path / "cache"))
    clear_svd_cache()


def module_of(A, B):
    sd = {
        f"base_model.model.{NAME}.lora_A.weight": A.float(),
        f"base_model.model.{NAME}.lora_B.weight": B.float(),
    }
    return from_state_dict(sd, {"peft_type": "LORA", "r": A.shape[0], "lora_alpha": A.shape[0]}).module(NAME)


def second_moment(d, top, n=2000, seed=0):
    """Σ x xᵀ of n samples whose covariance has `top` strong directions (variance 100) in R^d, and those
    directions (d, top)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    scale = torch.ones(d, dtype=torch.float64)
    scale[:top] = 10.0
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scale @ Q.T
    return X.T @ X, Q[:, :top]


def by_side(rows):
    return {(r["which"], r["side"]): r for r in rows}


# ---- subspace math ---------------------------------------------------------------------------------------


def test_principal_subspace_and_energy_share_known_answers():
    Q = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))[0]
    evals = torch.tensor([9.0, 7, 5, 3, 1, 0, 0, 0, 0, 0], dtype=torch.float64)
    M = (Q * evals) @ Q.T
    U = principal_subspace(M, 3)
    assert U.shape == (10, 3)
    assert torch.allclose((U.T @ Q[:, :3]).abs(), torch.eye(3, dtype=torch.float64), atol=1e-8)
    assert principal_subspace(M, 8).shape[1] == 5  # truncated to the numerical rank
    assert energy_share(U, M) == pytest.approx(21 / 25)
    counts = torch.tensor([0.0, 5, 1, 9, 0])  # a diagonal moment (token counts)
    E = principal_subspace(counts, 4)
    assert E.shape == (5, 3) and E[3, 0] == 1 and E[1, 1] == 1 and E[2, 2] == 1
    assert energy_share(E[:, :1], counts) == pytest.approx(9 / 15)


def test_an_a_built_from_the_top_input_directions_aligns_at_one():
    d_in, d_out, r = 48, 24, 4
    X, top = second_moment(d_in, r)
    mix = torch.randn(r, r, dtype=torch.float64)
    A = mix @ top.T  # same row space as X's top-4 principal directions, not orthonormal
    m = module_of(A, torch.randn(d_out, r))
    mom = ModuleMoments(NAME, X, torch.eye(d_out, dtype=torch.float64), 2000, "gradient")
    row = by_side(module_alignment(m, mom, None, k=r))["A", "input"]
    assert row["similarity"] == pytest.approx(1, abs=1e-3)
    assert row["random_baseline"] == pytest.approx(r / d_in)
    assert row["energy_share"] > 0.9 and row["energy_baseline"] == pytest.approx(r / d_in)


def test_a_random_a_sits_at_its_baseline():
    d_in, r, k = 64, 4, 8
    X, _ = second_moment(d_in, 6)
    mom = ModuleMoments(NAME, X, torch.eye(8, dtype=torch.float64), 2000, "gradient")
    g = torch.Generator().manual_seed(1)
    with single_threaded():
        sims = [
            by_side(module_alignment(module_of(torch.randn(r, d_in, generator=g), torch.randn(8, r, generator=g)),
                                     mom, None, k))["A", "input"]["similarity"]
            for _ in range(200)
        ]  # fmt: skip
    assert np.mean(sims) == pytest.approx(max(r, k) / d_in, rel=0.1)  # E‖Q1ᵀQ2‖²/min(k1,k2) = max(k1,k2)/d


def test_b_after_one_step_from_zero_lies_in_the_output_gradient_subspace():
    """∂L/∂B = s·Σ_t g_t (A x_t)ᵀ: B's first update has its columns in the span of the output gradients g_t."""
    from conftest import tiny_model
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_model("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj"])
    ).eval()
    name = "model.layers.1.self_attn.o_proj"
    ids = torch.tensor([[2, 7, 9, 11, 3, 0], [2, 5, 8, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    moments = collect_moments(model, [name], [batch], output="gradient")[name]
    assert moments.n_tokens == 9
    (model(**batch).loss * 2).backward()
    layer = find_module(model, name)
    stepped = module_of(layer.lora_A["default"].weight.detach(), -0.1 * layer.lora_B["default"].weight.grad)
    full = principal_subspace(moments.outputs, 32)  # the span of the gradients: 7 tokens have a next token
    assert full.shape[1] == 7
    row = by_side(module_alignment(stepped, moments, None, k=7))["B", "output"]
    assert row["similarity"] == pytest.approx(1, abs=1e-5)
    assert row["random_baseline"] == pytest.approx(7 / 32)
    assert row["energy_share"] > row["energy_baseline"]


def test_weight_side_uses_right_singular_vectors_for_a_and_left_for_b():
    g = torch.Generator().manual_seed(2)
    W0 = torch.randn(20, 30, generator=g)
    U0, S0, V0 = weight_svd(W0)
    m = module_of(V0[:, :3].T * 2, U0[:, :3] @ torch.randn(3, 3, generator=g))
    rows = by_side(module_alignment(m, None, (U0, S0, V0), k=3))
    assert set(rows) == {("A", "weight"), ("B", "weight")}
    assert rows["A", "weight"]["similarity"] == pytest.approx(1, abs=1e-5)
    assert rows["B", "weight"]["similarity"] == pytest.approx(1, abs=1e-5)
    assert rows["A", "weight"]["energy_share"] == pytest.approx(
        float(S0[:3].square().sum() / S0.square().sum()), rel=1e-5
    )
    swapped = by_side(module_alignment(module_of(V0[:, 3:6].T, U0[:, 3:6]), None, (U0, S0, V0), k=3))
    assert swapped["A", "weight"]["similarity"] == pytest.approx(0, abs=1e-5)
    assert swapped["B", "weight"]["similarity"] == pytest.approx(0, abs=1e-5)


# ---- moments from hooks ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_peft():
    from conftest import tiny_model
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(tiny_model("bert"), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                          init_lora_weights=False)).eval()  # fmt: skip
    batches = [
        {"input_ids": torch.tensor([[2, 7, 9, 11, 3], [2, 5, 3, 0, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), "labels": torch.tensor([0, 2])},
        {"input_ids": torch.tensor([[2, 40, 41, 3]]), "attention_mask": torch.tensor([[1, 1, 1, 1]]),
         "labels": torch.tensor([1])},
    ]  # fmt: skip
    return model, batches


def direct_moments(model, name, batches):
    """Σ xxᵀ, Σ ggᵀ and Σ yyᵀ (base layer) over real tokens, by retain_grad on the module's output."""
    layer = find_module(model, name)
    seen = {}
    h1 = layer.register_forward_hook(lambda m, a, out: seen.update(x=a[0].detach(), out=out))
    h2 = layer.base_layer.register_forward_hook(lambda m, a, out: seen.update(y=out.detach()))
    X = G = Y = 0
    for batch in batches:
        with torch.enable_grad():
            model.get_input_embeddings().register_forward_hook(lambda m, a, o: o.requires_grad_(True))
            loss = model(**batch).loss * batch["input_ids"].shape[0]
            seen["out"].retain_grad()
            loss.backward()
        mask = batch["attention_mask"].bool()
        x, g, y = seen["x"][mask].double(), seen["out"].grad[mask].double(), seen["y"][mask].double()
        X, G, Y = X + x.T @ x, G + g.T @ g, Y + y.T @ y
    h1.remove()
    h2.remove()
    return X, G, Y


def test_collected_moments_equal_direct_sums_over_real_tokens(tiny_peft):
    model, batches = tiny_peft
    names = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.attention.self.value"]
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    got = collect_moments(model, names, batches, output="gradient")
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # restored
    assert all(p.grad is None for p in model.parameters())  # no weight gradient was computed
    activ = collect_moments(model, names, batches, output="activation")
    for name in names:
        X, G, Y = direct_moments(model, name, batches)
        assert got[name].n_tokens == 12
        assert torch.allclose(got[name].inputs, X, rtol=1e-5, atol=1e-6)
        assert torch.allclose(got[name].outputs, G, rtol=1e-4, atol=1e-9)
        assert torch.allclose(activ[name].outputs, Y, rtol=1e-5, atol=1e-6)
        assert activ[name].output_kind == "activation" and got[name].output_kind == "gradient"


def test_embedding_inputs_are_token_counts():
    from conftest import tiny_model
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["embed_tokens"])).eval()
    batch = {"input_ids": torch.tensor([[5, 5, 7, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 0]]),
             "labels": torch.tensor([[5, 5, 7, -100]])}  # fmt: skip
    mom = collect_moments(model, ["model.embed_tokens"], [batch])["model.embed_tokens"]
    assert mom.diagonal_inputs and mom.inputs.shape == (64,)
    assert mom.inputs[5] == 2 and mom.inputs[7] == 1 and mom.inputs.sum() == 3
    assert mom.outputs.shape == (32, 32)


def test_gradient_moments_need_a_loss(tiny_peft):
    model, batches = tiny_peft
    unlabelled = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    with pytest.raises(ValueError, match="no loss"):
        collect_moments(model, ["bert.encoder.layer.0.attention.self.query"], unlabelled)


# ---- end to end on a saved tiny model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    base = write_tiny_bert(root)
    adapter, _ = write_tiny_adapter(base, root / "adapter")
    run = root / "run"
    write_tiny_adapter(base, run / "adapter", seed=3)
    write_tiny_adapter(base, run / "init", seed=3, init_lora_weights=True)  # B = 0, as a real init
    return {"base": str(base), "adapter": adapter, "run": run, "task": str(write_tiny_task(root))}


def test_align_end_to_end_gives_one_row_per_module_factor_and_side(tiny_files):
    frame = align(
        tiny_files["adapter"], tiny_files["base"], tiny_files["task"], samples=16, k=4, batch_size=8
    )
    assert list(frame.columns) == ALIGN_COLUMNS
    assert len(frame) == 4 * 4  # 4 modules x (A input, B output, A weight, B weight)
    assert set(frame["source"]) == {"trained"}
    assert set(zip(frame["which"], frame["side"], strict=True)) == {
        ("A", "input"),
        ("B", "output"),
        ("A", "weight"),
        ("B", "weight"),
    }
    assert frame["similarity"].between(0, 1).all() and frame["energy_share"].between(0, 1).all()
    assert (frame["dim"] == 32).all() and (frame["random_baseline"] == 4 / 32).all()
    assert (frame.loc[frame["side"] == "output", "reference"] == "output gradient second moment").all()
    summary = alignment_summary(frame)
    assert set(summary.columns) >= {"source", "which", "side", "similarity", "random_baseline", "ratio"}


def test_a_run_folder_adds_its_init_and_no_labels_compares_b_with_outputs(tiny_files):
    frame = align(tiny_files["run"], tiny_files["base"], tiny_files["task"], samples=8, k=4, labels=False,
                  weight_side=False)  # fmt: skip
    assert set(frame["source"]) == {"trained", "init"}
    assert set(frame["side"]) == {"input", "output"}
    assert (frame.loc[frame["side"] == "output", "reference"] == "output second moment").all()
    init_b = frame[(frame["source"] == "init") & (frame["which"] == "B")]
    assert init_b["similarity"].isna().all() and (init_b["k_factor"] == 0).all()  # B = 0 at init
    init_a = frame[(frame["source"] == "init") & (frame["which"] == "A")]
    assert init_a["similarity"].notna().all()


def test_alignment_table_from_weights_only(tiny_files):
    from asymviz.adapters import load_adapter

    frame = alignment_table(load_adapter(tiny_files["adapter"]), None, tiny_files["base"], k=4)
    assert set(frame["side"]) == {"weight"} and len(frame) == 8
    assert not math.isnan(frame["similarity"].sum())


def test_align_a_causal_lm_uses_the_next_token_loss(tmp_path):
    base, adapter = write_tiny_llama_lm(tmp_path)
    task = write_tiny_task(tmp_path, answers=True)
    frame = align(adapter, str(base), str(task), samples=8, k=4, batch_size=4, weight_side=False)
    out = frame[frame["side"] == "output"]
    assert set(out["reference"]) == {"output gradient second moment"}
    assert sorted(out["dim"]) == [32, 32, 32, 32]  # q_proj (32 -> 32), down_proj (48 -> 32)
    assert sorted(frame.loc[frame["side"] == "input", "dim"]) == [32, 32, 48, 48]
    assert frame["similarity"].notna().all()
