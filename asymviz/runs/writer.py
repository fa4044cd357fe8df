"""Writing one run folder as a run goes (RunWriter): used by the training recipe; everything else only reads."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from asymviz.processes import process_start
from asymviz.runs.layout import (
    CANCEL_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUN_FILE,
    SCHEMA,
    STATUSES,
    init_seed_of,
    utc_now,
    write_json_atomic,
)  # fmt: skip


class RunWriter:
    """Writes one run folder as a run goes. Used by asymviz.training.loop; everything else only reads.

    Call `start()`, then `log()` / `update()` as training goes, and one of `finish(...)`. `path=None` makes a
    writer that keeps its record in memory and writes nothing (the other processes under data parallelism).
    """

    def __init__(self, path: str | Path | None, heartbeat_s: float = 1.0):
        self.enabled = path is not None
        self.path = Path(path) if path is not None else Path(os.devnull)
        self.heartbeat_s = heartbeat_s  # rewrite run.json with progress at most this often
        self.data: dict = {}
        self._metrics = None
        self._last_write = 0.0

    def start(self, run_id: str, config: dict, **fields: Any) -> None:
        if self.enabled:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / CANCEL_FILE).unlink(missing_ok=True)
        now = utc_now()
        self.data = {
            "schema": SCHEMA,
            "run_id": run_id,
            "status": "running",
            "model": config.get("model"),
            "task": config.get("task"),
            "mode": config.get("mode"),
            "rank": config.get("rank"),
            "seed": config.get("seed"),
            "init_seed": init_seed_of({}, config),
            "config": config,
            "created_at": now,
            "started_at": now,
            "finished_at": None,
            "updated_at": now,
            "heartbeat": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "progress": {"step": 0, "total_steps": None, "phase": "load"},
            "metrics": {},
            "timings": {},
            "error": None,
            **fields,
        }
        if self.enabled:
            self._metrics = open(self.path / METRICS_FILE, "w", newline="")  # noqa: SIM115 (closed by finish)
            self._metrics.write(",".join(METRIC_COLUMNS) + "\n")
            self._metrics.flush()
        self.write()

    def write(self) -> None:
        if not self.enabled:
            return
        self.data["updated_at"] = utc_now()
        self.data["heartbeat"] = time.time()
        write_json_atomic(self.path / RUN_FILE, self.data)
        self._last_write = time.monotonic()

    def due(self) -> bool:
        """True when the last write is older than heartbeat_s (time to flush progress and losses)."""
        return self.enabled and time.monotonic() - self._last_write >= self.heartbeat_s

    def update(self, force: bool = False, **fields: Any) -> None:
        """Merge fields into run.json; written now if forced, else at most every `heartbeat_s`."""
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(self.data.get(key), dict):
                self.data[key].update(value)
            else:
                self.data[key] = value
        if force or self.due():
            self.write()

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        """Append metric rows and flush, so a reader sees them at once."""
        if self._metrics is None:
            return
        for metric, value in values.items():
            self._metrics.write(f"{step},{split},{metric},{float(value):.10g}\n")
        self._metrics.flush()

    @property
    def cancel_requested(self) -> bool:
        return self.enabled and (self.path / CANCEL_FILE).exists()

    def finish(self, status: str, error: str | None = None, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"status: {status!r}")
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.data.update(fields)
        self.data["status"] = status
        self.data["error"] = error
        self.data["finished_at"] = utc_now()
        self.write()
