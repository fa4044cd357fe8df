"""Where tensors come from: a validated safetensors file read by byte range, or a dict already in memory.

Both readers answer `keys()`, `shape(key)`, `dtype(key)` and `get_many(keys, arena=None) ->
list[numpy.ndarray]`; LoraAdapter reads a module's tensors through `get_many` only when the module is used.
An `Arena` lends reusable memory to tensors that live only while one module is analysed. Tensors are numpy
arrays, so that reading and analysing a safetensors adapter never imports torch (most of a small command's
time); a torch-pickled file's tensors are converted once, in DictReader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.adapters.files import open_regular
from asymviz.errors import AdapterError, display_name

if TYPE_CHECKING:
    import numpy as np
    import torch


class Arena:
    """Reusable memory for arrays that are dropped before the next module is read (asymviz.linalg's
    map_modules(transient=True)): `take` hands out slices of one buffer, `reset` makes it all free again.

    Why: every fresh array of more than ~128 kB is new memory from the kernel, zero-filled page by page on
    first write; reading a 7B adapter's 610 MB that way was measured at 50,000 page faults and 0.15-0.24 s
    of CPU, against a few hundredths for reading into memory already touched. Arrays taken from an arena
    are overwritten after `reset`: only code that keeps nothing of them (derived numbers only) may use one.
    """

    ALIGN = 64  # bytes: slices start at multiples of a cache line within the buffer

    def __init__(self) -> None:
        import numpy as np

        self._buf = np.empty(0, dtype=np.uint8)
        self._used = 0

    def reset(self) -> None:
        self._used = 0

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 array of nbytes, not overlapping anything taken since the last reset."""
        import numpy as np

        start = -(-self._used // self.ALIGN) * self.ALIGN
        if start + nbytes > self._buf.size:  # grow; slices of the old buffer stay valid (they keep it alive)
            self._buf = np.empty(max(2 * self._buf.size, start + nbytes), dtype=np.uint8)
        self._used = start + nbytes
        return self._buf[start : start + nbytes]


def _bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32: bfloat16 is the upper half of a float32, so this is exact."""
    import numpy as np

    return (u16.astype(np.uint32) << 16).view(np.float32)


class SafetensorsReader:
    """Reads tensors straight from the byte ranges of a header that check_safetensors validated: one
    read into a buffer the array then owns (measured 4x faster than safe_open per module here).

    F32 and F64 come back as they are stored, F16 as numpy float16 (LoraAdapter widens it to float32),
    BF16 widened to float32 (numpy has no bfloat16; the widening is exact), integer and BOOL dtypes as numpy
    integers and bools. The F8_* dtypes raise AdapterError: read as raw bytes they would give wrong numbers
    (a kohya alpha of 2.0 stored F8_E4M3 read as 64).
    """

    _NUMPY_DTYPES = {
        "F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8", "BOOL": "?", "U8": "u1", "I8": "i1",
        "I16": "<i2", "U16": "<u2", "I32": "<i4", "U32": "<u4", "I64": "<i8", "U64": "<u8",
    }  # fmt: skip

    def __init__(self, path: Path):
        from asymviz.adapters.safetensors_file import check_safetensors, data_start

        self.path = path
        self.header = check_safetensors(path)
        self.start = data_start(path)

    def keys(self):
        return self.header.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.header[key]["shape"])

    def dtype(self, key: str) -> str:
        return self.header[key]["dtype"]

    def get_many(self, keys: list[str], arena: Arena | None = None) -> list[np.ndarray]:
        """The tensors of `keys`, read from the file (into memory taken from `arena` when given)."""
        import numpy as np

        out = []
        try:
            with open_regular(self.path) as f:
                for key in keys:
                    info = self.header[key]
                    begin, end = info["data_offsets"]
                    if info["dtype"] not in self._NUMPY_DTYPES:  # F8_*: numpy has no such type
                        raise AdapterError(
                            f"{display_name(self.path.name)}: {display_name(key)} has dtype {info['dtype']}, "
                            "which asymviz cannot read"
                        )
                    dtype = np.dtype(self._NUMPY_DTYPES[info["dtype"]])
                    # np.empty, not bytearray: no zero-filling pass over memory that readinto overwrites
                    n = (end - begin) // dtype.itemsize
                    t = np.empty(n, dtype=dtype) if arena is None else arena.take(end - begin).view(dtype)
                    f.seek(self.start + begin)
                    if f.readinto(memoryview(t).cast("B")) != t.nbytes:
                        raise AdapterError(
                            f"{display_name(self.path.name)}: {display_name(key)} is cut short "
                            "(the file changed while reading?)"
                        )
                    if not dtype.isnative:  # a big-endian host: safetensors is little-endian
                        t = t.byteswap().view(dtype.newbyteorder("="))
                    if info["dtype"] == "BF16":
                        t = _bf16_to_f32(t)
                    out.append(t.reshape(info["shape"]))
        except OSError as exc:
            raise AdapterError(f"{display_name(self.path.name)}: cannot read tensors ({exc})") from None
        return out


class DictReader:
    """Tensors already in memory (a torch.load result, a PEFT state dict).

    Each value must be a dense tensor whose elements fit in its storage: a pickle can describe a view with
    zero strides (a 10⁶×10⁶ "tensor" over 16 bytes) that turns into terabytes when it is made contiguous.
    Tensors are checked here and converted to numpy on first read (`get_many`): float32/float64/float16 as
    they are (a zero-copy view of a contiguous CPU tensor), bfloat16 widened to float32 (exact), so the
    analyses see the same arrays whatever the file format. nn.Parameters are detached first.
    `dtype(key)` is the tensor's torch dtype name ("float32", "bfloat16").
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], source: str):
        import torch

        clean = {}
        for key, value in tensors.items():
            label = display_name(repr(key), 160)
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise AdapterError(
                    f"{display_name(source)}: entry {label} is a {type(value).__name__}, not a tensor"
                )
            if value.layout != torch.strided or value.is_meta or value.is_quantized:
                raise AdapterError(
                    f"{display_name(source)}: entry {label} is not a dense tensor ({value.layout})"
                )
            needed = _span_bytes(value)
            have = value.untyped_storage().nbytes()
            if needed > have:
                raise AdapterError(
                    f"{display_name(source)}: tensor {label} of shape {list(value.shape)} needs {needed:,} bytes "
                    f"but its storage holds {have:,} (a strided view that would expand); refused"
                )
            clean[key] = value.detach()
        self.tensors = clean

    def keys(self):
        return self.tensors.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.tensors[key].shape)

    def dtype(self, key: str) -> str:
        return str(self.tensors[key].dtype).removeprefix("torch.")

    def get_many(self, keys: list[str], arena: Arena | None = None) -> list[np.ndarray]:
        """The tensors of `keys` as numpy arrays (views of the tensors where the dtype allows; `arena` is
        not needed: nothing is read)."""
        return [_to_numpy(self.tensors[k]) for k in keys]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU numpy array of a tensor's values: float16/32/64 and integers as they are, bfloat16 (and other
    floats numpy lacks) widened to float32, exactly."""
    import torch

    t = t.detach().cpu()
    if t.dtype.is_floating_point and t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _span_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor's elements need once materialised (numel × element size), at least what its view reaches."""
    if t.numel() == 0:
        return 0
    reach = t.storage_offset() + 1 + sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
    return max(t.numel(), reach) * t.element_size()
