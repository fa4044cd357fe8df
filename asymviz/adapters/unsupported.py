"""Adapters asymviz recognises but does not read: they are not a low-rank update ΔW = B·A, so spectra and
subspace similarities of "A" and "B" would mean nothing. Each gets one error naming the method and why.

Key markers, from the writers' own code: LyCORIS lycoris/modules/{loha,lokr,full,locon}.py (`hada_w1_a`,
`lokr_w1`, `diff`, `lora_mid`), PEFT src/peft/tuners/{loha,lokr,vera,ia3,oft,boft,...}/layer.py
(`vera_lambda_b`, `ia3_l`, `oft_R`, `boft_R`).
"""

from __future__ import annotations

import re

from asymviz.errors import AdapterError

FORMAT = "unsupported"

# (marker in a key, method, why it is not B·A)
METHODS = (
    ("hada_w1_a", "LoHa (LyCORIS)", "ΔW is a Hadamard product of two low-rank products"),
    ("lokr_w1", "LoKr (LyCORIS)", "ΔW is a Kronecker product"),
    ("vera_lambda", "VeRA", "ΔW uses shared frozen random matrices scaled by trained vectors"),
    ("ia3_l", "(IA)³", "it learns rescaling vectors, not a weight update"),
    ("boft_R", "BOFT", "ΔW is a butterfly orthogonal rotation of the weight"),
    ("oft_R", "OFT", "ΔW is an orthogonal rotation of the weight"),
    ("oft_blocks", "OFT (LyCORIS)", "ΔW is an orthogonal rotation of the weight"),
    ("lora_mid", "LoCon with a Tucker core (LyCORIS)", "ΔW = up·mid·down has a 4-d core between the factors"),
    (
        "dora_scale",
        "DoRA (LyCORIS)",
        "the update is renormalised per column (asymviz reads PEFT's DoRA only)",
    ),
)
# peft_type values that are LoRA (read elsewhere); any other is named in the error
LORA_TYPES = {"LORA", "ADALORA"}
_DIFF = re.compile(r"\.diff(_b)?$")  # LyCORIS "full": a stored full weight difference


def detect(keys, config: dict | None) -> bool:
    return _find(keys, config) is not None


def read(reader, config, source, **_):
    method, why = _find(reader.keys(), config)
    raise AdapterError(
        f"{source}: {method} adapter: not a low-rank B·A update ({why}); asymviz reads LoRA adapters only"
    )


def _find(keys, config: dict | None) -> tuple[str, str] | None:
    peft_type = str((config or {}).get("peft_type") or "LORA").upper()
    if peft_type not in LORA_TYPES:
        return f"{peft_type} (PEFT peft_type)", "it is not a LoRA method"
    for key in keys:
        for marker, method, why in METHODS:
            if marker in key:
                return method, why
        if _DIFF.search(key):
            return "full weight difference (LyCORIS 'full')", "the file stores a dense ΔW, not factors"
    return None
