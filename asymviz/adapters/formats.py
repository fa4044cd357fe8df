"""Which reader reads a file: structure-based detection in one fixed order.

    adapter = read(reader, config, source)    # config: adapter_config.json as a dict, or None

Each format module has `detect(keys, config) -> bool` (keys and config only, no tensor read) and
`read(reader, config, source, adapter_name=, strict=)`. The order matters only where layouts overlap and
is fixed so the same file always gets the same reader:

1. unsupported: LoHa, LoKr, VeRA, (IA)³, OFT, BOFT, Tucker LoCon, a non-LoRA peft_type -> a named error
2. adalora:     `lora_E` keys or peft_type ADALORA (also has lora_A/lora_B, so before peft)
3. mlx-lm:      `.lora_a` / `.lora_b` without `.weight`, or a config with `lora_parameters`
4. torchtune:   `.lora_a.weight` / `.lora_b.weight`
5. peft:        `lora_A` / `lora_B` (also peft-legacy, `.alpha` tensors, MoE target_parameters)
6. kohya:       `.lora_down.weight` / `.lora_up.weight` (+ `.alpha`), kohya sd-scripts and LyCORIS LoCon
7. diffusers:   `.lora.down.weight`, `.processor.to_q_lora.down.weight`, `.lora_linear_layer.down.weight`
"""

from __future__ import annotations

from asymviz.adapters import adalora, diffusers, kohya, mlx_lm, peft, torchtune, unsupported
from asymviz.adapters.model import LoraAdapter
from asymviz.errors import AdapterError

READERS = (unsupported, adalora, mlx_lm, torchtune, peft, kohya, diffusers)
FORMATS = ("peft", "peft-legacy", "adalora", "mlx-lm", "torchtune", "kohya", "diffusers")


def detect(keys, config: dict | None) -> str | None:
    """The first format (in the order above) whose detector accepts these keys, or None."""
    keys = list(keys)
    for module in READERS:
        if module.detect(keys, config):
            return module.FORMAT
    return None


def read(
    reader, config: dict | None, source: str, adapter_name: str | None = None, strict: bool = True
) -> LoraAdapter:
    """The adapter in `reader` (tensors) + `config` (its JSON config or None), read by the detected format.

    Raises AdapterError naming the method for adapters that are not LoRA, or listing the first keys when
    no format matches.
    """
    keys = list(reader.keys())
    for module in READERS:
        if module.detect(keys, config):
            return module.read(reader, config, source, adapter_name=adapter_name, strict=strict)
    sample = ", ".join(keys[:3]) or "none"
    if not keys:
        raise AdapterError(
            f"{source}: the file holds no tensors (early PEFT with a patched state_dict saved empty adapter files)"
        )
    raise AdapterError(
        f"{source}: no LoRA weights found (no lora_A/lora_B, lora_down/lora_up or lora_a/lora_b keys; "
        f"first keys: {sample})"
    )
