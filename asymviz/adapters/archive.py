"""Unpack an uploaded adapter .zip safely: no paths outside its root, no links, no zip bombs."""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from asymviz.errors import AdapterError

MAX_UNPACKED_BYTES = 8 * 1024**3  # a LLaMA-70B adapter at r=64 is ~3 GiB; more is not an adapter
MAX_MEMBERS = 10_000
MAX_RATIO = 200  # uncompressed / compressed for any member over 1 MiB (safetensors barely compresses)


def check_zip(path: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> list[zipfile.ZipInfo]:
    """The archive's file members, after checking every member's path, type and size."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise AdapterError(f"{path.name}: not a readable zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise AdapterError(f"{path.name}: {len(infos):,} members is too many for an adapter archive")
    total = 0
    files = []
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
            raise AdapterError(f"{path.name}: member {name!r} points outside the archive's root; refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise AdapterError(f"{path.name}: member {name!r} is a symbolic link; refused")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise AdapterError(f"{path.name}: member {name!r} is encrypted")
        total += info.file_size
        if total > max_bytes:
            raise AdapterError(
                f"{path.name}: unpacks to more than {max_bytes / 1024**3:.1f} GiB; refused as an absurd size"
            )
        if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise AdapterError(
                f"{path.name}: member {name!r} expands {info.file_size / max(info.compress_size, 1):,.0f}-fold; "
                "refused as a likely zip bomb"
            )
        files.append(info)
    if not files:
        raise AdapterError(f"{path.name}: the archive is empty")
    return files


def extract_zip(path: Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Extract a checked archive into `dest`, counting bytes as they are written (the sizes in a zip's
    directory are claims, not facts)."""
    path, dest = Path(path), Path(dest)
    files = check_zip(path, max_bytes)
    written = 0
    with zipfile.ZipFile(path) as zf:
        for info in files:
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise AdapterError(f"{path.name}: unpacks to more than its directory claims; refused")
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
                raise AdapterError(f"{path.name}: member {info.filename!r} is corrupt ({exc})") from None
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
