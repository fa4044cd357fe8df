"""AdaLoRA (PEFT `peft_type: ADALORA`): ΔW = B·(A ⊙ E)·α / (ranknum + 1e-5), normalised to B·A' with
A' = diag(E)·A, so every analysis of LoRA applies unchanged; E stays on the spec (`e_key`).

Rule, from peft/tuners/adalora/layer.py (SVDLinear.get_delta_weight, update_layer):
    ΔW = transpose(B @ (A * E), fan_in_fan_out) * scaling / (ranknum + 1e-5)
    scaling = lora_alpha if lora_alpha > 0 else float(r);  ranknum = float(init_r)
A is (r, d_in) and E is (r, 1), both ParameterDicts, so the saved keys are `<m>.lora_A`, `<m>.lora_B`,
`<m>.lora_E` with no `.weight`. Rank allocation prunes rows: PEFT saves the kept rows only
(peft/tuners/adalora/model.py resize_state_dict_by_rank_pattern) and keeps ranknum = init_r ("the scaling
is exactly as the previous"), so per-module ranks vary and the scaling is α/init_r for every module.
Without the config, α and init_r are unknown: scaling 1 is used (ΔW = B·diag(E)·A) and the adapter says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from asymviz.adapters.peft import build
from asymviz.errors import AdapterError

FORMAT = "adalora"
RANKNUM_EPS = 1e-5  # PEFT adds it to ranknum


def detect(keys, config: dict | None) -> bool:
    if str((config or {}).get("peft_type") or "").upper() == "ADALORA":
        return True
    return any(k.endswith(".lora_E") or ".lora_E." in k for k in keys)


@dataclass(frozen=True)
class AdaloraConfig:
    """The fields of a PEFT AdaLoraConfig that decide ΔW (duck-types AdapterConfig for peft.build)."""

    init_r: int  # ranknum: the divisor of the scaling, whatever rank a module kept
    lora_alpha: float
    fan_in_fan_out: bool = False
    base_model_name_or_path: str | None = None
    r: int = 0  # unused; PEFT's target_r
    use_dora: bool = False
    target_parameters: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    legacy: bool = False

    def __post_init__(self):
        if not isinstance(self.init_r, int) or isinstance(self.init_r, bool) or self.init_r <= 0:
            raise AdapterError(f"adapter_config.json: init_r must be a positive integer, got {self.init_r!r}")
        if not isinstance(self.lora_alpha, int | float) or not math.isfinite(self.lora_alpha):
            raise AdapterError(
                f"adapter_config.json: lora_alpha must be a finite number, got {self.lora_alpha!r}"
            )

    @classmethod
    def from_dict(cls, data: dict) -> AdaloraConfig:
        return cls(
            init_r=data.get("init_r", 12),  # AdaLoraConfig's default
            lora_alpha=data.get("lora_alpha", 8),
            fan_in_fan_out=bool(data.get("fan_in_fan_out") or False),
            base_model_name_or_path=data.get("base_model_name_or_path"),
            r=data.get("target_r", 8),
        )

    def rank_for(self, module: str) -> None:
        return None  # pruned per module: any stored rank up to init_r is valid

    def alpha_for(self, module: str) -> float:
        return float(self.lora_alpha if self.lora_alpha > 0 else self.init_r)

    def scaling_for(self, module: str, r: int) -> float:
        return self.alpha_for(module) / (self.init_r + RANKNUM_EPS)


def read(reader, config: dict | None, source: str, adapter_name: str | None = None, **_):
    cfg = AdaloraConfig.from_dict(config) if config is not None else None
    adapter = build(reader, cfg, source, adapter_name, format=FORMAT)
    missing = [s.name for s in adapter.modules if s.e_key is None]
    if missing:
        raise AdapterError(f"{source}: AdaLoRA module {missing[0]!r} has lora_A/lora_B but no lora_E")
    too_big = [s.name for s in adapter.modules if cfg is not None and s.r > cfg.init_r]
    if too_big:
        raise AdapterError(f"{source}: AdaLoRA module {too_big[0]!r} has a rank above init_r={cfg.init_r}")
    if cfg is None:
        adapter.problems[:] = [
            f"{source}: AdaLoRA weights without adapter_config.json: lora_alpha and init_r are unknown, so "
            "ΔW = B·diag(E)·A is used (scaling 1)"
        ]
    return adapter
