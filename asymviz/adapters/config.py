"""The part of a PEFT `adapter_config.json` that decides what a LoRA adapter's weights mean.

`AdapterConfig.from_dict` validates the JSON (a LoRA adapter, known fields, sane types) and answers the one
question the analyses need per module: its rank and its scaling (α/r, or α/√r with rsLoRA), honouring
`rank_pattern` and `alpha_pattern` the way PEFT matches them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asymviz.errors import AdapterError, display_name

# Every field a PEFT LoraConfig has had (0.6 .. 0.21), plus PeftConfig's own.
KNOWN_FIELDS = frozenset(
    """
    alora_invocation_tokens alpha_pattern arrow_config auto_mapping base_model_name_or_path bias corda_config
    ensure_weight_tying eva_config exclude_modules fan_in_fan_out inference_mode init_lora_weights kasa_config
    layer_replication layers_pattern layers_to_transform loftq_config lora_alpha lora_bias lora_dropout
    lora_ga_config megatron_config megatron_core modules_to_save monteclora_config peft_type peft_version
    qalora_group_size r rank_pattern revision runtime_config target_modules target_parameters task_type
    trainable_token_indices use_bdlora use_dora use_qalora use_rslora velora_config
    """.split()
)


# Fields that early PEFT (0.1 .. 0.2, the alpaca-lora era) wrote and later removed, with the value that means
# "plain LoRA". `merge_weights` only said whether to merge at eval time; `enable_lora` was MergedLinear's
# per-slice mask for a fused qkv projection (GPT-2 c_attn): any value but null changes ΔW, so it is refused.
# Source: peft v0.2.0 src/peft/tuners/lora.py (LoraConfig.enable_lora, merge_weights, MergedLinear).
OBSOLETE_FIELDS = {"merge_weights": None, "enable_lora": None}
MATH_FIELDS = {"enable_lora"}  # obsolete fields that change ΔW unless null

# Policy for fields no PEFT LoraConfig has (a newer PEFT, another tool): a null / false / empty / 0 value
# switches nothing on, so it is ignored with a warning; any other value may change ΔW, so it is refused
# by name (strict=False, a library-only switch, ignores it with a warning instead).


def _installed_peft_fields() -> frozenset[str]:
    try:
        import dataclasses

        from peft import LoraConfig
    except Exception:  # peft missing or broken: the static list above still applies
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(LoraConfig))


@dataclass(frozen=True)
class AdapterConfig:
    r: int  # default rank for modules not named in rank_pattern
    lora_alpha: float  # default α for modules not named in alpha_pattern
    use_rslora: bool = False  # scaling α/√r instead of α/r
    fan_in_fan_out: bool = False  # base weight stored (d_in, d_out), as GPT-2's Conv1D
    use_dora: bool = False  # weight-decomposed LoRA: a magnitude vector per module
    rank_pattern: dict[str, int] = field(default_factory=dict)  # module-name pattern -> rank
    alpha_pattern: dict[str, float] = field(default_factory=dict)  # module-name pattern -> α
    target_modules: tuple[str, ...] | str | None = None
    modules_to_save: tuple[str, ...] = ()
    base_model_name_or_path: str | None = None
    task_type: str | None = None
    target_parameters: tuple[str, ...] = ()  # LoRA on nn.Parameters (MoE experts), PEFT >= 0.17
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # ignored fields, said once per adapter

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or not 0 < self.r <= MAX_RANK:
            raise AdapterError(f"adapter_config.json: r must be a positive integer, got {self.r!r}")
        if not _is_number(self.lora_alpha):
            raise AdapterError(
                f"adapter_config.json: lora_alpha must be a finite number, got {self.lora_alpha!r}"
            )
        for name, pattern in (("rank_pattern", self.rank_pattern), ("alpha_pattern", self.alpha_pattern)):
            if not isinstance(pattern, dict):
                raise AdapterError(
                    f"adapter_config.json: {name} must be an object, got {type(pattern).__name__}"
                )
            for key, value in pattern.items():
                ok = (
                    (_is_int(value) and 0 < value <= MAX_RANK)
                    if name == "rank_pattern"
                    else _is_number(value)
                )
                if not isinstance(key, str) or not ok:
                    raise AdapterError(
                        f"adapter_config.json: {name}[{display_name(repr(key), 80)}] = "
                        f"{display_name(repr(value), 60)} is not valid"
                    )
                check_pattern_key(key, name)
        if len(self.rank_pattern) + len(self.alpha_pattern) > MAX_PATTERN_KEYS:
            raise AdapterError(
                f"adapter_config.json: more than {MAX_PATTERN_KEYS:,} rank/alpha pattern keys; refused"
            )

    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "adapter_config.json", strict: bool = True
    ) -> AdapterConfig:
        if not isinstance(data, dict):
            raise AdapterError(f"{source}: expected a JSON object, got {type(data).__name__}")
        peft_type = data.get("peft_type", "LORA")
        if str(peft_type).upper() != "LORA":
            raise AdapterError(f"{source}: peft_type is {peft_type!r}; asymviz reads LoRA adapters only")
        warnings = _field_warnings(data, source, strict)
        if "r" not in data:
            raise AdapterError(f"{source}: missing required field 'r'")
        for flag in ("use_rslora", "fan_in_fan_out", "use_dora"):
            if not isinstance(data.get(flag, False), bool | None):
                raise AdapterError(f"{source}: {flag} must be true or false, got {data[flag]!r}")
        targets = data.get("target_modules")
        modules_to_save = data.get("modules_to_save") or ()
        if not isinstance(modules_to_save, list | tuple):
            raise AdapterError(f"{source}: modules_to_save must be a list, got {modules_to_save!r}")
        return cls(
            r=data["r"],
            lora_alpha=data.get("lora_alpha", 8),
            use_rslora=bool(data.get("use_rslora") or False),
            fan_in_fan_out=bool(data.get("fan_in_fan_out") or False),
            use_dora=bool(data.get("use_dora") or False),
            rank_pattern=_pattern_field(data, "rank_pattern", source),
            alpha_pattern=_pattern_field(data, "alpha_pattern", source),
            target_modules=tuple(targets) if isinstance(targets, list | tuple) else targets,
            modules_to_save=tuple(modules_to_save),
            base_model_name_or_path=data.get("base_model_name_or_path"),
            task_type=data.get("task_type"),
            target_parameters=_string_list(data.get("target_parameters"), "target_parameters", source),
            raw=dict(data),
            warnings=warnings,
        )

    @classmethod
    def from_file(cls, path: str | Path, strict: bool = True) -> AdapterConfig:
        path = Path(path)
        return cls.from_dict(read_json(path), source=display_name(path.name), strict=strict)

    @property
    def legacy(self) -> bool:
        """Written by an early PEFT (it carries fields later removed)."""
        return any(k in OBSOLETE_FIELDS for k in self.raw)

    # ------------------------------------------------------------------------------------------------------
    def rank_for(self, module: str) -> int:
        """The rank PEFT gives `module` (a name like 'model.layers.0.self_attn.q_proj')."""
        key = _match_pattern(self.rank_pattern, module)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha_for(self, module: str) -> float:
        key = _match_pattern(self.alpha_pattern, module)
        return float(self.alpha_pattern[key] if key is not None else self.lora_alpha)

    def scaling_for(self, module: str, r: int) -> float:
        """α/r, or α/√r with rsLoRA, for a module of rank r."""
        alpha = self.alpha_for(module)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def read_json(path: str | Path) -> dict:
    """A config file as a dict: a regular file of at most MAX_CONFIG_BYTES, bounded nesting and numbers, valid
    UTF-8 JSON, an object. Raises AdapterError naming the file."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise AdapterError(f"{display_name(path.name)}: expected a JSON object, got {type(data).__name__}")
    return data


def _field_warnings(data: dict, source: str, strict: bool) -> tuple[str, ...]:
    """Apply the field policy above: warnings for ignored fields, AdapterError for ones that change ΔW."""
    warnings = []
    obsolete = sorted(k for k in data if k in OBSOLETE_FIELDS)
    changes = [k for k in obsolete if k in MATH_FIELDS and data[k] not in (None, False, [], {})]
    if changes:
        raise AdapterError(
            f"{source}: {', '.join(f'{k}={data[k]!r}' for k in changes)} is an early-PEFT MergedLinear setting "
            "(a LoRA on some slices of a fused projection); asymviz cannot rebuild that ΔW"
        )
    if obsolete:
        warnings.append(
            f"{source}: written by an early PEFT; obsolete field(s) {', '.join(obsolete)} ignored (they do not "
            "change ΔW)"
        )
    unknown = sorted(set(data) - KNOWN_FIELDS - set(OBSOLETE_FIELDS))
    active = [k for k in unknown if data[k] not in (None, False, 0, "", [], {})]
    if active:  # importing peft (and torch) costs seconds: only ask it about set fields the static list lacks
        known_to_peft = _installed_peft_fields()
        active = [k for k in active if k not in known_to_peft]
        unknown = [k for k in unknown if k not in known_to_peft]
    if active and strict:
        raise AdapterError(
            f"{source}: unknown config field(s) {', '.join(f'{k}={data[k]!r}' for k in active)[:300]} (not a PEFT "
            "LoraConfig field; a newer PEFT may use it to change ΔW, so asymviz refuses rather than guess)"
        )
    off = [k for k in unknown if k not in active]
    if off:
        warnings.append(f"{source}: unknown config field(s) {', '.join(off)} ignored (unset or off)")
    if active:
        warnings.append(
            f"{source}: unknown config field(s) {', '.join(active)} ignored (strict=False): ΔW may be wrong"
        )
    return tuple(warnings)


def _string_list(value, name: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise AdapterError(f"{source}: {name} must be a list of strings, got {value!r}")
    return tuple(value)


def _match_pattern(patterns: dict, module: str) -> str | None:
    # PEFT's get_pattern_key: the first key k with re.match(rf"(.*\.)?({k})$", module_name)
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


# ---- bounds on what a hostile config can make asymviz do (asymviz issue 11) ------------------------------
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_RANK = 1 << 20  # no weight matrix has a million-wide low rank
MAX_ABS_NUMBER = 1e15  # |lora_alpha| and pattern alphas: a scaling beyond this is not a trained adapter
MAX_PATTERN_KEYS = 1000
MAX_PATTERN_CHARS = 256
MAX_UNBOUNDED_REPEATS = 2  # per key; PEFT adds one more: (.*\.)? — measured 14 ms per 300-char name at 2+1
MAX_REPEAT_COUNT = 1000  # x{n,m}: larger bounds make compiling and matching slow


def _read_json(path: Path):
    from asymviz.adapters.files import read_bounded
    from asymviz.adapters.safetensors_file import parse_json

    raw = read_bounded(path, MAX_CONFIG_BYTES, "an adapter config")
    try:
        return parse_json(raw, display_name(path.name))
    except AdapterError as exc:  # keep the message users and tests know: "<file>: not valid JSON (...)"
        raise AdapterError(str(exc).replace(": not JSON (", ": not valid JSON (", 1)) from None


def _pattern_field(data: dict, name: str, source: str) -> dict:
    """rank_pattern / alpha_pattern as a dict, or AdapterError naming the field when it is not an object."""
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise AdapterError(
            f"{source}: {name} must be an object of pattern -> value, got {type(value).__name__}"
        )
    return dict(value)


def check_pattern_key(key: str, field: str) -> None:
    r"""Refuse a rank/alpha pattern key whose matching could take unbounded time.

    PEFT matches a key k with re.match(rf"(.*\.)?({k})$", module), a backtracking regex: a key with nested
    quantifiers ("(a+)+") is exponential in the module name's length, and each unbounded quantifier adds a
    power. Keys are parsed (not run) and refused when they are longer than MAX_PATTERN_CHARS, nest a
    quantifier inside another, have more than MAX_UNBOUNDED_REPEATS unbounded quantifiers, or a repeat count
    above MAX_REPEAT_COUNT. Plain module names ("model.layers.0.self_attn.q_proj") and the usual ".*q_proj" or
    "layers\.\d+\.mlp" pass.
    """
    label = f"adapter_config.json: {field} key {display_name(repr(key), 80)}"
    if len(key) > MAX_PATTERN_CHARS:
        raise AdapterError(f"{label} is longer than {MAX_PATTERN_CHARS} characters; refused")
    try:
        from re import _parser as sre_parse  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse
    try:
        parsed = sre_parse.parse(key)
        re.compile(key)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise AdapterError(f"{label} is not a valid pattern ({display_name(exc, 80)})") from None
    unbounded = _count_repeats(parsed, sre_parse, label, inside_repeat=False)
    if unbounded > MAX_UNBOUNDED_REPEATS:
        raise AdapterError(
            f"{label} has {unbounded} unbounded quantifiers (at most {MAX_UNBOUNDED_REPEATS}: matching "
            "could take very long); refused"
        )


def _count_repeats(items, sre_parse, label: str, inside_repeat: bool) -> int:
    const = sre_parse
    repeats = {const.MAX_REPEAT, const.MIN_REPEAT, getattr(const, "POSSESSIVE_REPEAT", None)}
    count = 0
    for op, arg in items:
        if op in repeats:
            lo, hi, body = arg
            if inside_repeat:
                raise AdapterError(
                    f"{label} nests a quantifier inside another (catastrophic backtracking); refused"
                )
            if hi is const.MAXREPEAT:
                count += 1
            elif hi > MAX_REPEAT_COUNT or lo > MAX_REPEAT_COUNT:
                raise AdapterError(f"{label} repeats {hi:,} times (at most {MAX_REPEAT_COUNT}); refused")
            count += _count_repeats(body, sre_parse, label, inside_repeat=hi != 1 or inside_repeat)
        elif op is const.SUBPATTERN:
            count += _count_repeats(arg[-1], sre_parse, label, inside_repeat)
        elif op is const.BRANCH:
            if inside_repeat:  # (a|aa)+ is exponential like (a+)+
                raise AdapterError(
                    f"{label} has an alternation inside a quantifier (catastrophic backtracking); refused"
                )
            count += sum(_count_repeats(b, sre_parse, label, inside_repeat) for b in arg[1])
        elif op in (const.ASSERT, const.ASSERT_NOT):
            count += _count_repeats(arg[1], sre_parse, label, inside_repeat)
        elif op is getattr(const, "ATOMIC_GROUP", None):
            count += _count_repeats(arg, sre_parse, label, inside_repeat)
        elif op is const.GROUPREF_EXISTS:
            count += sum(_count_repeats(b, sre_parse, label, inside_repeat) for b in arg[1:] if b is not None)
    return count


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    """A finite int or float of magnitude at most MAX_ABS_NUMBER (a 400-digit int is not a lora_alpha)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return abs(x) <= MAX_ABS_NUMBER if isinstance(x, int) else math.isfinite(x) and abs(x) <= MAX_ABS_NUMBER
