"""The down/up namings of older diffusers files (kind 5): one module per adapted projection, ΔW = up @ down."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from asymviz.adapters import load_adapter

BLOCK = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1"


@pytest.mark.parametrize(
    "down, up, module",
    [
        (
            f"{BLOCK}.processor.to_q_lora.down.weight",
            f"{BLOCK}.processor.to_q_lora.up.weight",
            f"{BLOCK}.to_q",
        ),
        (
            f"{BLOCK}.processor.to_out_lora.down.weight",
            f"{BLOCK}.processor.to_out_lora.up.weight",
            f"{BLOCK}.to_out.0",
        ),
        (f"{BLOCK}.to_k.lora.down.weight", f"{BLOCK}.to_k.lora.up.weight", f"{BLOCK}.to_k"),
        (
            "text_encoder.text_model.encoder.layers.0.self_attn.to_out_lora.down.weight",
            "text_encoder.text_model.encoder.layers.0.self_attn.to_out_lora.up.weight",
            "text_encoder.text_model.encoder.layers.0.self_attn.out_proj",
        ),
        (
            "text_encoder.text_model.encoder.layers.1.self_attn.q_proj.lora_linear_layer.down.weight",
            "text_encoder.text_model.encoder.layers.1.self_attn.q_proj.lora_linear_layer.up.weight",
            "text_encoder.text_model.encoder.layers.1.self_attn.q_proj",
        ),
    ],
)
def test_old_diffusers_namings(tmp_path, down, up, module):
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 20, generator=g), torch.randn(12, 4, generator=g)
    save_file({down: A, up: B}, tmp_path / "pytorch_lora_weights.safetensors")
    adapter = load_adapter(tmp_path / "pytorch_lora_weights.safetensors")
    assert adapter.format == "diffusers" and adapter.scaling_source == "format default"
    (m,) = adapter
    assert m.name == module and m.scaling == 1.0  # LoRALinearLayer without network_alpha: up(down(x))
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), B @ A)


def test_diffusers_alpha_tensor(tmp_path):
    A, B = torch.randn(4, 20), torch.randn(12, 4)
    save_file(
        {
            f"{BLOCK}.to_k.lora.down.weight": A,
            f"{BLOCK}.to_k.lora.up.weight": B,
            f"{BLOCK}.to_k.alpha": torch.tensor(2.0),
        },
        tmp_path / "a.safetensors",
    )
    (m,) = load_adapter(tmp_path / "a.safetensors")
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 0.5 * B @ A)
