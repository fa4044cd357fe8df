"""Early-PEFT adapters (kind 1): alpaca-lora era configs, hand-saved .bin state dicts, mixed dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_factors, write_adapter

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError

# tloen/alpaca-lora-7b's adapter_config.json as PEFT 0.2 wrote it (enable_lora and merge_weights were
# removed in later PEFT releases)
ALPACA_CONFIG = {
    "base_model_name_or_path": "decapoda-research/llama-7b-hf", "bias": "none", "enable_lora": None,
    "fan_in_fan_out": False, "inference_mode": True, "lora_alpha": 16, "lora_dropout": 0.05,
    "merge_weights": False, "modules_to_save": None, "peft_type": "LORA", "r": 8,
    "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM",
}  # fmt: skip


def test_alpaca_lora_config_is_read_with_a_warning(make_adapter):
    A, B = random_factors(8, 32, 32)
    folder = make_adapter({"model.layers.0.self_attn.q_proj": (A, B)})
    (folder / "adapter_config.json").write_text(json.dumps(ALPACA_CONFIG))
    adapter = load_adapter(folder)
    assert adapter.format == "peft-legacy" and adapter.scaling_source == "config"
    assert "format='peft-legacy'" in repr(adapter)
    (m,) = adapter
    assert m.scaling == 2.0  # 16 / 8
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 2.0 * B @ A)
    (warning,) = adapter.problems
    assert "enable_lora, merge_weights ignored" in warning


def test_merged_linear_enable_lora_is_refused_by_name(make_adapter):
    folder = make_adapter({"transformer.h.0.attn.c_attn": random_factors(8, 32, 96)})
    (folder / "adapter_config.json").write_text(
        json.dumps({**ALPACA_CONFIG, "enable_lora": [True, False, True]})
    )
    with pytest.raises(
        AdapterError, match=r"enable_lora=\[True, False, True\] is an early-PEFT MergedLinear"
    ):
        load_adapter(folder)


def test_unknown_fields_unset_warn_set_refuse(make_adapter):
    modules = {"model.layers.0.q_proj": random_factors(4, 16, 16)}
    loose = load_adapter(make_adapter(modules, {"future_flag": None, "other": False}))
    assert any("future_flag, other ignored (unset or off)" in p for p in loose.problems)
    with pytest.raises(AdapterError, match=r"unknown config field\(s\) future_flag=True"):
        load_adapter(make_adapter(modules, {"future_flag": True}))
    forced = load_adapter(make_adapter(modules, {"future_flag": True}), strict=False)
    assert any("ΔW may be wrong" in p for p in forced.problems)


def test_only_a_set_unknown_field_asks_the_installed_peft(make_adapter, monkeypatch):
    """Importing peft (and torch, transformers) costs seconds and would break the torch-free analysis path:
    an unknown field that is unset or off is ignored without it; a set one is checked against PEFT's fields."""
    import asymviz.adapters.config as config

    asked = []
    monkeypatch.setattr(
        config, "_installed_peft_fields", lambda: asked.append(1) or frozenset({"newer_flag"})
    )
    modules = {"model.layers.0.q_proj": random_factors(4, 16, 16)}
    loose = load_adapter(make_adapter(modules, {"future_flag": None}))
    assert not asked and any("future_flag ignored (unset or off)" in p for p in loose.problems)
    newer = load_adapter(make_adapter(modules, {"newer_flag": True}))  # the installed PEFT knows it
    assert asked and not any("newer_flag" in p for p in newer.problems)


def test_hand_saved_parameters_with_adapter_name_and_mixed_dtypes(tmp_path):
    """A .bin of model.state_dict() with nn.Parameters (requires_grad), `lora_A.default.weight` keys, A in
    float64 and B in float16: ΔW is computed in float64 and equals the dense product."""
    A, B = random_factors(4, 24, 16, seed=3)
    B16 = B.half()
    state = {
        "base_model.model.model.layers.0.self_attn.v_proj.lora_A.default.weight": torch.nn.Parameter(
            A.double()
        ),
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight": torch.nn.Parameter(B16),
        "base_model.model.model.layers.0.self_attn.v_proj.base_layer.weight": torch.zeros(16, 24),
    }
    torch.save(state, tmp_path / "adapter_model.bin")
    (tmp_path / "adapter_config.json").write_text(json.dumps({**ALPACA_CONFIG, "r": 4}))
    adapter = load_adapter(tmp_path)
    (m,) = adapter
    assert m.A.dtype == m.B.dtype == np.float64 and isinstance(m.A, np.ndarray)  # detached, converted
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 4.0 * B16.double() @ A.double())
    from asymviz.spectra import singular_spectrum

    sigma = singular_spectrum(adapter, which="delta")["sigma"].to_numpy()
    expected = torch.linalg.svdvals(4.0 * B16.double() @ A.double())[:4].numpy()
    assert sigma == pytest.approx(expected, rel=1e-6)


def test_empty_legacy_bin_is_named(tmp_path):
    torch.save({}, tmp_path / "adapter_model.bin")
    with pytest.raises(AdapterError, match="holds no tensors"):
        load_adapter(tmp_path)


def test_write_adapter_helper_still_plain_peft(tmp_path):
    folder = write_adapter(tmp_path / "a", {"model.layers.0.q_proj": random_factors(4, 16, 16)})
    assert load_adapter(folder).format == "peft"


def test_merged_linear_weights_without_config_are_named(tmp_path):
    """peft v0.2 MergedLinear on GPT-2 c_attn with enable_lora=[True, False, True]: lora_A (2r, d_in),
    lora_B a grouped Conv1d weight (2·d/3·..., r, 1)."""
    torch.save(
        {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": torch.ones(8, 32),
         "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": torch.ones(64, 4, 1)},
        tmp_path / "adapter_model.bin",
    )  # fmt: skip
    with pytest.raises(AdapterError, match="early PEFT's MergedLinear"):
        load_adapter(tmp_path)
