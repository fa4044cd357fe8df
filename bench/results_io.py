"""One JSON shape for what a CPU benchmark measured, so that `bench/perf_table.py` can rebuild the README's table.

    from results_io import Figure, write_results
    write_results("analysis_cpu", "python bench/bench_analysis.py", rows)   # -> bench/results/analysis_cpu.json

A file holds the benchmark, the command that made it, when and where (CPU count, load average at the start and
at the end, torch version, the commit) and its rows. A row is one target: what was measured, the unit, the
figures (median, min, max and every run), the side-by-side reference when there is one (`old`), and the target
with whether it was met. Figures are what the benchmark measured; nothing here computes or edits them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA = "asymviz-bench/1"


@dataclass(frozen=True)
class Figure:
    """Repeated measurements of one quantity (≥ 1 runs): median, min and max come from `runs`."""

    runs: list[float]

    def __post_init__(self):
        if not self.runs:
            raise ValueError("runs: a Figure needs at least one measurement")

    def summary(self) -> dict:
        return {"median": statistics.median(self.runs), "min": min(self.runs), "max": max(self.runs),
                "runs": list(self.runs)}  # fmt: skip


@dataclass
class Row:
    """One line of the performance table.

    what : what was measured, in words (the table's first column)
    unit : "s", "ex/s", "x" ...
    new : the figure for this checkout
    old : the reference measured side by side in the same run (old code, a plain loop), or None
    target : the goal in `unit` (None: no goal); lower_is_better says which side of it meets it
    note : how it was measured (the table adds the benchmark's name)
    """

    what: str
    unit: str
    new: Figure
    old: Figure | None = None
    target: float | None = None
    lower_is_better: bool = True
    note: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("new", "old")}
        out["new"] = self.new.summary()
        out["old"] = self.old.summary() if self.old else None
        if self.old:
            out["old_over_new"] = statistics.median(self.old.runs) / statistics.median(self.new.runs)
        if self.target is not None:
            median = statistics.median(self.new.runs)
            out["met"] = median <= self.target if self.lower_is_better else median >= self.target
        return out


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def machine() -> dict:
    """Where the benchmark ran: CPUs, platform, torch's version (when importable), the commit."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch_version, "commit": _commit()}  # fmt: skip


def write_results(name: str, command: str, rows: list[Row], load_start: float, extra: dict | None = None,
                  folder: Path = RESULTS) -> Path:  # fmt: skip
    """Write folder/<name>.json and return its path; load_start is os.getloadavg()[0] taken before measuring."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema": SCHEMA,
        "bench": name,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "rows": [r.to_dict() for r in rows],
        **(extra or {}),
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path
