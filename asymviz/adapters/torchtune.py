"""torchtune LoRA checkpoints: `adapter_model.pt` (or `adapter_N.pt`) with torchtune's own names,
`layers.0.attn.q_proj.lora_a.weight` (r, d_in) and `layers.0.attn.q_proj.lora_b.weight` (d_out, r).

torchtune's LoRALinear (torchtune/modules/peft/lora.py) is x -> W x + (alpha / rank) · lora_b(lora_a(x)),
lora_a = nn.Linear(in_dim, rank), lora_b = nn.Linear(rank, out_dim): A = lora_a.weight, B = lora_b.weight,
already PEFT's orientation. Its recipes build the adapter config in PEFT's schema (`r`, `lora_alpha`,
`target_modules`, `peft_type: LORA`; recipes/lora_finetune_single_device.py) and FullModelHFCheckpointer
(torchtune/training/checkpointing/_checkpointer.py) writes it as `adapter_config.json` beside
`adapter_model.pt` and a PEFT-converted `adapter_model.safetensors` (convert_weights.tune_to_peft_adapter_weights,
which also permutes q/k rows for HF's rotary layout). In such a folder the PEFT file is read first; point at
`adapter_model.pt` to read torchtune's own layout (same spectra: the permutation only reorders B's rows).
Without a config α is unknown. The file is read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

import re

from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.model import LoraAdapter, ModuleSpec, module_order
from asymviz.adapters.pairs import check_pair, layer_and_kind
from asymviz.errors import AdapterError

FORMAT = "torchtune"
_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_a|lora_b)\.weight$")


def detect(keys, config: dict | None) -> bool:
    return any(_KEY.match(k) for k in keys)


def read(reader, config: dict | None, source: str, strict: bool = True, **_) -> LoraAdapter:
    cfg = AdapterConfig.from_dict(config, source=source, strict=strict) if config is not None else None
    pairs: dict[str, dict[str, str]] = {}
    extras: dict[str, tuple[int, ...]] = {}
    for key in reader.keys():
        m = _KEY.match(key)
        if m:
            pairs.setdefault(m.group("module"), {})[m.group("part")] = key
        elif key.endswith(".magnitude"):  # torchtune DoRALinear
            raise AdapterError(
                f"{source}: {key} is a torchtune DoRA magnitude; asymviz reads torchtune LoRA only"
            )
        else:
            extras[key] = reader.shape(key)
    specs = []
    for name, keys in pairs.items():
        if set(keys) != {"lora_a", "lora_b"}:
            raise AdapterError(f"{source}: module {name!r} has {next(iter(keys))} only")
        r, d_in, d_out = check_pair(reader, name, keys["lora_a"], keys["lora_b"], source, "lora_a", "lora_b")
        if cfg is not None and r != cfg.rank_for(name):
            raise AdapterError(
                f"{source}: module {name!r} has rank {r} but the config gives r={cfg.rank_for(name)}"
            )
        layer, kind = layer_and_kind(name)
        specs.append(
            ModuleSpec(
                name=name, layer=layer, kind=kind, r=r, d_in=d_in, d_out=d_out,
                alpha=cfg.alpha_for(name) if cfg else None, scaling=cfg.scaling_for(name, r) if cfg else 1.0,
                a_key=keys["lora_a"], b_key=keys["lora_b"], magnitude_key=None, embedding=False,
                fan_in_fan_out=False, dtype=reader.dtype(keys["lora_a"]),
            )
        )  # fmt: skip
    problems = list(cfg.warnings) if cfg else [
        f"{source}: torchtune weights without adapter_config.json, so lora_alpha is unknown: scaling 1 is used"
    ]  # fmt: skip
    specs.sort(key=module_order)
    return LoraAdapter(
        tuple(specs), reader, cfg, source, extras, problems, FORMAT, "config" if cfg else "unknown"
    )
