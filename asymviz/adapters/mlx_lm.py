"""mlx-lm adapter folders: `adapters.safetensors` + `adapter_config.json`.

mlx-lm's LoRALinear (ml-explore/mlx-lm mlx_lm/tuner/lora.py) stores lora_a (d_in, r) and lora_b (r, d_out),
transposed relative to PEFT, and computes y = W x + scale · (x @ lora_a) @ lora_b, so
ΔW = scale · (lora_a @ lora_b)ᵀ = scale · B @ A with A = lora_aᵀ (r, d_in), B = lora_bᵀ (d_out, r).
`scale` is `lora_parameters.scale` in adapter_config.json (mlx_lm/tuner/utils.py linear_to_lora_layers);
it multiplies ΔW directly (no division by r). Early mlx-examples configs also carry `alpha`, for a
LoRALinear whose scale was `scale * (alpha / r)`: that rule is applied when `alpha` is present. Keys: `model.layers.0.self_attn.q_proj.lora_a`, no `.weight`.
LoRASwitchLinear (LoRA on MoE SwitchLinear experts) stores lora_a (E, r, d_in) and lora_b (E, d_out, r):
one module per expert, `<module>[expert e]`, ΔW_e = scale · lora_b[e] @ lora_a[e] (its fuse()).
DoRA (`fine_tune_type: dora`, an `.m` magnitude) is refused by name; without a config the scale is unknown.
"""

from __future__ import annotations

import math
import re

from asymviz.adapters.model import LoraAdapter, ModuleSpec, module_order
from asymviz.adapters.pairs import FLOAT_DTYPES, check_pair, layer_and_kind
from asymviz.errors import AdapterError

FORMAT = "mlx-lm"
_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_a|lora_b)$")


def detect(keys, config: dict | None) -> bool:
    return any(_KEY.match(k) for k in keys) or "lora_parameters" in (config or {})


class _Transposed:
    """Answers shape() as PEFT's orientation so the shared pair checks apply."""

    def __init__(self, reader):
        self.reader = reader

    def shape(self, key):
        return tuple(reversed(self.reader.shape(key)))

    def dtype(self, key):
        return self.reader.dtype(key)


def scale_from(config: dict | None, source: str) -> float | None:
    if config is None:
        return None
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise AdapterError(
            f"{source}: mlx-lm fine_tune_type {kind!r}; asymviz reads mlx-lm LoRA adapters only"
        )
    params = config.get("lora_parameters")
    if not isinstance(params, dict):
        raise AdapterError(f"{source}: mlx-lm adapter_config.json: lora_parameters must be an object")
    if "scale" not in params:  # mlx-lm itself needs it (linear_to_lora_layers reads config["scale"])
        return None
    scale = params["scale"]
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale):
        raise AdapterError(f"{source}: lora_parameters.scale must be a finite number, got {scale!r}")
    if "alpha" in params:  # early mlx-examples LoRALinear: self.scale = scale * (alpha / r)
        alpha, rank = params["alpha"], params.get("rank")
        if not isinstance(alpha, int | float) or not isinstance(rank, int) or rank <= 0:
            raise AdapterError(f"{source}: lora_parameters alpha={alpha!r} needs a positive integer rank")
        return float(scale) * alpha / rank
    return float(scale)


def read(reader, config: dict | None, source: str, **_) -> LoraAdapter:
    scale = scale_from(config, source)
    pairs: dict[str, dict[str, str]] = {}
    extras: dict[str, tuple[int, ...]] = {}
    for key in reader.keys():
        m = _KEY.match(key)
        if m:
            pairs.setdefault(m.group("module"), {})[m.group("part")] = key
        elif key.endswith(".m"):
            raise AdapterError(f"{source}: {key} is an mlx-lm DoRA magnitude; asymviz reads mlx-lm LoRA only")
        else:
            extras[key] = reader.shape(key)
    if not pairs:
        raise AdapterError(f"{source}: an mlx-lm config but no .lora_a/.lora_b tensors")
    view, specs = _Transposed(reader), []
    rank = (config or {}).get("lora_parameters", {}).get("rank")
    for name, keys in pairs.items():
        if set(keys) != {"lora_a", "lora_b"}:
            raise AdapterError(f"{source}: module {name!r} has {next(iter(keys))} only")
        a_shape, b_shape = reader.shape(keys["lora_a"]), reader.shape(keys["lora_b"])
        if len(a_shape) == 3 and len(b_shape) == 3:
            specs.extend(_switch_specs(reader, name, keys, scale, rank, source))
            continue
        for key in keys.values():
            if len(reader.shape(key)) != 2:
                raise AdapterError(f"{source}: {key} {list(reader.shape(key))} must be a matrix")
        r, d_in, d_out = check_pair(view, name, keys["lora_a"], keys["lora_b"], source, "lora_aᵀ", "lora_bᵀ")
        if rank is not None and r != rank:
            raise AdapterError(f"{source}: module {name!r} has rank {r} but lora_parameters.rank is {rank}")
        layer, kind = layer_and_kind(name)
        specs.append(
            ModuleSpec(
                name=name, layer=layer, kind=kind, r=r, d_in=d_in, d_out=d_out, alpha=None,
                scaling=scale if scale is not None else 1.0, a_key=keys["lora_a"], b_key=keys["lora_b"],
                magnitude_key=None, embedding=False, fan_in_fan_out=False, dtype=reader.dtype(keys["lora_a"]),
                transposed=True,
            )
        )  # fmt: skip
    why = "without adapter_config.json" if config is None else "whose config has no lora_parameters.scale"
    problems = [] if scale is not None else [
        f"{source}: mlx-lm weights {why}, so the scale is unknown: scaling 1 is used"
    ]  # fmt: skip
    specs.sort(key=module_order)
    return LoraAdapter(
        tuple(specs),
        reader,
        None,
        source,
        extras,
        problems,
        FORMAT,
        "config" if scale is not None else "unknown",
    )


def _switch_specs(reader, name, keys, scale, rank, source) -> list[ModuleSpec]:
    """LoRASwitchLinear (mlx-lm's LoRA on MoE SwitchLinear experts): lora_a (E, r, d_in), lora_b (E, d_out, r),
    PEFT's orientation per expert; fuse() adds scale · lora_b @ lora_a to each expert's (d_out, d_in) weight."""
    a_shape, b_shape = reader.shape(keys["lora_a"]), reader.shape(keys["lora_b"])
    n, r, d_in = a_shape
    if b_shape[0] != n or b_shape[2] != r:
        raise AdapterError(
            f"{source}: module {name!r}: switch LoRA lora_a {list(a_shape)} and lora_b {list(b_shape)} disagree"
        )
    if rank is not None and r != rank:
        raise AdapterError(f"{source}: module {name!r} has rank {r} but lora_parameters.rank is {rank}")
    for key in keys.values():
        if reader.dtype(key) not in FLOAT_DTYPES:
            raise AdapterError(f"{source}: {key} has dtype {reader.dtype(key)}, not a floating-point type")
    layer, kind = layer_and_kind(name)
    return [
        ModuleSpec(
            name=f"{name}[expert {e}]", layer=layer, kind=kind, r=r, d_in=d_in, d_out=b_shape[1], alpha=None,
            scaling=scale if scale is not None else 1.0, a_key=keys["lora_a"], b_key=keys["lora_b"],
            magnitude_key=None, embedding=False, fan_in_fan_out=False, dtype=reader.dtype(keys["lora_a"]),
            expert=e, num_experts=n, stacked=True,
        )
        for e in range(n)
    ]  # fmt: skip
