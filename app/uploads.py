"""Adapter files the pages read: what an adapter choice is (a path, a label, a file signature for cache keys),
where uploads are written (a private temporary folder, cleaned after UPLOAD_TTL_S), and the folder PEFT needs
to apply an uploaded adapter.

    choice = choice_for("cached_runs/.../adapter")      # AdapterChoice(path, label, signature)
    folder = save_uploads(files, key)                     # uploaded files -> a folder of their own
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

UPLOAD_DIR = Path(tempfile.gettempdir()) / "asymviz-uploads"
UPLOAD_TTL_S = 24 * 3600


@dataclass(frozen=True)
class AdapterChoice:
    path: str  # what load_adapter reads: a folder, a .zip or a .safetensors/.bin file
    label: str  # short name for legends and file names
    signature: str  # changes when the file changes (cache key)


def _signature(path: Path) -> str:
    try:
        if path.is_dir():
            stats = [p.stat() for p in sorted(path.rglob("*")) if p.is_file()]
            return f"{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
        s = path.stat()
        return f"{s.st_size}:{s.st_mtime_ns}"
    except OSError:
        return "missing"


def choice_for(path: str | Path, label: str | None = None) -> AdapterChoice:
    path = Path(path)
    return AdapterChoice(str(path), label or path.name, _signature(path))


def signatures(paths) -> tuple[str, ...]:
    """The file signature of each path (cache keys of the cached calls)."""
    return tuple(choice_for(p).signature for p in paths)


def _clean_old_uploads() -> None:
    if not UPLOAD_DIR.is_dir():
        return
    now = time.time()
    for entry in UPLOAD_DIR.iterdir():
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > UPLOAD_TTL_S:
                shutil.rmtree(entry, ignore_errors=True)


def save_uploads(files, key: str, root: Path | None = None) -> Path:
    """Write uploaded files to a private folder named after their upload ids, under `root` (default UPLOAD_DIR;
    a SessionFolder's path in public mode); returns the folder."""
    root = UPLOAD_DIR if root is None else root
    ids = "-".join(str(getattr(f, "file_id", f.name)) for f in files)
    folder = root / f"{key}-{abs(hash(ids)):x}"
    if not folder.is_dir():
        _clean_old_uploads()
        tmp = Path(tempfile.mkdtemp(prefix="partial-", dir=_ensure(root)))
        for f in files:
            name = Path(f.name).name  # never a path from the client
            if name.lower().endswith(".json"):
                name = "adapter_config.json"
            with open(tmp / name, "wb") as out:
                out.write(f.getbuffer())
        os.replace(tmp, folder)
    return folder


class SessionFolder:
    """A private upload folder that lives as long as this object: removed when it is garbage-collected (public
    mode keeps it in st.session_state, which Streamlit drops when the visitor's session ends), by `remove()`,
    or at interpreter exit. UPLOAD_TTL_S cleans up after a server that was killed."""

    def __init__(self, root: Path = UPLOAD_DIR):
        self.path = Path(tempfile.mkdtemp(prefix="session-", dir=_ensure(root)))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def remove(self) -> None:
        self._finalizer()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def peft_folder(path: str) -> str:
    """A folder PEFT can apply for an adapter choice: the folder itself, a .zip unpacked next to it, or the
    folder of an uploaded weights file that has its adapter_config.json."""
    from asymviz.errors import AdapterError

    p = Path(path)
    if p.is_dir():
        return str(p)
    if p.suffix.lower() == ".zip":
        # unpacked once per file version, in the app's upload folder (never next to a local path's file)
        from asymviz.adapters.archive import extract_zip

        digest = hashlib.blake2b(
            f"{p.resolve()}|{choice_for(p).signature}".encode(), digest_size=8
        ).hexdigest()
        dest = UPLOAD_DIR / f"unpacked-{p.stem[:40]}-{digest}"
        if not dest.is_dir():
            UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix="partial-", dir=UPLOAD_DIR))
            extract_zip(p, tmp)
            tmp.replace(dest)
        configs = sorted(dest.rglob("adapter_config.json"), key=lambda c: len(c.parts))
        if not configs:
            raise AdapterError(f"{p.name}: no adapter_config.json inside; alignment applies the adapter with "
                               "PEFT, which needs it")  # fmt: skip
        return str(configs[0].parent)
    if (p.parent / "adapter_config.json").is_file():
        if p.name not in ("adapter_model.safetensors", "adapter_model.bin"):
            raise AdapterError(
                f"{p.name}: PEFT reads adapter_model.safetensors; rename the file and upload again"
            )
        return str(p.parent)
    raise AdapterError(f"{p.name}: alignment applies the adapter with PEFT, which needs its adapter_config.json "
                       "too; upload both files or a .zip of the folder")  # fmt: skip
