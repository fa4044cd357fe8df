"""kohya sd-scripts / LyCORIS LoCon files (kinds 2 and 5): lora_down/lora_up/alpha, conv LoRA flattened,
alpha from 0-d tensors or from `__metadata__`, kohya's rule for files without alpha."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from asymviz.adapters import load_adapter
from asymviz.errors import AdapterError

TE_Q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
UNET_CONV = "lora_unet_down_blocks_0_resnets_0_conv1"


def kohya_file(path, alpha=True, metadata=None, dtype=torch.float16):
    g = torch.Generator().manual_seed(0)
    t = {
        f"{TE_Q}.lora_down.weight": torch.randn(8, 32, generator=g),
        f"{TE_Q}.lora_up.weight": torch.randn(32, 8, generator=g),
        f"{UNET_CONV}.lora_down.weight": torch.randn(4, 6, 3, 3, generator=g),  # (r, c_in, k, k)
        f"{UNET_CONV}.lora_up.weight": torch.randn(10, 4, 1, 1, generator=g),  # (c_out, r, 1, 1)
    }
    t = {k: v.to(dtype) for k, v in t.items()}
    if alpha:
        t[f"{TE_Q}.alpha"] = torch.tensor(16.0)
        t[f"{UNET_CONV}.alpha"] = torch.tensor(1.0)
    save_file(t, path, metadata=metadata)
    return t


def kohya_merge(down, up, scale):
    """ΔW as sd-scripts networks/merge_lora.py computes it (conv 3×3: conv2d of down by up)."""
    down, up = down.float(), up.float()
    if down.dim() == 2:
        return scale * up @ down
    return scale * torch.nn.functional.conv2d(down.permute(1, 0, 2, 3), up).permute(1, 0, 2, 3)


def test_alpha_tensors_and_conv(tmp_path):
    t = kohya_file(tmp_path / "lora.safetensors")
    adapter = load_adapter(tmp_path / "lora.safetensors")
    assert adapter.format == "kohya" and adapter.scaling_source == "alpha tensor" and not adapter.problems
    q, conv = adapter.module(TE_Q), adapter.module(UNET_CONV)
    assert (q.scaling, q.layer, q.kind) == (2.0, 0, "q_proj")  # alpha 16 / r 8
    assert (conv.scaling, conv.d_in, conv.d_out) == (0.25, 54, 10)  # alpha 1 / r 4; 6·3·3 inputs
    torch.testing.assert_close(
        torch.from_numpy(q.delta_weight()),
        kohya_merge(t[f"{TE_Q}.lora_down.weight"], t[f"{TE_Q}.lora_up.weight"], 2.0),
    )
    expected = kohya_merge(t[f"{UNET_CONV}.lora_down.weight"], t[f"{UNET_CONV}.lora_up.weight"], 0.25)
    torch.testing.assert_close(
        torch.from_numpy(conv.delta_weight()), expected.reshape(10, -1), rtol=1e-4, atol=1e-5
    )


def test_metadata_alpha_when_no_alpha_tensor(tmp_path):
    kohya_file(
        tmp_path / "m.safetensors", alpha=False, metadata={"ss_network_dim": "8", "ss_network_alpha": "4"}
    )
    adapter = load_adapter(tmp_path / "m.safetensors")
    assert adapter.scaling_source == "metadata"
    assert adapter.spec(TE_Q).scaling == 0.5 and adapter.spec(UNET_CONV).scaling == 1.0  # 4/8, 4/4
    assert any("ss_network_alpha=4" in p for p in adapter.problems)
    assert any("ss_network_dim=8 but module ranks differ" in p for p in adapter.problems)


def test_no_alpha_follows_kohyas_rule(tmp_path):
    kohya_file(tmp_path / "old.safetensors", alpha=False)
    adapter = load_adapter(tmp_path / "old.safetensors")
    assert adapter.scaling_source == "format default"  # sd-scripts: alpha = lora_dim, scale 1
    assert {s.scaling for s in adapter.modules} == {1.0} and not adapter.problems


def test_peft_keys_with_alpha_tensors(make_adapter):
    """Flux/SDXL LoRAs in PEFT naming with kohya-style `.alpha` (ai-toolkit): scaling α/r without a config."""
    from conftest import random_factors

    A, B = random_factors(4, 16, 24)
    folder = make_adapter({"transformer.single_transformer_blocks.0.attn.to_q": (A, B)}, config=False)
    from safetensors.torch import load_file

    t = load_file(folder / "adapter_model.safetensors")
    t["base_model.model.transformer.single_transformer_blocks.0.attn.to_q.alpha"] = torch.tensor(16.0)
    save_file(t, folder / "adapter_model.safetensors")
    adapter = load_adapter(folder)
    assert adapter.format == "peft" and adapter.scaling_source == "alpha tensor" and not adapter.problems
    (m,) = adapter
    assert m.scaling == 4.0
    torch.testing.assert_close(torch.from_numpy(m.delta_weight()), 4.0 * B @ A)


@pytest.mark.parametrize(
    "key, message",
    [
        ("lora_unet_x.hada_w1_a", "LoHa \\(LyCORIS\\) adapter: not a low-rank B·A update"),
        ("lora_unet_x.lokr_w1", "LoKr \\(LyCORIS\\) adapter"),
        ("lora_unet_x.lora_mid.weight", "Tucker core"),
        ("base_model.model.q.vera_lambda_b.default", "VeRA adapter"),
        ("base_model.model.q.ia3_l.default", "\\(IA\\)³ adapter"),
        ("lora_unet_x.diff", "full weight difference"),
    ],
)
def test_other_methods_are_named(tmp_path, key, message):
    save_file(
        {key: torch.ones(2, 2), "lora_unet_x.lora_down.weight": torch.ones(2, 2)}, tmp_path / "x.safetensors"
    )
    with pytest.raises(AdapterError, match=message):
        load_adapter(tmp_path / "x.safetensors")


def test_missing_partner(tmp_path):
    save_file({f"{TE_Q}.lora_down.weight": torch.ones(2, 4)}, tmp_path / "x.safetensors")
    with pytest.raises(AdapterError, match="has lora_down but no lora_up"):
        load_adapter(tmp_path / "x.safetensors")


def test_peft_keys_with_kohya_metadata(make_adapter):
    from conftest import random_factors
    from safetensors.torch import load_file

    A, B = random_factors(4, 16, 24)
    folder = make_adapter({"transformer.blocks.0.attn.to_q": (A, B)}, config=False)
    save_file(load_file(folder / "adapter_model.safetensors"), folder / "adapter_model.safetensors",
              metadata={"ss_network_dim": "4", "ss_network_alpha": "2"})  # fmt: skip
    adapter = load_adapter(folder)
    assert adapter.scaling_source == "metadata" and adapter.modules[0].scaling == 0.5


def test_float8_alpha_is_refused_not_read_as_bytes(tmp_path):
    """An alpha of 2.0 stored F8_E4M3 is the byte 0x40: read as raw bytes it became alpha = 64, a scaling 32x
    too large with no warning. numpy cannot decode float8, so the file is refused by name."""
    path = tmp_path / "f8.safetensors"
    t = kohya_file(path, dtype=torch.float32)
    t[f"{TE_Q}.alpha"] = torch.tensor(2.0).to(torch.float8_e4m3fn)
    save_file(t, path)
    with pytest.raises(AdapterError, match="F8_E4M3"):
        load_adapter(path)
