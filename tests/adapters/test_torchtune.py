"""torchtune checkpoints (kind 5): adapter_model.pt with torchtune's names, read with weights_only=True;
ΔW = (alpha / rank) · lora_b.weight @ lora_a.weight (torchtune/modules/peft/lora.py LoRALinear)."""

from __future__ import annotations

import json

import torch

from asymviz.adapters import load_adapter


def tune_folder(folder, config=True):
    folder.mkdir()
    torch.manual_seed(0)
    state = {}
    for layer in range(2):
        lora_a, lora_b = (
            torch.nn.Linear(32, 8, bias=False),
            torch.nn.Linear(8, 24, bias=False),
        )  # as LoRALinear
        state[f"layers.{layer}.attn.q_proj.lora_a.weight"] = lora_a.weight.detach()
        state[f"layers.{layer}.attn.q_proj.lora_b.weight"] = lora_b.weight.detach()
    torch.save(state, folder / "adapter_model.pt")
    if config:  # the PEFT-schema config torchtune's checkpointer writes beside it
        cfg = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "peft_type": "LORA"}
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return state


def test_torchtune_folder(tmp_path):
    state = tune_folder(tmp_path / "tune")
    adapter = load_adapter(tmp_path / "tune")
    assert adapter.format == "torchtune" and adapter.scaling_source == "config"
    assert [m.layer for m in adapter.modules] == [0, 1] and adapter.modules[0].kind == "q_proj"
    for m in adapter:
        a, b = state[f"{m.name}.lora_a.weight"], state[f"{m.name}.lora_b.weight"]
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 2.0 * b @ a)


def test_torchtune_pt_alone(tmp_path):
    tune_folder(tmp_path / "tune", config=False)
    adapter = load_adapter(tmp_path / "tune" / "adapter_model.pt")
    assert adapter.scaling_source == "unknown" and "lora_alpha is unknown" in adapter.problems[0]
