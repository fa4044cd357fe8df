"""AdaLoRA (kind 3): ΔW = B·diag(E)·A·α/(init_r + 1e-5), checked against PEFT's own get_delta_weight."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file, save_file

from asymviz.adapters import load_adapter
from asymviz.spectra import singular_spectrum


@pytest.fixture
def adalora(tmp_path):
    from peft import AdaLoraConfig, get_peft_model
    from peft.tuners.adalora import AdaLoraLayer

    config = AdaLoraConfig(
        init_r=6, target_r=4, lora_alpha=12, total_step=10, target_modules=["q_proj", "v_proj"]
    )
    model = get_peft_model(tiny_model("llama"), config)
    torch.manual_seed(2)
    with torch.no_grad():  # E starts at 0 (ΔW = 0): give it values
        for n, p in model.named_parameters():
            if "lora_E" in n:
                p.copy_(torch.randn_like(p))
    model.save_pretrained(tmp_path / "ada")
    deltas = {
        n.removeprefix("base_model.model."): mod.get_delta_weight("default").detach()
        for n, mod in model.named_modules()
        if isinstance(mod, AdaLoraLayer) and "default" in mod.lora_A
    }
    return tmp_path / "ada", deltas


def test_adalora_matches_peft(adalora):
    folder, deltas = adalora
    keys = load_file(folder / "adapter_model.safetensors")
    assert any(k.endswith(".lora_E") for k in keys)  # ParameterDict keys: no .weight
    adapter = load_adapter(folder)
    assert adapter.format == "adalora" and adapter.scaling_source == "config"
    assert sorted(adapter.names) == sorted(deltas)
    for m in adapter:
        assert m.scaling == pytest.approx(12 / (6 + 1e-5))  # α / (ranknum + 1e-5), ranknum = init_r
        assert m.adalora_e is not None and m.adalora_e.shape == (6,)  # kept beside the folded A
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), deltas[m.name], rtol=1e-5, atol=1e-6)
    spec = singular_spectrum(adapter, which="delta")
    name = "model.layers.0.self_attn.q_proj"
    expected = torch.linalg.svdvals(deltas[name])[:6].numpy()
    assert spec[spec.module == name]["sigma"].to_numpy() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_pruned_rank_keeps_init_r_scaling(adalora, tmp_path):
    """A module that kept 3 of its 6 rows (as PEFT saves after rank allocation) is still scaled by α/init_r."""
    folder, _ = adalora
    tensors = load_file(folder / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.1.self_attn.v_proj."
    keep = [0, 2, 5]
    tensors[prefix + "lora_A"] = tensors[prefix + "lora_A"][keep].contiguous()
    tensors[prefix + "lora_E"] = tensors[prefix + "lora_E"][keep].contiguous()
    tensors[prefix + "lora_B"] = tensors[prefix + "lora_B"][:, keep].contiguous()
    out = tmp_path / "pruned"
    out.mkdir()
    save_file(tensors, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    m = load_adapter(out).module("model.layers.1.self_attn.v_proj")
    A, B, E = (tensors[prefix + k] for k in ("lora_A", "lora_B", "lora_E"))
    assert m.r == 3
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), B @ (A * E) * 12 / (6 + 1e-5))


def test_adalora_without_config_says_what_is_assumed(adalora, tmp_path):
    folder, _ = adalora
    tensors = load_file(folder / "adapter_model.safetensors")
    save_file(tensors, tmp_path / "ada.safetensors")
    adapter = load_adapter(tmp_path / "ada.safetensors")
    assert adapter.format == "adalora" and adapter.scaling_source == "unknown"
    assert "ΔW = B·diag(E)·A is used (scaling 1)" in adapter.problems[0]
    prefix = "base_model.model.model.layers.0.self_attn.q_proj."
    A, B, E = (tensors[prefix + k] for k in ("lora_A", "lora_B", "lora_E"))
    torch.testing.assert_close(
        torch.from_numpy(adapter.module("model.layers.0.self_attn.q_proj").delta_weight()),
        B @ torch.diag(E[:, 0]) @ A,
    )
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "ADALORA"
