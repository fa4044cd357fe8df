"""The down/up namings diffusers and its training scripts wrote before they moved to PEFT's lora_A/lora_B:

    <m>.processor.to_q_lora.down.weight   attention-processor LoRA (diffusers < 0.21, AttnProcsLayers)
    <m>.self_attn.to_q_lora.down.weight   the same, patched into a CLIP text encoder (-> q_proj, out_proj)
    <m>.to_q.lora.down.weight             LoRACompatibleLinear (diffusers 0.21 .. 0.25)
    <m>.lora_linear_layer.down.weight     patched text-encoder projections (same era)

with `.up.weight` for B. Each is a LoRALinearLayer: down (r, d_in), up (d_out, r), and
`up(down(x)) * network_alpha / rank` only when network_alpha was given, which was never saved: ΔW = up @ down
(scaling 1, the format's own rule) unless the file carries `<m>.alpha` tensors.
Source: diffusers src/diffusers/utils/state_dict_utils.py (UNET_TO_DIFFUSERS maps `.to_out_lora` to
`.to_out.0`, DIFFUSERS_OLD_TO_PEFT maps a text encoder's `.to_q_lora` to `.q_proj` and `.to_out_lora` to
`.out_proj`, DIFFUSERS_TO_PEFT `.lora_linear_layer`) and src/diffusers/models/lora.py (LoRALinearLayer). Newer diffusers files use PEFT keys (read as `peft`).
"""

from __future__ import annotations

import re

from asymviz.adapters.kohya import read_down_up
from asymviz.adapters.model import LoraAdapter

FORMAT = "diffusers"
_KEY = re.compile(
    r"^(?P<module>.+?)(?:(?:\.processor)?\.(?P<proj>to_q|to_k|to_v|to_out)_lora|\.lora|\.lora_linear_layer)"
    r"\.(?P<part>down|up)\.weight$"
)
_ALPHA = re.compile(r"^(?P<module>.+)\.alpha$")


def detect(keys, config: dict | None) -> bool:
    return any(_KEY.match(k) for k in keys)


_CLIP = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
_UNET = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"}


def module_of(m: re.Match) -> str:
    """The adapted module: a UNet's `<m>.processor.to_out_lora` -> `<m>.to_out.0`, a text encoder's
    `<m>.self_attn.to_q_lora` -> `<m>.self_attn.q_proj` (the two mappings of state_dict_utils.py)."""
    proj, module = m.group("proj"), m.group("module")
    if proj is None:
        return module
    names = _CLIP if module.endswith("self_attn") else _UNET
    return f"{module}.{names[proj]}"


def read(reader, config: dict | None, source: str, **_) -> LoraAdapter:
    return read_down_up(reader, source, FORMAT, _KEY, _ALPHA, ("down", "up"), module_of=module_of)
