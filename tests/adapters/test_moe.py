"""LoRA on fused MoE expert parameters (kind 4, PEFT target_parameters): one ΔW per expert, checked against
PEFT's own ParamWrapper.get_delta_weight on a tiny Qwen3-MoE built from a config."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError


def tiny_moe(tmp_path, targets):
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import ParamWrapper
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3MoeConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=48, moe_intermediate_size=24, num_experts=4, num_experts_per_tok=2,
                         vocab_size=64, max_position_embeddings=64, head_dim=16)  # fmt: skip
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=[], target_parameters=targets, init_lora_weights=False
    )
    model = get_peft_model(Qwen3MoeForCausalLM(cfg), config)
    model.save_pretrained(tmp_path / "moe")
    deltas = {}  # wrapper name -> (E, ...) per-expert ΔW in the parameter's own layout
    for name, mod in model.named_modules():
        if isinstance(mod, ParamWrapper):
            deltas[name.removeprefix("base_model.model.")] = (mod.get_delta_weight("default").detach(), mod)
    return tmp_path / "moe", deltas


def test_one_delta_per_expert_matches_paramwrapper(tmp_path):
    folder, deltas = tiny_moe(tmp_path, ["mlp.experts.gate_up_proj"])
    A = load_file(folder / "adapter_model.safetensors")[
        "base_model.model.model.layers.0.mlp.experts.lora_A.weight"
    ]
    assert A.shape == (16, 32)  # 4 experts × r = 4 rows
    adapter = load_adapter(folder)
    assert len(adapter) == 2 * 4 and {m.r for m in adapter.modules} == {4}
    summary = adapter.summary()
    assert summary["expert"].tolist() == [0, 1, 2, 3] * 2 and set(summary["kind"]) == {"gate_up_proj"}
    assert adapter.info()["experts"] == 4
    for layer in range(2):
        delta, wrapper = deltas[f"model.layers.{layer}.mlp.experts"]
        assert delta.shape == (4, 48, 32)  # gate_up_proj is (experts, out, in)
        for e in range(4):
            m = adapter.module(f"model.layers.{layer}.mlp.experts.gate_up_proj[expert {e}]")
            assert (m.d_out, m.d_in, m.scaling, m.expert) == (48, 32, 2.0, e)
            torch.testing.assert_close(torch.from_numpy(m.delta_weight()), delta[e], rtol=1e-5, atol=1e-6)


def test_two_parameters_on_one_module_are_named_by_wrapper(tmp_path):
    folder, deltas = tiny_moe(tmp_path, ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])
    adapter = load_adapter(folder)
    assert any("named by wrapper" in p for p in adapter.problems)
    assert len(adapter) == 2 * 2 * 4
    for wrapper_name, (delta, wrapper) in deltas.items():
        for e in range(4):
            m = adapter.module(f"{wrapper_name}[expert {e}]")
            expected = delta[e] if wrapper._did_swap_in_out_features else delta[e].T
            torch.testing.assert_close(torch.from_numpy(m.delta_weight()), expected, rtol=1e-5, atol=1e-6)


def test_experts_without_config_are_refused_not_mixed(tmp_path):
    folder, _ = tiny_moe(tmp_path, ["mlp.experts.gate_up_proj"])
    save_file(load_file(folder / "adapter_model.safetensors"), tmp_path / "bare.safetensors")
    with pytest.raises(AdapterError, match="fused MoE expert parameters.*number of experts is unknown"):
        load_adapter(tmp_path / "bare.safetensors")
