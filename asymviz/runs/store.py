"""Reading runs: one run folder (RunRecord) and a folder of them (RunStore), and the run table's schema.

store = RunStore("runs")
store.list()                       # one row per run: the columns and dtypes of LIST_SCHEMA
store.get(run_id).metrics()        # metrics.csv as a long frame
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.processes import is_alive
from asymviz.runs.layout import (
    CANCEL_FILE,
    DEFAULT_STORE,
    LIST_COLUMNS,
    LIST_SCHEMA,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUN_FILE,
    STALE_S,
    RunError,
    adapter_dir,
    has_adapter_files,
    init_dir,
    init_seed_of,
    is_run_folder,
)  # fmt: skip

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class RunRecord:
    """One run folder, as read from its run.json (status already corrected for dead processes)."""

    path: Path
    data: dict = field(repr=False)  # run.json as stored

    @property
    def run_id(self) -> str:
        return self.data.get("run_id") or self.path.name

    @property
    def status(self) -> str:
        status = self.data.get("status", "interrupted")
        if status == "running" and not self._is_live():
            return "interrupted"
        return status

    @property
    def config(self) -> dict:
        return self.data.get("config", {})

    @property
    def progress(self) -> dict:
        return self.data.get("progress", {})

    @property
    def final_metrics(self) -> dict:
        return self.data.get("metrics", {})

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    @property
    def adapter_path(self) -> Path:
        return adapter_dir(self.path)

    @property
    def init_path(self) -> Path:
        return init_dir(self.path)

    @property
    def has_adapter(self) -> bool:
        """False for a run that trains no adapter (mode head_only, run.json has_adapter false)."""
        return self.data.get("has_adapter", self.data.get("mode", self.config.get("mode")) != "head_only")

    @property
    def has_weights(self) -> bool:
        """True when the trained adapter is saved and complete."""
        return has_adapter_files(self.adapter_path)

    @property
    def cancel_requested(self) -> bool:
        return (self.path / CANCEL_FILE).exists()

    def _is_live(self) -> bool:
        pid, host = self.data.get("pid"), self.data.get("host")
        if pid is not None and host == socket.gethostname():
            return is_alive(int(pid), self.data.get("pid_start"))
        beat = self.data.get("heartbeat")
        return beat is not None and time.time() - float(beat) < STALE_S

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        path = Path(path)
        try:
            with open(path / RUN_FILE) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise RunError(f"{path}: not a run folder (no {RUN_FILE})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunError(f"{path / RUN_FILE}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise RunError(f"{path / RUN_FILE}: not a JSON object")
        return cls(path, data)

    def row(self) -> dict:
        """This run as one row of `RunStore.list()` (keys: LIST_COLUMNS)."""
        d, cfg, m = self.data, self.config, self.final_metrics
        trainable = d.get("trainable_params") or {}
        timings = d.get("timings") or {}
        prog = self.progress
        return {
            "run_id": self.run_id,
            "model": d.get("model", cfg.get("model")),
            "task": d.get("task", cfg.get("task")),
            "mode": d.get("mode", cfg.get("mode")),
            "a_init": cfg.get("a_init") if d.get("mode", cfg.get("mode")) == "b_only" else None,
            "rank": d.get("rank", cfg.get("rank")),
            "alpha": cfg.get("alpha"),
            "seed": d.get("seed", cfg.get("seed")),
            "init_seed": init_seed_of(d, cfg),
            "lr": cfg.get("lr"),
            "lr_ratio": cfg.get("lr_ratio", 1.0),
            "head_lr": cfg.get("head_lr") if cfg.get("head_lr") is not None else cfg.get("lr"),
            "head": _joined(d.get("head_modules") or cfg.get("head")),
            "targets": _joined(d.get("targets") or cfg.get("targets")),
            "top_layers": cfg.get("top_layers"),
            "role": d.get("role"),
            "status": self.status,
            "step": prog.get("step"),
            "total_steps": prog.get("total_steps"),
            "trainable_params": trainable.get("total"),
            "trainable_lora": trainable.get("lora"),
            "trainable_head": trainable.get("head"),
            "n_train": (d.get("data") or {}).get("n_train"),
            "wall_s": timings.get("wall_s"),
            "examples_per_s": m.get("examples_per_s"),
            "tokens_per_s": m.get("tokens_per_s"),
            "peak_memory_mb": m.get("peak_memory_mb"),
            "test_accuracy": m.get("test_accuracy"),
            "test_macro_f1": m.get("test_macro_f1"),
            "test_loss": m.get("test_loss"),
            "test_perplexity": m.get("test_perplexity"),
            "validation_accuracy": m.get("validation_accuracy"),
            "validation_loss": m.get("validation_loss"),
            "heldout_accuracy": m.get("heldout_accuracy"),
            "heldout_macro_f1": m.get("heldout_macro_f1"),
            "device": d.get("device"),
            "created_at": d.get("created_at"),
            "error": d.get("error"),
            "path": str(self.path),
        }

    def metrics(self) -> pd.DataFrame:
        """metrics.csv as a long frame: step (int), split (str), metric (str), value (float).

        A line cut short by a kill (the last one) is skipped, so this works on a live or killed run.
        """
        import pandas as pd

        rows = []
        try:
            text = (self.path / METRICS_FILE).read_text()
        except FileNotFoundError:
            text = ""
        reader = csv.reader(io.StringIO(text))
        next(reader, None)  # header
        for rec in reader:
            if len(rec) != 4:
                continue
            try:
                rows.append((int(rec[0]), rec[1], rec[2], float(rec[3])))
            except ValueError:
                continue
        frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
        return frame.astype({"step": "int64", "split": "object", "metric": "object", "value": "float64"})

    def load_adapter(self):
        """The trained adapter (asymviz.adapters.LoraAdapter)."""
        from asymviz.adapters import load_adapter

        if not self.has_adapter:
            raise RunError(f"{self.run_id}: mode head_only trains no adapter (only the task head)")
        if not self.has_weights:
            raise RunError(f"{self.run_id}: no trained adapter (status {self.status})")
        return load_adapter(self.adapter_path)

    def load_init(self):
        """The adapter at step 0 (asymviz.adapters.LoraAdapter)."""
        from asymviz.adapters import load_adapter

        if not self.has_adapter:
            raise RunError(f"{self.run_id}: mode head_only trains no adapter (only the task head)")
        if not has_adapter_files(self.init_path):
            raise RunError(f"{self.run_id}: no initial adapter saved")
        return load_adapter(self.init_path)


def _joined(names) -> str | None:
    """A list of module names as one comma-joined string ("pooler,classifier"); None when there is none."""
    if not names:
        return None
    return names if isinstance(names, str) else ",".join(str(n) for n in names)


def read_run_json(run_dir: str | Path) -> dict:
    """A run folder's run.json as a dict; RunError when it is missing, unreadable or not an object."""
    return RunRecord.load(run_dir).data


# ----------------------------------------------------------------------------------------------------------


def run_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts keyed by LIST_COLUMNS) as the run table: columns and dtypes of LIST_SCHEMA, in its order."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(LIST_COLUMNS))
    for col, dtype in LIST_SCHEMA.items():
        if dtype == "Int64":
            frame[col] = pd.array(pd.to_numeric(frame[col], errors="coerce"), dtype="Int64")
        elif dtype == "float64":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        elif dtype == "bool":
            frame[col] = frame[col].fillna(False).astype(bool)
    return frame


def list_runs(store: str | Path = DEFAULT_STORE) -> pd.DataFrame:
    """`RunStore(store).list()`: one row per run, columns LIST_COLUMNS."""
    return RunStore(store).list()


class RunStore:
    """A folder of run folders. Reading never needs more than each run's run.json."""

    def __init__(self, root: str | Path = DEFAULT_STORE):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def path(self, run_id: str) -> Path:
        """The run's folder: `root/run_id`, or `root/<group>/run_id` where a group holds it; a new run's
        folder is `root/run_id`."""
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise RunError(f"bad run id {run_id!r}")
        top = self.root / run_id
        if (top / RUN_FILE).exists():
            return top
        for group in self._groups():
            if (group / run_id / RUN_FILE).exists():
                return group / run_id
        return top

    def __contains__(self, run_id: str) -> bool:
        return is_run_folder(self.path(run_id))

    def _groups(self) -> list[Path]:
        """Sub-folders without a run.json: groups of runs (e.g. one per experiment in cached_runs/)."""
        if not self.root.is_dir():
            return []
        return [
            Path(e.path)
            for e in sorted(os.scandir(self.root), key=lambda e: e.name)
            if not e.name.startswith(".")
            and e.is_dir()
            and not os.path.exists(os.path.join(e.path, RUN_FILE))
        ]

    def records(self) -> Iterator[RunRecord]:
        """Every readable run: the store's own run folders, then those one level down in group folders (a
        sub-folder without run.json), each sorted by run id; folders without a readable run.json are skipped."""
        if not self.root.is_dir():
            return
        for folder in [self.root, *self._groups()]:
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if not os.path.exists(os.path.join(entry.path, RUN_FILE)):
                    continue
                try:
                    yield RunRecord.load(entry.path)
                except RunError:
                    continue

    def groups(self) -> list[str]:
        """The names of the store's group folders that hold runs."""
        return [
            g.name for g in self._groups() if any((p / RUN_FILE).exists() for p in g.iterdir() if p.is_dir())
        ]

    def get(self, run_id: str) -> RunRecord:
        path = self.path(run_id)
        if not (path / RUN_FILE).exists():
            raise RunError(f"no run {run_id!r} in {self.root}")
        return RunRecord.load(path)

    def list(self) -> pd.DataFrame:
        """One row per run. Columns (in this order): LIST_COLUMNS; metrics are NaN where they do not apply."""

        rows = []
        for record in self.records():
            row = record.row()
            row["group"] = "" if record.path.parent == self.root else record.path.parent.name
            row["has_weights"] = record.has_weights
            rows.append(row)
        return run_table(rows)

    def cancel(self, run_id: str) -> None:
        """Ask a running run to stop at its next step (it ends with status `cancelled`)."""
        (self.path(run_id) / CANCEL_FILE).touch()

    def delete(self, run_id: str) -> None:
        import shutil

        shutil.rmtree(self.path(run_id))
