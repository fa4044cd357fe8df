"""Check a safetensors file's header against the file before any tensor is read.

The safetensors library rejects a bad file too, but with messages a user cannot act on; this reads the
8-byte length and the JSON header and names the first thing that is wrong, in one line. It also tells a
pickle (or a torch zip checkpoint) that was renamed `.safetensors` apart from a corrupt file.

Structure first, then sniffing: a safetensors file whose header is 640 bytes long starts with the bytes
80 02 (a header length of 640 + k·65,536 for 0x80 then 2..5), which is exactly how a pickle starts. So a file
is taken as safetensors when its length field fits the file, its header parses as a JSON object and its
tensors tile the data section; only when that fails are the first bytes sniffed, to say "a pickle" instead
of "corrupt". The header is parsed with bounds: at most MAX_HEADER_BYTES, integers of at most 20 digits,
nesting caught (Python's parser raises RecursionError), duplicate keys refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from asymviz.adapters.files import open_regular
from asymviz.errors import AdapterError, display_name

# The safetensors library allows 100 MB; an adapter's header is ~110 bytes per tensor (a 70B model's
# all-linear r=64 adapter: 1,120 tensors, 150 kB), and 100 MB of JSON can take gigabytes as Python objects.
MAX_HEADER_BYTES = 16 * 1024 * 1024

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


PICKLE_PROTOCOLS = range(2, 6)  # a pickle starts with PROTO (0x80) and the protocol number


def sniff_format(path: Path) -> str:
    """'pickle', 'torch-zip', 'zip' or 'other', from the first bytes of a file (a regular file only)."""
    with open_regular(path) as f:
        head = f.read(4)
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in PICKLE_PROTOCOLS:
        return "pickle"
    if head[:2] == b"PK":
        # torch.save writes a zip whose members sit under "<name>/data.pkl"; a plain zip is an archive
        import zipfile

        try:
            with open_regular(path) as f, zipfile.ZipFile(f) as zf:
                if any(n.endswith("data.pkl") for n in zf.namelist()):
                    return "torch-zip"
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            pass
        return "zip"
    return "other"


def parse_json(raw: bytes | str, what: str):
    """json.loads with bounds: integers of at most 20 digits, nesting and duplicate keys refused, no NaN.

    Raises AdapterError("{what}: ...") for anything that is not plain, bounded JSON.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(
            text, parse_int=_bounded_int, parse_constant=_no_constant, object_pairs_hook=_unique
        )
    except RecursionError:
        raise AdapterError(f"{what}: JSON nested too deeply; refused") from None
    except _JsonRefusal as exc:
        raise AdapterError(f"{what}: {exc}; refused") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise AdapterError(f"{what}: not JSON ({display_name(exc, 160)})") from None


class _JsonRefusal(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise _JsonRefusal(f"an integer of {len(text):,} digits")
    return int(text)


def _no_constant(name: str):
    raise _JsonRefusal(f"{name} is not a JSON number")


def _unique(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _JsonRefusal(f"the key {display_name(dup, 80)!r} appears twice")
    return out


def check_safetensors(path: Path) -> dict:
    """Validate the header of a safetensors file and return it (tensor name -> {dtype, shape, data_offsets}).

    Raises AdapterError naming the file and the first problem: a pickle in disguise, a truncated file,
    a header that claims more bytes than the file has, overlapping or out-of-range tensors, bad dtypes,
    a data section the tensors do not tile exactly (as the safetensors library requires).
    """
    path = Path(path)
    name = display_name(path.name)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        raw = f.read(n) if n is not None and n <= MAX_HEADER_BYTES and 8 + n <= size else None
    header = None
    if raw is not None:
        try:
            header = parse_json(raw, f"{name}: corrupt safetensors header")
        except AdapterError as exc:
            problem = exc
        else:
            problem = None if isinstance(header, dict) else AdapterError(
                f"{name}: corrupt safetensors header (not a JSON object)")  # fmt: skip
    if header is None or not isinstance(header, dict):
        # not safetensors by structure: now the first bytes say what it is instead
        if sniff_format(path) in ("pickle", "torch-zip"):
            raise AdapterError(
                f"{name}: this is a pickled PyTorch file, not safetensors; asymviz never unpickles "
                "safetensors files (save it with safetensors, or name it .bin to read it with weights_only=True)"
            )
        if n is None:
            raise AdapterError(f"{name}: not a safetensors file ({size} bytes; a header needs at least 8)")
        if n > MAX_HEADER_BYTES:
            raise AdapterError(f"{name}: safetensors header claims {n:,} bytes (limit {MAX_HEADER_BYTES:,})")
        if 8 + n > size:
            raise AdapterError(
                f"{name}: truncated or corrupt safetensors: the header claims {n:,} bytes "
                f"but the file has only {size - 8:,} after the length field"
            )
        raise problem
    return _check_entries(header, name, data_len=size - 8 - n)


def _check_entries(header: dict, name: str, data_len: int) -> dict:
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = []
    for key, info in tensors.items():
        label = display_name(key, 160)
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise AdapterError(f"{name}: tensor {label!r} has an incomplete header entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise AdapterError(f"{name}: tensor {label!r} has unknown dtype {display_name(repr(dtype), 40)}")
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise AdapterError(f"{name}: tensor {label!r} has a bad shape {display_name(repr(shape), 60)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
            raise AdapterError(
                f"{name}: tensor {label!r} has bad data_offsets {display_name(repr(offsets), 60)}"
            )
        begin, end = offsets
        if not 0 <= begin <= end:
            raise AdapterError(f"{name}: tensor {label!r} has bad data_offsets {offsets!r}")
        if end > data_len:
            raise AdapterError(
                f"{name}: truncated or corrupt safetensors: tensor {label!r} ends at byte {end:,} "
                f"but the data section has only {data_len:,} bytes"
            )
        # the shape's element count against the bytes the tensor spans: a small file cannot claim a big tensor
        if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise AdapterError(
                f"{name}: tensor {label!r} claims shape {shape} of {dtype} but spans {end - begin:,} bytes"
            )
        spans.append((begin, end, key))
    spans.sort()
    covered = 0
    for (_b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise AdapterError(
                f"{name}: tensors {display_name(n0, 80)!r} and {display_name(n1, 80)!r} overlap in the file"
            )
    for begin, end, _key in spans:
        if begin != covered:
            raise AdapterError(
                f"{name}: corrupt safetensors: bytes {covered:,}..{begin:,} of the data belong to no tensor"
            )
        covered = end
    if covered != data_len:
        raise AdapterError(
            f"{name}: corrupt safetensors: the tensors cover {covered:,} bytes but the data section has "
            f"{data_len:,} (trailing bytes)"
        )
    return tensors


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def data_start(path: Path) -> int:
    """Byte offset of a safetensors file's data section (8 + header length)."""
    with open_regular(path) as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return 8 + n
