"""kohya sd-scripts / LyCORIS LoRA and LoCon: `<name>.lora_down.weight` (r, d_in[, k, k]),
`<name>.lora_up.weight` (d_out, r[, 1, 1]), `<name>.alpha` (0-d), names like `lora_unet_..._to_q` and
`lora_te_text_model_encoder_layers_0_self_attn_q_proj`. A = lora_down (conv kernels flattened into d_in),
B = lora_up, ΔW = (alpha / r) · up @ down.

Rules, from kohya-ss/sd-scripts networks/lora.py: LoRAModule.forward scales by `self.scale = alpha /
lora_dim`; create_network_from_weights "support old LoRA without alpha": a module without an `.alpha`
tensor gets alpha = lora_dim (scale 1). train_network.py writes `ss_network_dim` / `ss_network_alpha` into
the safetensors `__metadata__`; asymviz uses them only where a module has no `.alpha` tensor (a file
converted without its alphas), and says so. LyCORIS LoCon (lycoris/modules/locon.py) uses the same keys;
its Tucker variant (`lora_mid`) and the other LyCORIS methods are named by asymviz.adapters.unsupported.
"""

from __future__ import annotations

import re

from asymviz.adapters.model import LoraAdapter, ModuleSpec, module_order
from asymviz.adapters.pairs import check_pair, header_metadata, layer_and_kind, metadata_alpha, read_alpha
from asymviz.errors import AdapterError

FORMAT = "kohya"
_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_down|lora_up)\.weight$")
_ALPHA = re.compile(r"^(?P<module>.+)\.alpha$")


def detect(keys, config: dict | None) -> bool:
    return any(_KEY.match(k) for k in keys)


def read(reader, config: dict | None, source: str, **_) -> LoraAdapter:
    return read_down_up(reader, source, FORMAT, _KEY, _ALPHA, ("lora_down", "lora_up"))


def read_down_up(reader, source: str, fmt: str, key_re: re.Pattern, alpha_re: re.Pattern, labels: tuple[str, str],
                 module_of=lambda m: m.group("module")) -> LoraAdapter:  # fmt: skip
    """Group a down/up file's keys into modules: `key_re` gives a key's module (through `module_of`) and its
    `part` (labels[0] is the down factor A, labels[1] the up factor B), `alpha_re` a module's 0-d alpha; every
    other key is an extra. Then build_pairs (shared by kohya and the diffusers namings)."""
    pairs: dict[str, dict[str, str]] = {}
    alphas: dict[str, str] = {}
    extras: dict[str, tuple[int, ...]] = {}
    for key in reader.keys():
        m, a = key_re.match(key), alpha_re.match(key)
        if m:
            pairs.setdefault(module_of(m), {})["A" if m.group("part") == labels[0] else "B"] = key
        elif a:
            alphas[a.group("module")] = key
        else:
            extras[key] = reader.shape(key)
    return build_pairs(reader, pairs, alphas, source, fmt, header_metadata(reader), labels,
                       default="format default", extras=extras)  # fmt: skip


def build_pairs(
    reader,
    pairs: dict[str, dict[str, str]],
    alphas: dict[str, str],
    source: str,
    format: str,
    meta: dict[str, str],
    labels: tuple[str, str],
    default: str,
    extras: dict[str, tuple[int, ...]] | None = None,
) -> LoraAdapter:
    """ModuleSpecs for down/up pairs {module: {"A": down key, "B": up key}}.

    The scaling of each module is, in order: α/r from its `.alpha` tensor; α/r from the header's
    ss_network_alpha; else 1 — kohya's own rule for a module without alpha, and diffusers' for a
    LoRALinearLayer without network_alpha — recorded as `default` ("format default" or "unknown").
    """
    problems: list[str] = []
    meta_alpha = metadata_alpha(meta)
    specs, used = [], set()
    for name, keys in pairs.items():
        if set(keys) != {"A", "B"}:
            have, missing = (labels[0], labels[1]) if "A" in keys else (labels[1], labels[0])
            raise AdapterError(f"{source}: module {name!r} has {have} but no {missing}")
        r, d_in, d_out = check_pair(reader, name, keys["A"], keys["B"], source, *labels)
        if name in alphas:
            alpha, how = read_alpha(reader, alphas[name], source), "alpha tensor"
        elif meta_alpha is not None:
            alpha, how = meta_alpha[0], "metadata"
        else:
            alpha, how = None, default
        used.add(how)
        layer, kind = layer_and_kind(name)
        specs.append(
            ModuleSpec(
                name=name, layer=layer, kind=kind, r=r, d_in=d_in, d_out=d_out, alpha=alpha,
                scaling=alpha / r if alpha is not None else 1.0, a_key=keys["A"], b_key=keys["B"],
                magnitude_key=None, embedding=False, fan_in_fan_out=False, dtype=reader.dtype(keys["A"]),
            )
        )  # fmt: skip
    if "metadata" in used:
        problems.append(
            f"{source}: {'some modules have' if 'alpha tensor' in used else 'no module has'} an .alpha tensor; "
            f"ss_network_alpha={meta_alpha[0]:g} from the file's metadata is used there"
        )
    if "unknown" in used:
        problems.append(
            f"{source}: no alpha tensor or metadata, so alpha is unknown: scaling 1 is used for ΔW"
        )
    if meta_alpha is not None and meta_alpha[1] is not None and any(s.r != meta_alpha[1] for s in specs):
        problems.append(
            f"{source}: metadata says ss_network_dim={meta_alpha[1]} but module ranks differ; the weights' ranks are used"
        )
    specs.sort(key=module_order)
    how = "alpha tensor" if "alpha tensor" in used else "metadata" if "metadata" in used else default
    return LoraAdapter(tuple(specs), reader, None, source, extras or {}, problems, format, how)
