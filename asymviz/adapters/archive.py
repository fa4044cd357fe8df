"""Unpack an uploaded adapter .zip safely: no paths outside its root, no links, no zip bombs, no full disk.

Every member's name, type and declared size is checked (check_zip); then only the members an adapter
reader can use (WANTED_SUFFIXES: weights and configs) are extracted, streaming, with a byte budget that
counts what is really written (a zip's sizes are claims), after checking the temp folder has room.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from asymviz.errors import AdapterError, display_name

MAX_UNPACKED_BYTES = 8 * 1024**3  # a LLaMA-70B adapter at r=64 is ~3 GiB; more is not an adapter
MAX_MEMBERS = 10_000
MAX_RATIO = 200  # uncompressed / compressed for any member over 1 MiB (safetensors barely compresses)
WANTED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json")  # what readers open; the rest stays packed
FREE_SPACE_MARGIN = 256 * 1024**2  # leave this much of the temp disk free


def check_zip(path: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> list[zipfile.ZipInfo]:
    """The archive's file members, after checking every member's path, type and size."""
    from asymviz.adapters.files import open_regular

    path = Path(path)
    label = display_name(path.name)
    try:
        with open_regular(path) as f, zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise AdapterError(f"{label}: not a readable zip archive ({display_name(exc, 120)})") from None
    if len(infos) > MAX_MEMBERS:
        raise AdapterError(f"{label}: {len(infos):,} members is too many for an adapter archive; refused")
    total = 0
    files = []
    for info in infos:
        name = display_name(info.filename, 100)
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.filename.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
            raise AdapterError(f"{label}: member {name!r} points outside the archive's root; refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise AdapterError(f"{label}: member {name!r} is a symbolic link; refused")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise AdapterError(f"{label}: member {name!r} is encrypted")
        total += info.file_size
        if total > max_bytes:
            raise AdapterError(
                f"{label}: unpacks to more than {max_bytes / 1024**3:.1f} GiB; refused as an absurd size"
            )
        if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise AdapterError(
                f"{label}: member {name!r} expands {info.file_size / max(info.compress_size, 1):,.0f}-fold; "
                "refused as a likely zip bomb"
            )
        files.append(info)
    if not files:
        raise AdapterError(f"{label}: the archive is empty")
    return files


def extract_zip(path: Path, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Extract a checked archive's weight and config members into `dest`, counting bytes as they are written
    (the sizes in a zip's directory are claims, not facts). Other members (READMEs, images) stay packed."""
    from asymviz.adapters.files import open_regular

    path, dest = Path(path), Path(dest)
    label = display_name(path.name)
    files = [i for i in check_zip(path, max_bytes) if i.filename.lower().endswith(WANTED_SUFFIXES)]
    claimed = sum(i.file_size for i in files)
    free = shutil.disk_usage(dest).free
    if claimed + FREE_SPACE_MARGIN > free:
        raise AdapterError(
            f"{label}: unpacking needs {claimed:,} bytes but the temp folder has {free:,} free; refused"
        )
    written = 0
    with open_regular(path) as f, zipfile.ZipFile(f) as zf:
        for info in files:
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes or written > claimed:
                            raise AdapterError(f"{label}: unpacks to more than its directory claims; refused")
                        out.write(chunk)
            except (
                zipfile.BadZipFile,
                OSError,
                EOFError,
                zlib.error,
                NotImplementedError,
                RuntimeError,
            ) as exc:
                raise AdapterError(
                    f"{label}: member {display_name(info.filename, 100)!r} is corrupt ({display_name(exc, 100)})"
                ) from None
    return dest


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
