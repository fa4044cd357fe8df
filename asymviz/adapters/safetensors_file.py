"""Check a safetensors file's header against the file before any tensor is read.

The safetensors library rejects a bad file too, but with messages a user cannot act on; this reads the
8-byte length and the JSON header and names the first thing that is wrong, in one line. It also tells a
pickle (or a torch zip checkpoint) that was renamed `.safetensors` apart from a corrupt file.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from asymviz.errors import AdapterError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def sniff_format(path: Path) -> str:
    """'pickle', 'torch-zip', 'zip' or 'other', from the first bytes of a file."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "pickle"
    if head[:2] == b"PK":
        # torch.save writes a zip whose members sit under "<name>/data.pkl"; a plain zip is an archive
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                if any(n.endswith("data.pkl") for n in zf.namelist()):
                    return "torch-zip"
        except zipfile.BadZipFile:
            pass
        return "zip"
    return "other"


def check_safetensors(path: Path) -> dict:
    """Validate the header of a safetensors file and return it (tensor name -> {dtype, shape, data_offsets}).

    Raises AdapterError naming the file and the first problem: a pickle in disguise, a truncated file,
    a header that claims more bytes than the file has, overlapping or out-of-range tensors, bad dtypes.
    """
    path = Path(path)
    size = path.stat().st_size
    kind = sniff_format(path)
    if kind in ("pickle", "torch-zip"):
        raise AdapterError(
            f"{path.name}: this is a pickled PyTorch file, not safetensors; asymviz never unpickles "
            "safetensors files (save it with safetensors, or name it .bin to read it with weights_only=True)"
        )
    if size < 8:
        raise AdapterError(f"{path.name}: not a safetensors file ({size} bytes; a header needs at least 8)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise AdapterError(f"{path.name}: safetensors header claims {n:,} bytes (limit {MAX_HEADER_BYTES:,})")
        if 8 + n > size:
            raise AdapterError(
                f"{path.name}: truncated or corrupt safetensors: the header claims {n:,} bytes "
                f"but the file has only {size - 8:,} after the length field"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path.name}: corrupt safetensors header (not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise AdapterError(f"{path.name}: corrupt safetensors header (not a JSON object)")
    data_len = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = []
    for name, info in tensors.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise AdapterError(f"{path.name}: tensor {name!r} has an incomplete header entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise AdapterError(f"{path.name}: tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise AdapterError(f"{path.name}: tensor {name!r} has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise AdapterError(f"{path.name}: tensor {name!r} has bad data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise AdapterError(f"{path.name}: tensor {name!r} has bad data_offsets {offsets!r}")
        if end > data_len:
            raise AdapterError(
                f"{path.name}: truncated or corrupt safetensors: tensor {name!r} ends at byte {end:,} "
                f"but the data section has only {data_len:,} bytes"
            )
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise AdapterError(
                f"{path.name}: tensor {name!r} claims shape {shape} of {dtype} but spans {end - begin:,} bytes"
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise AdapterError(f"{path.name}: tensors {n0!r} and {n1!r} overlap in the file")
    return tensors


def data_start(path: Path) -> int:
    """Byte offset of a safetensors file's data section (8 + header length)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return 8 + n
