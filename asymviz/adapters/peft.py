"""The PEFT reader: `lora_A` / `lora_B` keys (with `base_model.model.` prefixes, adapter names, embedding
LoRA, DoRA magnitude vectors, AdaLoRA's `lora_E`, per-module `.alpha` tensors, LoRA on MoE expert
parameters) -> ModuleSpecs, checked against each other and against adapter_config.json.

Layouts read (format `peft`; `peft-legacy` when the config carries fields early PEFT wrote):
`<m>.lora_A.weight` (PEFT >= 0.3 save_pretrained), `<m>.lora_A.<adapter>.weight` (a raw model.state_dict()),
`<m>.lora_A` (ParameterDict layers: AdaLoRA), each with or without `base_model.model.`. A 0-d
`<m>.alpha` tensor beside the pair (ai-toolkit / kohya-converted Flux and SDXL LoRAs in PEFT naming) gives
scaling α/r when there is no config (kohya sd-scripts networks/lora.py: scale = alpha / lora_dim).
LoRA on MoE expert parameters (`target_parameters`, PEFT >= 0.17) stores one pair for all E experts:
lora_A (r·E, d_in) with rows grouped by expert, lora_B (d_out, r·E) with columns interleaved; it becomes one
module per expert, named `<module>.<param>[expert e]`, following peft/tuners/lora/layer.py
ParamWrapper.get_delta_weight (A.reshape(E, r, d_in), B.reshape(d_out, r, E)).

Shapes are checked, never guessed: A is (r, d_in) (conv kernels flattened into d_in, as PEFT does), B is
(d_out, r); the scaling is lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA, per module through
rank_pattern / alpha_pattern (see asymviz.adapters.config). `modules_to_save` weights and lora biases are
listed in `extras`, never treated as LoRA.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.model import LoraAdapter, ModuleSpec, module_order
from asymviz.adapters.pairs import FLOAT_DTYPES, check_pair, header_metadata, metadata_alpha, read_alpha
from asymviz.adapters.tensors import DictReader
from asymviz.errors import AdapterError

if TYPE_CHECKING:
    import torch

FORMAT = "peft"  # or "peft-legacy", decided from the config when building
PREFIX = "base_model.model."

_LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_embedding_A|lora_embedding_B|lora_A|lora_B|lora_magnitude_vector|lora_E)"
    r"(?:\.(?P<rest>.+))?$"
)
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save\.[^.]+\.")
_ALPHA_KEY = re.compile(r"^(?P<module>.+)\.alpha$")
_SLOTS = {"lora_A": "A", "lora_embedding_A": "A", "lora_B": "B", "lora_embedding_B": "B", "lora_E": "E"}


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


def detect(keys, config: dict | None) -> bool:
    """PEFT layout: some key has a `lora_A` / `lora_B` / `lora_embedding_A` part."""
    return any(_LORA_KEY.match(k.removeprefix(PREFIX)) for k in keys)


def build(
    reader,
    config: AdapterConfig | None,
    source: str,
    adapter_name: str | None,
    format: str | None = None,
) -> LoraAdapter:
    """Group a reader's keys into modules and check them; raises AdapterError naming the first problem.

    `config` is an AdapterConfig, or AdaLoRA's (asymviz.adapters.adalora), or None (α unknown unless the
    file carries `.alpha` tensors). `format` defaults to 'peft' ('peft-legacy' for an early-PEFT config).
    """
    groups: dict[str, dict[str, str]] = {}
    alphas: dict[str, str] = {}
    extras: dict[str, tuple[int, ...]] = {}
    names_seen: set[str] = set()
    for key in reader.keys():
        short = key.removeprefix(PREFIX)
        m = _LORA_KEY.match(short)
        if not m:
            a = _ALPHA_KEY.match(short)
            if a and math.prod(reader.shape(key)) == 1:
                alphas[a.group("module")] = key
            else:
                extras[_MODULES_TO_SAVE.sub(".", short)] = reader.shape(key)
            continue
        module, part, rest = m.group("module"), m.group("part"), m.group("rest")
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
        slot = _SLOTS.get(part, "M")
        group = groups.setdefault(module, {})
        if slot in group:
            raise AdapterError(
                f"{source}: module {module!r} has several {part} tensors (keys for several adapters: "
                f"{', '.join(sorted(names_seen))}); choose one with adapter_name="
            )
        group[slot] = key
        if slot in "AB":
            group["embedding" if part.startswith("lora_embedding") else "linear"] = "1"
    if adapter_name is not None and names_seen and adapter_name not in names_seen:
        raise AdapterError(
            f"{source}: no adapter named {adapter_name!r} (found: {', '.join(sorted(names_seen))})"
        )
    if not groups:
        sample = ", ".join(list(reader.keys())[:3]) or "none"
        raise AdapterError(f"{source}: no LoRA weights found (no lora_A/lora_B keys; first keys: {sample})")

    problems: list[str] = list(getattr(config, "warnings", ()))
    specs: list[ModuleSpec] = []
    alpha_used = False
    experts = _expert_params(groups, config)
    for name, keys in groups.items():
        alpha_key = alphas.get(name)
        spec = _spec(name, keys, reader, config, source, alpha_key, problems, name in experts)
        alpha_used = alpha_used or (config is None and alpha_key is not None)
        specs.extend(_split_experts(spec, experts.get(name), config, source) if name in experts else [spec])
    shared = sorted({n.replace(".base_layer", "") for n, p in experts.items() if p is None})
    if shared:
        problems.append(
            f"{source}: several target_parameters share {', '.join(shared)}; PEFT nests their wrappers in the base "
            "model's parameter order, which the file does not record, so those modules are named by wrapper "
            "(`experts`, `experts.base_layer`, ...) rather than by parameter"
        )
    if config is None and not experts:
        movable = [
            s.name for s in specs if s.name.rsplit(".", 1)[-1] == "experts" or ".experts.base_layer" in s.name
        ]
        if movable:
            raise AdapterError(
                f"{source}: {movable[0]!r} looks like LoRA on fused MoE expert parameters (PEFT target_parameters); "
                "without adapter_config.json the number of experts is unknown, so the experts cannot be separated"
            )
    meta = metadata_alpha(header_metadata(reader)) if config is None else None
    if meta is not None and any(s.alpha is None for s in specs):  # kohya's ss_network_alpha in the header
        specs = [
            s if s.alpha is not None else dataclasses.replace(s, alpha=meta[0], scaling=meta[0] / s.r)
            for s in specs
        ]
        problems.append(
            f"{source}: ss_network_alpha={meta[0]:g} from the file's metadata is used where there is no alpha tensor"
        )
        alpha_used = alpha_used or "metadata"
    if config is None:
        missing = sum(1 for s in specs if s.alpha is None)
        if missing:
            problems.append(
                f"{source}: no adapter_config.json and no alpha tensor for {missing} module(s), so lora_alpha is "
                "unknown: scaling 1 is used for ΔW there"
            )
    specs.sort(key=module_order)
    if config is not None and getattr(config, "use_dora", False) and not any(s.magnitude_key for s in specs):
        problems.append(f"{source}: the config says use_dora but the file has no lora_magnitude_vector")
    if format is None:
        format = "peft-legacy" if getattr(config, "legacy", False) else "peft"
    source_of_scaling = (
        "config" if config is not None else "alpha tensor" if alpha_used is True else alpha_used or "unknown"
    )
    return LoraAdapter(tuple(specs), reader, config, source, extras, problems, format, source_of_scaling)


def _spec(name, keys, reader, config, source, alpha_key, problems, experts=False) -> ModuleSpec:
    if "A" not in keys or "B" not in keys:
        have, missing = ("lora_A", "lora_B") if "A" in keys else ("lora_B", "lora_A")
        if "A" not in keys and "B" not in keys:
            raise AdapterError(f"{source}: module {name!r} has a magnitude vector but no lora_A/lora_B")
        raise AdapterError(f"{source}: module {name!r} has {have} but no {missing}")
    if "embedding" in keys and "linear" in keys:
        raise AdapterError(f"{source}: module {name!r} mixes lora_embedding and lora_A/B keys")
    a_shape, b_shape = reader.shape(keys["A"]), reader.shape(keys["B"])
    if len(b_shape) == 3 and len(a_shape) == 2 and a_shape[0] != b_shape[1] and a_shape[0] % b_shape[1] == 0:
        raise AdapterError(  # peft v0.2 MergedLinear: lora_B is a grouped Conv1d, one group per enabled slice
            f"{source}: module {name!r}: lora_A {list(a_shape)} and a grouped lora_B {list(b_shape)} are early PEFT's "
            "MergedLinear (enable_lora on a fused projection); asymviz cannot rebuild that ΔW"
        )
    r, d_in, d_out = check_pair(reader, name, keys["A"], keys["B"], source)
    if config is not None:
        expected = config.rank_for(name)
        if expected is not None and r != expected and not (experts and r % expected == 0):
            raise AdapterError(
                f"{source}: module {name!r}: the weights have rank {r} but the config gives r={expected}"
                + (" (rank_pattern)" if expected != config.r else "")
            )
        alpha, scaling = config.alpha_for(name), config.scaling_for(name, r)
        fan = config.fan_in_fan_out and "embedding" not in keys
        if alpha_key is not None and not math.isclose(read_alpha(reader, alpha_key, source), alpha):
            problems.append(
                f"{source}: {alpha_key} disagrees with the config's lora_alpha={alpha:g}; the config is used"
            )
    elif alpha_key is not None:  # kohya's rule: scale = alpha / lora_dim
        alpha = read_alpha(reader, alpha_key, source)
        scaling, fan = alpha / r, False
    else:
        alpha, scaling, fan = None, 1.0, False
    mag = keys.get("M")
    if mag is not None:
        numel = math.prod(reader.shape(mag))
        if numel != d_out:
            raise AdapterError(
                f"{source}: module {name!r}: DoRA magnitude has {numel} entries but lora_B has d_out={d_out}"
            )
    e_key = keys.get("E")
    if e_key is not None:
        if reader.dtype(e_key) not in FLOAT_DTYPES or math.prod(reader.shape(e_key)) != r:
            raise AdapterError(
                f"{source}: module {name!r}: AdaLoRA lora_E {list(reader.shape(e_key))} must hold r={r} numbers"
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
        e_key=e_key,
    )


def _expert_params(groups: dict, config) -> dict[str, str | None]:
    """Module -> targeted parameter name (None when several parameters share the module and the file
    cannot say which wrapper holds which: PEFT nests them in the base model's parameter order)."""
    targets = getattr(config, "target_parameters", ()) or ()
    out: dict[str, str | None] = {}
    for name in groups:
        bare = name.replace(".base_layer", "")
        params = [t.rpartition(".")[2] for t in targets if f"{bare}.{t.rpartition('.')[2]}".endswith(t)]
        if params:
            out[name] = params[0] if len(set(params)) == 1 else None
    return out


def _split_experts(spec: ModuleSpec, param: str | None, config, source: str) -> list[ModuleSpec]:
    """One ModuleSpec per expert of a target_parameters pair (see the module docstring for the layout)."""
    r = config.rank_for(spec.name)
    if spec.r % r:
        raise AdapterError(
            f"{source}: module {spec.name!r}: lora_A has {spec.r} rows, not a multiple of the config's r={r} "
            "(LoRA on MoE experts stores r·experts rows)"
        )
    n = spec.r // r
    label = f"{spec.name.replace('.base_layer', '')}.{param}" if param else spec.name
    kind = param or spec.name.replace(".base_layer", "").rsplit(".", 1)[-1]
    if n == 1:  # a plain parameter (or one expert): nothing to split
        return [spec]
    return [
        dataclasses.replace(
            spec, name=f"{label}[expert {e}]", kind=kind, r=r, scaling=config.scaling_for(spec.name, r),
            expert=e, num_experts=n,
        )
        for e in range(n)
    ]  # fmt: skip


def read(reader, config: dict | None, source: str, adapter_name: str | None = None, strict: bool = True, **_):
    """The PEFT reader as asymviz.adapters.formats calls it: `config` is adapter_config.json as a dict."""
    cfg = (
        AdapterConfig.from_dict(config, source="adapter_config.json", strict=strict)
        if config is not None
        else None
    )
    return build(reader, cfg, source, adapter_name)
