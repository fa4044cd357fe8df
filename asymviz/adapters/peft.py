"""The PEFT reader: `lora_A` / `lora_B` keys (with `base_model.model.` prefixes, adapter names, embedding
LoRA, DoRA magnitude vectors) -> ModuleSpecs, checked against each other and against adapter_config.json.

Shapes are checked, never guessed: A is (r, d_in) (conv kernels flattened into d_in, as PEFT does), B is
(d_out, r); the scaling is lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA, per module through
rank_pattern / alpha_pattern (see asymviz.adapters.config). `modules_to_save` weights and lora biases are
listed in `extras`, never treated as LoRA.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.model import LoraAdapter, ModuleSpec, module_order
from asymviz.adapters.tensors import DictReader
from asymviz.errors import AdapterError

if TYPE_CHECKING:
    import torch

PREFIX = "base_model.model."
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"}

_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_embedding_A|lora_embedding_B|lora_A|lora_B|lora_magnitude_vector)"
    r"(?:\.(?P<rest>.+))?$"
)
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save\.[^.]+\.")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,300}$")  # module names end up in tables, plots and HTML


def from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config: AdapterConfig | Mapping | None = None,
    source: str = "<state dict>",
    adapter_name: str | None = None,
) -> LoraAdapter:
    """Build a LoraAdapter from PEFT-format tensors in memory (e.g. `get_peft_model_state_dict(model)`)."""
    if isinstance(config, Mapping):
        config = AdapterConfig.from_dict(dict(config), source=source)
    return build(DictReader(state_dict, source), config, source, adapter_name)


def module_name(key: str) -> str:
    """PEFT key -> module name: drop `base_model.model.` and the LoRA suffix."""
    key = key.removeprefix(PREFIX)
    m = _LORA_KEY.match(key)
    return m.group("module") if m else key


def parse_layer(name: str) -> int | None:
    """The first integer component of a dotted module name (the block index), or None."""
    for part in name.split("."):
        if part.isdigit():
            return int(part)
    return None


def build(reader, config: AdapterConfig | None, source: str, adapter_name: str | None) -> LoraAdapter:
    """Group a reader's keys into modules and check them; raises AdapterError naming the first problem."""
    groups: dict[str, dict[str, str]] = {}
    extras: dict[str, tuple[int, ...]] = {}
    names_seen: set[str] = set()
    for key in reader.keys():
        short = key.removeprefix(PREFIX)
        m = _LORA_KEY.match(short)
        if not m:
            extras[_MODULES_TO_SAVE.sub(".", short)] = reader.shape(key)
            continue
        module, part, rest = m.group("module"), m.group("part"), m.group("rest")
        if not _SAFE_NAME.match(module):
            raise AdapterError(f"{source}: key {key[:80]!r} is not a module name (only letters, digits, _ . - allowed)")
        # rest is one of: None, "weight", "bias", "<adapter>", "<adapter>.weight", "<adapter>.bias"
        pieces = rest.split(".") if rest else []
        param = pieces.pop() if pieces and pieces[-1] in ("weight", "bias") else None
        if len(pieces) > 1:
            extras[short] = reader.shape(key)
            continue
        name_in_key = pieces[0] if pieces else None
        if name_in_key is not None:
            names_seen.add(name_in_key)
            if adapter_name is not None and name_in_key != adapter_name:
                continue
        if param == "bias":  # lora_bias=True: a bias on lora_B; not part of B·A
            extras[short] = reader.shape(key)
            continue
        slot = {"lora_A": "A", "lora_embedding_A": "A", "lora_B": "B", "lora_embedding_B": "B"}.get(part, "M")
        group = groups.setdefault(module, {})
        if slot in group:
            raise AdapterError(
                f"{source}: module {module!r} has several {part} tensors (keys for several adapters: "
                f"{', '.join(sorted(names_seen))}); choose one with adapter_name="
            )
        group[slot] = key
        if slot != "M":
            group["embedding" if part.startswith("lora_embedding") else "linear"] = "1"
    if adapter_name is not None and names_seen and adapter_name not in names_seen:
        raise AdapterError(f"{source}: no adapter named {adapter_name!r} (found: {', '.join(sorted(names_seen))})")
    if not groups:
        sample = ", ".join(list(reader.keys())[:3]) or "none"
        raise AdapterError(f"{source}: no LoRA weights found (no lora_A/lora_B keys; first keys: {sample})")

    problems: list[str] = []
    if config is None:
        problems.append(f"{source}: no adapter_config.json, so lora_alpha is unknown: scaling 1 is used for ΔW")
    specs = [_spec(name, keys, reader, config, source) for name, keys in groups.items()]
    specs.sort(key=module_order)
    if config is not None and config.use_dora and not any(s.magnitude_key for s in specs):
        problems.append(f"{source}: the config says use_dora but the file has no lora_magnitude_vector")
    return LoraAdapter(tuple(specs), reader, config, source, extras, problems)


def _spec(name: str, keys: dict[str, str], reader, config: AdapterConfig | None, source: str) -> ModuleSpec:
    if "A" not in keys or "B" not in keys:
        have, missing = ("lora_A", "lora_B") if "A" in keys else ("lora_B", "lora_A")
        if "A" not in keys and "B" not in keys:
            raise AdapterError(f"{source}: module {name!r} has a magnitude vector but no lora_A/lora_B")
        raise AdapterError(f"{source}: module {name!r} has {have} but no {missing}")
    if "embedding" in keys and "linear" in keys:
        raise AdapterError(f"{source}: module {name!r} mixes lora_embedding and lora_A/B keys")
    a_shape, b_shape = reader.shape(keys["A"]), reader.shape(keys["B"])
    for key in (keys["A"], keys["B"]):
        if reader.dtype(key) not in FLOAT_DTYPES:
            raise AdapterError(f"{source}: {key} has dtype {reader.dtype(key)}, not a floating-point type")
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise AdapterError(f"{source}: module {name!r}: lora_A {list(a_shape)} and lora_B {list(b_shape)} must be matrices")
    if len(b_shape) > 2 and any(d != 1 for d in b_shape[2:]):
        raise AdapterError(f"{source}: module {name!r}: lora_B {list(b_shape)} has a kernel larger than 1")
    r = a_shape[0]
    d_in = math.prod(a_shape[1:])  # conv: in_channels x kernel
    d_out = b_shape[0]
    if b_shape[1] != r:
        raise AdapterError(
            f"{source}: module {name!r}: mismatched ranks: lora_A {list(a_shape)} has rank {r} "
            f"but lora_B {list(b_shape)} has rank {b_shape[1]}"
        )
    if r == 0 or d_in == 0 or d_out == 0:
        raise AdapterError(f"{source}: module {name!r} has an empty factor (A {list(a_shape)}, B {list(b_shape)})")
    if config is not None:
        expected = config.rank_for(name)
        if r != expected:
            raise AdapterError(
                f"{source}: module {name!r}: the weights have rank {r} but the config gives r={expected}"
                + (" (rank_pattern)" if expected != config.r else "")
            )
        alpha, scaling = config.alpha_for(name), config.scaling_for(name, r)
        fan = config.fan_in_fan_out and "embedding" not in keys
    else:
        alpha, scaling, fan = None, 1.0, False
    mag = keys.get("M")
    if mag is not None:
        numel = math.prod(reader.shape(mag))
        if numel != d_out:
            raise AdapterError(
                f"{source}: module {name!r}: DoRA magnitude has {numel} entries but lora_B has d_out={d_out}"
            )
    return ModuleSpec(
        name=name,
        layer=parse_layer(name),
        kind=name.rsplit(".", 1)[-1],
        r=r,
        d_in=d_in,
        d_out=d_out,
        alpha=alpha,
        scaling=scaling,
        a_key=keys["A"],
        b_key=keys["B"],
        magnitude_key=mag,
        embedding="embedding" in keys,
        fan_in_fan_out=fan,
        dtype=reader.dtype(keys["A"]),
    )


