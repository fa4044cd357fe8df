"""load_adapter: from a path to a LoraAdapter, whatever the container (folder, .zip, .safetensors, .bin, .pt).

`load_adapter(path)` accepts what users have: a PEFT `save_pretrained` folder (or one of its named-adapter
subfolders), an mlx-lm folder (adapters.safetensors), a torchtune folder (adapter_model.pt), a .zip of one,
a bare .safetensors file (kohya, diffusers, PEFT keys; scaling from `.alpha` tensors or the header's
metadata, else unknown: 1 is used and the adapter says so), or a .bin/.pt read with
`torch.load(weights_only=True)`. The container gives a tensor reader and the JSON config beside it; which
file format that is (and so which reader builds the modules) is asymviz.adapters.formats' decision. It reads
only the headers; tensors are read one module at a time as the adapter is iterated.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path

from asymviz.adapters.archive import extract_zip, remove_tree
from asymviz.adapters.config import read_json
from asymviz.adapters.formats import read
from asymviz.adapters.model import LoraAdapter
from asymviz.adapters.tensors import DictReader, SafetensorsReader
from asymviz.adapters.torch_file import torch_load
from asymviz.errors import AdapterError, display_name

# PEFT (safetensors, legacy bin), mlx-lm, torchtune: the first one present is read
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapters.safetensors", "adapter_model.pt")
CONFIG_FILE = "adapter_config.json"


def load_adapter(path: str | Path, adapter_name: str | None = None, strict: bool = True) -> LoraAdapter:
    """Load a LoRA adapter from a PEFT folder, a .zip of one, a .safetensors file or a legacy .bin.

    Parameters
    ----------
    path : folder, .zip, .safetensors, .bin/.pt/.pth, or a Hub repo id `org/name[@revision]` that is not a
        local path (asymviz.adapters.hub; HF_HUB_OFFLINE=1 reads the cache only)
    adapter_name : for folders with one subfolder per named adapter (PEFT's multi-adapter save), or keys
        that carry several adapter names; None picks the only one there is.
    strict : refuse config fields no PEFT LoraConfig has that are set to a value (False: ignore them with a
        warning). Fields that are unset, and the obsolete fields of early PEFT, are ignored with a warning.

    Raises
    ------
    AdapterError with one line naming the file and the problem.
    """
    from asymviz.adapters import hub

    if not Path(path).exists() and hub.looks_like_repo_id(str(path)):
        adapter = load_adapter(hub.resolve(str(path)), adapter_name, strict)
        adapter.source = str(path)  # the repo id the user gave, not the cache folder
        return adapter
    path = Path(path)
    if not path.exists():
        raise AdapterError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_dir(path, adapter_name, strict, source=str(path))
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _load_zip(path, adapter_name, strict)
    return read(_reader(path), _config_beside(path), str(path), adapter_name, strict)


def _reader(path: Path):
    if path.suffix.lower() in (".bin", ".pt", ".pth"):
        return DictReader(torch_load(path), path.name)
    return SafetensorsReader(path)


def _config_beside(path: Path) -> dict | None:
    cfg = path.parent / CONFIG_FILE
    # exists(), not is_file(): a FIFO or device named adapter_config.json is refused, not silently skipped
    return read_json(cfg) if cfg.exists() or cfg.is_symlink() else None


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
                f"{path}: holds several adapters ({', '.join(subs)}); give the path of one of them"
            )
        files = sorted(path.glob("*.safetensors"))
        if len(files) == 1:  # a kohya / diffusers LoRA on its own in a folder
            return read(SafetensorsReader(files[0]), _config_beside(files[0]), source, adapter_name, strict)
        raise AdapterError(f"{path}: no {', '.join(WEIGHT_FILES)} in this folder")
    return read(_reader(weights), _config_beside(weights), source, adapter_name, strict)


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
            adapter = read(SafetensorsReader(files[0]), _config_beside(files[0]), str(path), None, strict)
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
