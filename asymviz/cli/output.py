"""What every command shares: the output formats, a progress bar on stderr, warnings as `warning:` lines.

Bad input ends with exit status 2 and one line on stderr that starts with `error:` (asymviz.cli.main).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from asymviz.errors import AsymvizError

FORMATS = ("csv", "json", "table")


class UsageError(AsymvizError):
    """A command line that argparse rejected."""


def write_frame(frame, fmt: str, out: str | None) -> None:
    """Write a DataFrame as csv, json (records) or a plain-text table to `out` (or stdout)."""
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", indent=1, double_precision=10) + "\n"
    elif fmt == "table":
        text = frame.to_string(index=False, max_rows=None) + "\n"
    else:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def progress_bar(total: int, desc: str, min_total: int = 16) -> Callable[[int], None] | None:
    """A tqdm bar on stderr for long jobs (None for short ones, or when stderr is not a terminal-like stream)."""
    if total < min_total or os.environ.get("ASYMVIZ_NO_PROGRESS"):
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="module", file=sys.stderr, leave=False)

    def update(done: int) -> None:
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def add_output_args(p: argparse.ArgumentParser, default_format: str = "table") -> None:
    p.add_argument(
        "--format", choices=FORMATS, default=default_format, help="output format (default: %(default)s)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def warn_problems(adapter) -> None:
    """An adapter's non-fatal findings (unknown scaling, non-finite values) as `warning:` lines on stderr."""
    for line in getattr(adapter, "problems", ()):
        print(f"warning: {line}", file=sys.stderr)


def quiet_transformers() -> None:
    """No weight-loading bars or load reports on the terminal (the CLI prints tables), and no hub lookups
    (everything here is local)."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings(
        "ignore", category=FutureWarning, module="transformers"
    )  # deprecations inside PEFT
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
