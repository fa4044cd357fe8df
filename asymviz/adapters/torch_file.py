"""Read a legacy `.bin` / `.pt` checkpoint (torch.save output) as a dict of tensors, never running its code.

`torch_load(path)` accepts both torch.save formats: the zip one (records stored or deflate-compressed, a
`byteorder` record of "little" or "big": torch converts) and the older single-stream pickle. It loads with
`torch.load(weights_only=True)` from an open file (never mmap: a compressed record read through mmap is
garbage), after these checks:

- the path is a regular file (a FIFO or a device is refused before it is read: asymviz.adapters.files);
- a zip checkpoint's records are bounded: member count, declared total size, and expansion ratio of any
  compressed record (a zip bomb inside a checkpoint is refused before torch inflates it);
- any failure of the restricted unpickler becomes one AdapterError line. When the pickle asks for a global
  the unpickler will not load (os.system, builtins.exec, ...), the message names it, found by reading the
  pickle's opcodes with pickletools (which decodes and never executes). torch's own advice to retry with
  weights_only=False is never passed on: asymviz does not suggest unpickling an untrusted file.

Values that are nn.Parameter are accepted (asymviz.adapters.tensors.DictReader detaches them).
"""

from __future__ import annotations

import io
import pickletools
import warnings
import zipfile
from pathlib import Path

from asymviz.adapters.archive import MAX_MEMBERS, MAX_RATIO, MAX_UNPACKED_BYTES
from asymviz.adapters.files import open_regular
from asymviz.errors import AdapterError, display_name

MAX_PICKLE_SCAN = 64 * 1024 * 1024  # bytes of pickle opcodes read when naming a refused global
_MODULE_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins", "_io": "io"}


def torch_load(path: Path) -> dict:
    """The checkpoint's dict of tensors (a top-level "state_dict" entry is unwrapped).

    Raises
    ------
    AdapterError (one line, naming the file) for anything that is not a dict of tensors saved by torch.save:
    a refused global (named), a corrupt or truncated file, a zip bomb, a FIFO or device.
    """
    from asymviz.adapters.safetensors_file import sniff_format

    path = Path(path)
    name = display_name(path.name)
    kind = sniff_format(path)  # opens regular files only
    if kind not in ("pickle", "torch-zip"):
        raise AdapterError(f"{name}: not a PyTorch checkpoint (expected a torch.save file)")
    if kind == "torch-zip":
        _check_records(path, name)
    data = _load(path, name, kind)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise AdapterError(f"{name}: holds a {type(data).__name__}, not a dict of tensors")
    return data


def _load(path: Path, name: str, kind: str):
    import torch

    try:
        with open_regular(path) as f, warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # "Detected pickle protocol 4", deprecations: not the user's business
            return torch.load(f, map_location="cpu", weights_only=True, mmap=False)
    except AdapterError:
        raise
    except MemoryError:
        raise AdapterError(f"{name}: asks for more memory than there is while loading; refused") from None
    except RecursionError:
        raise AdapterError(f"{name}: the pickle is nested too deeply; refused") from None
    except Exception as exc:  # the restricted unpickler and torch's readers raise many types on bad input
        blocked = _blocked_global(path, kind)
        if blocked:
            raise AdapterError(
                f"{name}: refused: the pickle asks for {blocked}; asymviz loads tensors only"
            ) from None
        raise AdapterError(f"{name}: not a readable PyTorch checkpoint ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """torch's message without its advice to retry with weights_only=False."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    elif "weights_only" in text or "Weights only load failed" in text:
        return "the restricted unpickler refused it"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return display_name(line, 160)


def _check_records(path: Path, name: str) -> None:
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise AdapterError(f"{name}: corrupt PyTorch zip checkpoint ({display_name(exc, 120)})") from None
    if len(infos) > MAX_MEMBERS:
        raise AdapterError(f"{name}: {len(infos):,} records is too many for a checkpoint; refused")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise AdapterError(f"{name}: records claim {total:,} bytes; refused as an absurd size")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 2**20:
            if info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise AdapterError(
                    f"{name}: record {display_name(info.filename, 80)!r} expands "
                    f"{info.file_size / max(info.compress_size, 1):,.0f}-fold; refused as a likely zip bomb"
                )


def _blocked_global(path: Path, kind: str) -> str | None:
    """The first global the pickle asks for that torch's weights_only unpickler does not allow, read from
    the opcodes (pickletools.genops decodes, it never executes). None when there is none or it cannot tell."""
    allowed = _allowed_globals()
    try:
        if kind == "torch-zip":
            with open_regular(path) as f, zipfile.ZipFile(f) as zf:
                pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if pkl is None or zf.getinfo(pkl).file_size > MAX_PICKLE_SCAN:
                    return None
                streams = [io.BytesIO(zf.read(pkl))]
        else:
            with open_regular(path) as f:
                streams = [io.BytesIO(f.read(MAX_PICKLE_SCAN))]
        for name in _globals(streams[0]):
            module, _, attr = name.partition(" ")
            dotted = f"{_MODULE_ALIASES.get(module, module)}.{attr}"
            if f"{module}.{attr}" not in allowed and not module.startswith("torch"):
                return display_name(dotted, 120)
    except Exception:  # a pickle too broken to decode: the caller reports it as unreadable
        return None
    return None


def _globals(stream: io.BytesIO, max_pickles: int = 5):
    """'module name' for each GLOBAL / STACK_GLOBAL in up to `max_pickles` consecutive pickles (the legacy
    torch format writes a magic number, a protocol, system info, then the object)."""
    for _ in range(max_pickles):
        if stream.tell() >= len(stream.getbuffer()):
            return
        strings: list[str] = []
        memo: dict[int, str] = {}
        for op, arg, _pos in pickletools.genops(stream):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                           "BINSTRING", "STRING"):  # fmt: skip
                strings.append(str(arg))
            elif op.name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and arg in memo:
                strings.append(memo[arg])
            elif op.name == "GLOBAL":
                yield str(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                yield f"{strings[-2]} {strings[-1]}"


def _allowed_globals() -> set[str]:
    try:
        from torch import _weights_only_unpickler as wu

        return set(wu._get_allowed_globals()) | {
            f"{getattr(g, '__module__', '')}.{getattr(g, '__name__', '')}" for g in _user_safe_globals()
        }
    except Exception:  # a torch without these private helpers: judge by module name only
        return {"collections.OrderedDict"}


def _user_safe_globals():
    import torch

    return [g[0] if isinstance(g, tuple) else g for g in torch.serialization.get_safe_globals()]
