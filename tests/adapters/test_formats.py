"""Format detection: one fixed order, decided from keys and config alone; what an adapter says about itself."""

from __future__ import annotations

import pytest
import torch
from conftest import random_factors
from safetensors.torch import save_file

from asymviz.adapters import load_adapter
from asymviz.adapters.formats import FORMATS, READERS, detect
from asymviz.errors import AdapterError


@pytest.mark.parametrize(
    "keys, config, expected",
    [
        (
            ["base_model.model.m.q_proj.lora_A.weight", "base_model.model.m.q_proj.lora_B.weight"],
            None,
            "peft",
        ),
        (["m.q_proj.lora_A.weight", "m.q_proj.lora_B.weight", "m.q_proj.lora_E"], None, "adalora"),
        (["m.q_proj.lora_A", "m.q_proj.lora_B"], {"peft_type": "ADALORA"}, "adalora"),
        (
            [
                "lora_unet_x_to_q.lora_down.weight",
                "lora_unet_x_to_q.lora_up.weight",
                "lora_unet_x_to_q.alpha",
            ],
            None,
            "kohya",
        ),
        (["unet.x.to_q.lora.down.weight", "unet.x.to_q.lora.up.weight"], None, "diffusers"),
        (["model.layers.0.q_proj.lora_a", "model.layers.0.q_proj.lora_b"], None, "mlx-lm"),
        (["layers.0.attn.q_proj.lora_a.weight", "layers.0.attn.q_proj.lora_b.weight"], None, "torchtune"),
        (["lora_unet_x.hada_w1_a", "lora_unet_x.hada_w1_b"], None, "unsupported"),
        (["m.q_proj.lora_A.weight"], {"peft_type": "LOHA"}, "unsupported"),
        (["model.embed_tokens.weight"], None, None),
    ],
)
def test_detection(keys, config, expected):
    assert detect(keys, config) == expected


def test_every_reader_has_one_detector_and_a_format_name():
    for module in READERS:
        assert callable(module.detect) and callable(module.read)
        assert module.FORMAT in FORMATS or module.FORMAT == "unsupported"


def test_repr_info_and_summary(make_adapter):
    folder = make_adapter({"model.layers.1.self_attn.q_proj": random_factors(4, 16, 8)}, {"lora_alpha": 8})
    adapter = load_adapter(folder)
    assert "format='peft'" in repr(adapter) and "scaling from config" in repr(adapter)
    info = adapter.info()
    assert info["format"] == "peft" and info["scaling_source"] == "config" and info["ranks"] == [4]
    assert info["experts"] == 0 and info["problems"] == []
    s = adapter.summary()
    assert list(s.columns)[:4] == ["module", "layer", "kind", "expert"] and s["expert"].isna().all()


def test_no_lora_keys_lists_the_first_ones(tmp_path):
    save_file({"model.embed_tokens.weight": torch.ones(2, 2)}, tmp_path / "x.safetensors")
    with pytest.raises(AdapterError, match="no LoRA weights found .* first keys: model.embed_tokens.weight"):
        load_adapter(tmp_path / "x.safetensors")


def test_torchtune_dora_is_refused(tmp_path):
    torch.save(
        {"layers.0.attn.q_proj.lora_a.weight": torch.ones(2, 4), "layers.0.attn.q_proj.lora_b.weight": torch.ones(4, 2),
         "layers.0.attn.q_proj.magnitude": torch.ones(4)},
        tmp_path / "adapter_model.pt",
    )  # fmt: skip
    with pytest.raises(AdapterError, match="torchtune DoRA magnitude"):
        load_adapter(tmp_path)
