"""Is a process still running? The one liveness check of asymviz (run records, the job queue).

    start = process_start(os.getpid())      # recorded next to the pid
    is_alive(pid, start)                    # False once it exited, became a zombie, or the pid was reused

Linux reads /proc/PID/stat (state, field 3; start time in clock ticks since boot, field 22); elsewhere only
kill(pid, 0) is asked, so a reused pid cannot be told apart there.
"""

from __future__ import annotations

import os


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused pid apart; None where
    there is no /proc or no such process."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def is_alive(pid: int | None, start: str | None = None) -> bool:
    """Is process `pid` running on this host? With `start` (process_start when the pid was recorded), a pid
    reused by another process reads as gone. A zombie (exited, not yet reaped) is gone; a process of another
    user counts as alive."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat(pid)
    if fields is None:
        return not os.path.exists("/proc")  # no /proc: trust kill(0); with /proc: it just vanished
    if fields[0] == "Z":
        return False
    return start is None or (len(fields) > 19 and fields[19] == start)
