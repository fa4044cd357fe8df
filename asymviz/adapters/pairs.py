"""What every reader shares: checking one stored down/up pair, reading α from a 0-d tensor or from a
safetensors header's `__metadata__`, and turning a module name into (layer, kind).

A pair is A (r, d_in[, k, k]) and B (d_out, r[, 1, 1]); conv kernels flatten into d_in as PEFT does
(`lora_A.weight.reshape(r, -1)`; kohya sd-scripts networks/lora.py merges conv LoRA the same way).
"""

from __future__ import annotations

import math
import re

from asymviz.errors import AdapterError

FLOAT_DTYPES = {"F16", "BF16", "F32", "F64", "float16", "bfloat16", "float32", "float64"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,300}$")  # module names end up in tables, plots and HTML


def check_pair(reader, name: str, a_key: str, b_key: str, source: str, a_label="lora_A", b_label="lora_B"):
    """Shapes of one pair, checked: returns (r, d_in, d_out).

    Raises AdapterError if a factor is not floating point, not a matrix, has a kernel on B larger than 1,
    ranks disagree, or a dimension is 0.
    """
    if not SAFE_NAME.match(name):
        raise AdapterError(
            f"{source}: {name[:80]!r} is not a module name (only letters, digits, _ . - allowed)"
        )
    for key in (a_key, b_key):
        if reader.dtype(key) not in FLOAT_DTYPES:
            raise AdapterError(f"{source}: {key} has dtype {reader.dtype(key)}, not a floating-point type")
    a_shape, b_shape = reader.shape(a_key), reader.shape(b_key)
    if len(a_shape) < 2 or len(b_shape) < 2:
        raise AdapterError(
            f"{source}: module {name!r}: {a_label} {list(a_shape)} and {b_label} {list(b_shape)} must be matrices"
        )
    if len(b_shape) > 2 and any(d != 1 for d in b_shape[2:]):
        raise AdapterError(f"{source}: module {name!r}: {b_label} {list(b_shape)} has a kernel larger than 1")
    r, d_in, d_out = a_shape[0], math.prod(a_shape[1:]), b_shape[0]
    if b_shape[1] != r:
        raise AdapterError(
            f"{source}: module {name!r}: mismatched ranks: {a_label} {list(a_shape)} has rank {r} "
            f"but {b_label} {list(b_shape)} has rank {b_shape[1]}"
        )
    if r == 0 or d_in == 0 or d_out == 0:
        raise AdapterError(
            f"{source}: module {name!r} has an empty factor (A {list(a_shape)}, B {list(b_shape)})"
        )
    return r, d_in, d_out


def read_alpha(reader, key: str, source: str) -> float:
    """A 0-d (or one-element) floating α tensor, e.g. kohya's `<module>.alpha`; must be finite and > 0."""
    shape = reader.shape(key)
    if math.prod(shape) != 1:
        raise AdapterError(f"{source}: {key} has shape {list(shape)}; an alpha tensor holds one number")
    (t,) = reader.get_many([key])
    value = float(t.reshape(-1)[0])
    if not math.isfinite(value) or value <= 0:
        raise AdapterError(f"{source}: {key} = {value}; alpha must be a finite positive number")
    return value


def header_metadata(reader) -> dict[str, str]:
    """The `__metadata__` strings of a safetensors file (kohya's ss_network_dim / ss_network_alpha live
    there); {} for other readers or files without it. The file was validated by check_safetensors already."""
    path = getattr(reader, "path", None)
    if path is None or not str(path).endswith(".safetensors"):
        return {}
    import json
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def metadata_alpha(meta: dict[str, str]) -> tuple[float, int | None] | None:
    """(α, rank or None) from kohya's `ss_network_alpha` / `ss_network_dim` (sd-scripts train_network.py
    writes both into `__metadata__`); None when absent or not a positive number (kohya writes "Dynamic"
    for networks whose rank varies per module)."""
    try:
        alpha = float(meta["ss_network_alpha"])
    except (KeyError, ValueError):
        return None
    if not math.isfinite(alpha) or alpha <= 0:
        return None
    try:
        dim = int(meta.get("ss_network_dim", ""))
    except ValueError:
        dim = None
    return alpha, dim


_KINDS = re.compile(
    r"(to_q|to_k|to_v|to_out_0|q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2|"
    r"proj_in|proj_out|ff_net_0_proj|ff_net_2|conv1|conv2|conv_shortcut|conv|time_emb_proj|qkv|proj|linear1|"
    r"linear2|w1|w2|w3|wq|wk|wv|wo|output_proj)$"
)


def layer_and_kind(name: str) -> tuple[int | None, str]:
    """(first integer component, projection name) for dotted names ('model.layers.3.self_attn.q_proj' ->
    (3, 'q_proj')) and kohya's underscored ones ('lora_te_text_model_encoder_layers_3_self_attn_q_proj' ->
    (3, 'q_proj'))."""
    if "." in name:
        parts = name.split(".")
        return next((int(p) for p in parts if p.isdigit()), None), parts[-1]
    tokens = name.split("_")
    layer = next((int(t) for t in tokens if t.isdigit()), None)
    m = _KINDS.search(name)
    return layer, m.group(1) if m else tokens[-1]
