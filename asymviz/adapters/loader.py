"""load_adapter: from a path to a LoraAdapter, whatever the container (folder, .zip, .safetensors, legacy .bin).

`load_adapter(path)` accepts what users have: a PEFT `save_pretrained` folder (or one of its named-adapter
subfolders), a .zip of one, a bare .safetensors file (scaling unknown without a config: 1 is used and the
adapter says so), or a legacy .bin read with `torch.load(weights_only=True)`. It reads only the headers;
tensors are read one module at a time as the adapter is iterated.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from asymviz.adapters.archive import extract_zip, remove_tree
from asymviz.adapters.config import AdapterConfig
from asymviz.adapters.model import LoraAdapter
from asymviz.adapters.peft import build
from asymviz.adapters.tensors import DictReader, SafetensorsReader
from asymviz.adapters.torch_file import torch_load
from asymviz.errors import AdapterError, display_name

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
CONFIG_FILE = "adapter_config.json"


def load_adapter(path: str | Path, adapter_name: str | None = None, strict: bool = True) -> LoraAdapter:
    """Load a LoRA adapter from a PEFT folder, a .zip of one, a .safetensors file or a legacy .bin.

    Parameters
    ----------
    path : folder, .zip, .safetensors, .bin/.pt/.pth
    adapter_name : for folders with one subfolder per named adapter (PEFT's multi-adapter save), or keys
        that carry several adapter names; None picks the only one there is.
    strict : reject config fields that no PEFT LoraConfig has (False: ignore them).

    Raises
    ------
    AdapterError with one line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_dir(path, adapter_name, strict, source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _load_zip(path, adapter_name, strict)
    config = _config_beside(path, strict)
    if suffix in (".bin", ".pt", ".pth"):
        return build(DictReader(torch_load(path), path.name), config, str(path), adapter_name)
    return build(SafetensorsReader(path), config, str(path), adapter_name)


def _config_beside(path: Path, strict: bool) -> AdapterConfig | None:
    cfg = path.parent / CONFIG_FILE
    # exists(), not is_file(): a FIFO or device named adapter_config.json is refused, not silently skipped
    return AdapterConfig.from_file(cfg, strict=strict) if cfg.exists() or cfg.is_symlink() else None


def _load_dir(path: Path, adapter_name: str | None, strict: bool, source: str) -> LoraAdapter:
    if adapter_name is not None and (path / adapter_name).is_dir():
        return _load_dir(path / adapter_name, None, strict, source=f"{source}/{adapter_name}")
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is None:
        subs = sorted(
            p.name for p in path.iterdir() if p.is_dir() and any((p / w).is_file() for w in WEIGHT_FILES)
        )
        if len(subs) == 1:
            return _load_dir(path / subs[0], None, strict, source=f"{source}/{subs[0]}")
        if subs:
            raise AdapterError(
                f"{path}: holds several adapters ({', '.join(subs)}); pick one with adapter_name="
            )
        raise AdapterError(f"{path}: no adapter_model.safetensors or adapter_model.bin in this folder")
    config = _config_beside(weights, strict)
    reader = (
        SafetensorsReader(weights)
        if weights.suffix == ".safetensors"
        else DictReader(torch_load(weights), weights.name)
    )
    return build(reader, config, source, adapter_name)


def _load_zip(path: Path, adapter_name: str | None, strict: bool) -> LoraAdapter:

    tmp = Path(tempfile.mkdtemp(prefix="asymviz-zip-"))
    try:
        extract_zip(path, tmp)
        roots = sorted(
            {p.parent for w in WEIGHT_FILES for p in tmp.rglob(w)}
            | {p.parent for p in tmp.rglob("*.safetensors")},
            key=lambda p: (len(p.relative_to(tmp).parts), str(p)),
        )
        if not roots:
            raise AdapterError(f"{path.name}: the archive holds no adapter_model.safetensors or .bin")
        root = roots[0]
        _refuse_siblings(path, tmp, roots, adapter_name)
        if adapter_name is None and not any((root / w).is_file() for w in WEIGHT_FILES):
            files = sorted(root.glob("*.safetensors"))
            if len(files) != 1:
                raise AdapterError(f"{path.name}: several .safetensors files and no adapter_model file")
            adapter = build(SafetensorsReader(files[0]), _config_beside(files[0], strict), str(path), None)
        else:
            adapter = _load_dir(root, adapter_name, strict, source=str(path))
    except AdapterError as exc:  # name the archive, never the temp folder it was unpacked into
        remove_tree(tmp)
        raise AdapterError(_in_archive(path, tmp, str(exc))) from None
    except BaseException:
        remove_tree(tmp)
        raise
    weakref.finalize(adapter, remove_tree, tmp)  # the unpacked files live as long as the adapter
    return adapter


def _refuse_siblings(path: Path, tmp: Path, roots: list[Path], adapter_name: str | None) -> None:
    """A zip holding two adapters side by side is refused as a folder with two adapters is (nested ones are
    PEFT's named adapters of the top one, chosen with adapter_name=)."""
    top = [r for r in roots if len(r.relative_to(tmp).parts) == len(roots[0].relative_to(tmp).parts)]
    if len(top) > 1 and adapter_name is None:
        names = ", ".join(display_name(r.relative_to(tmp).as_posix() or ".", 60) for r in top[:5])
        raise AdapterError(
            f"{display_name(path.name)}: holds several adapters ({names}); unpack it and pick one"
        )


def _in_archive(path: Path, tmp: Path, message: str) -> str:
    message = message.replace(str(tmp) + "/", "").replace(str(tmp), ".")
    label = display_name(path.name)
    return message if message.startswith((label, str(path))) else f"{label}: {message}"
