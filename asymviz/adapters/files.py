"""Opening the files an adapter names, defensively: regular files only, never blocking, bounded reads, and
file names that cannot break a one-line message.

A path given as an adapter may be a FIFO (opening it for reading blocks until a writer comes), a link to
/dev/zero (reading never ends) or a /proc file (its size says 0 but it has content). Every reader here opens
with O_NONBLOCK, checks `S_ISREG` on the open descriptor (no race between the check and the open), and then
switches back to blocking reads.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from asymviz.errors import AdapterError, display_name

_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def file_kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a character device', ... for a stat mode that is not a regular file."""
    return next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")


def open_regular(path: str | Path) -> BinaryIO:
    """Open `path` for binary reading if (after following links) it is a regular file; never blocks.

    Raises
    ------
    AdapterError naming the file and what it is (a FIFO, a device, ...), or why it cannot be opened.
    """
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise AdapterError(f"{display_name(path.name)}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AdapterError(
                f"{display_name(path.name)}: is {file_kind(st.st_mode)}, not a regular file; refused"
            )
        if _is_proc(path):
            raise AdapterError(
                f"{display_name(path.name)}: is a file under /proc or /sys, not an adapter; refused"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_size(path: str | Path) -> int:
    """The size of a regular file (AdapterError for a FIFO, a device, a /proc file, a missing file)."""
    with open_regular(path) as f:
        return os.fstat(f.fileno()).st_size


def read_bounded(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes (reads at most max_bytes + 1)."""
    with open_regular(path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AdapterError(
            f"{display_name(Path(path).name)}: more than {max_bytes:,} bytes is far too large for {what}; refused"
        )
    return data


def _is_proc(path: Path) -> bool:
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return False
    return real.parts[1:2] in (("proc",), ("sys",))
