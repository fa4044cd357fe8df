"""mlx-lm adapter folders (kind 5): lora_a (d_in, r), lora_b (r, d_out), ΔW = scale · (lora_a @ lora_b)ᵀ."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError

# what mlx_lm.lora writes (mlx_lm/tuner/utils.py save_config): lora_parameters holds rank, scale, dropout
CONFIG = {
    "fine_tune_type": "lora",
    "num_layers": 2,
    "lora_parameters": {"rank": 4, "scale": 20.0, "dropout": 0.0},
}


def mlx_folder(folder, config=CONFIG):
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    t = {}
    for layer in range(2):
        t[f"model.layers.{layer}.self_attn.q_proj.lora_a"] = torch.randn(32, 4, generator=g)  # (d_in, r)
        t[f"model.layers.{layer}.self_attn.q_proj.lora_b"] = torch.randn(4, 16, generator=g)  # (r, d_out)
    save_file(t, folder / "adapters.safetensors")
    if config is not None:
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return t


def test_mlx_folder(tmp_path):
    t = mlx_folder(tmp_path / "mlx")
    adapter = load_adapter(tmp_path / "mlx")
    assert adapter.format == "mlx-lm" and adapter.scaling_source == "config" and not adapter.problems
    for m in adapter:
        assert (m.r, m.d_in, m.d_out, m.scaling) == (4, 32, 16, 20.0)  # scale multiplies, no division by r
        a, b = t[f"{m.name}.lora_a"], t[f"{m.name}.lora_b"]
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 20.0 * (a @ b).T)


def test_mlx_without_config_and_dora(tmp_path):
    mlx_folder(tmp_path / "bare", config=None)
    adapter = load_adapter(tmp_path / "bare")
    assert adapter.scaling_source == "unknown" and "scale is unknown" in adapter.problems[0]
    mlx_folder(tmp_path / "noscale", config={"fine_tune_type": "lora", "lora_parameters": {"rank": 4}})
    noscale = load_adapter(tmp_path / "noscale")
    assert noscale.scaling_source == "unknown" and "no lora_parameters.scale" in noscale.problems[0]
    mlx_folder(tmp_path / "dora", config={**CONFIG, "fine_tune_type": "dora"})
    with pytest.raises(AdapterError, match="fine_tune_type 'dora'"):
        load_adapter(tmp_path / "dora")


def test_early_mlx_alpha_rule(tmp_path):
    cfg = {"lora_parameters": {"rank": 4, "alpha": 16, "scale": 10.0, "dropout": 0.0}}
    mlx_folder(tmp_path / "old", config=cfg)
    assert {m.scaling for m in load_adapter(tmp_path / "old").modules} == {40.0}  # 10 · 16 / 4


def test_switch_lora_one_delta_per_expert(tmp_path):
    """LoRASwitchLinear: lora_a (E, r, d_in), lora_b (E, d_out, r); fuse() adds scale · lora_b @ lora_a."""
    folder = tmp_path / "switch"
    folder.mkdir()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 4, 16, generator=g), torch.randn(3, 24, 4, generator=g)
    save_file({"model.layers.0.mlp.switch_mlp.up_proj.lora_a": a, "model.layers.0.mlp.switch_mlp.up_proj.lora_b": b},
              folder / "adapters.safetensors")  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(CONFIG))
    adapter = load_adapter(folder)
    assert len(adapter) == 3 and adapter.summary()["expert"].tolist() == [0, 1, 2]
    fused = 20.0 * b @ a  # (E, d_out, d_in), as LoRASwitchLinear.fuse
    for e in range(3):
        m = adapter.module(f"model.layers.0.mlp.switch_mlp.up_proj[expert {e}]")
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), fused[e])
