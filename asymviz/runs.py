"""The run store: one folder per fine-tuning run, readable while it runs and after it was killed.

    store = RunStore("runs")
    store.list()                       # tidy DataFrame, one row per run (columns: LIST_COLUMNS)
    run = store.get("fine_foods_minilm_b_only_r8_s0_1a2b3c4d")
    run.status, run.progress           # "running", {"step": 40, "total_steps": 150, "phase": "train"}
    run.metrics()                      # long frame: step, split, metric, value
    run.load_adapter(), run.load_init()   # asymviz.adapters.LoraAdapter, trained and at step 0

A run folder holds
- `run.json`: the record (schema below), rewritten atomically (tmp file + os.replace) as the run goes;
- `metrics.csv`: long form `step,split,metric,value`, appended and flushed line by line (live curves);
- `adapter/`: PEFT `save_pretrained` output, `base_model_name_or_path` a stable name (`minilm`, `smollm2`, an id);
- `init/`: the adapter at step 0 (`adapter_model.safetensors` in PEFT's key format + `adapter_config.json`);
- `split.json`: the row numbers of the train / validation / test examples;
- `CANCEL`: created by `RunStore.cancel` (or by hand); the run stops at its next step with status `cancelled`.

run.json (schema 1): schema, run_id, status (running | completed | failed | interrupted | cancelled), model, task,
mode, rank, seed, config (TrainConfig.to_dict()), data (task, source, labels, split seed/method, sizes, row
hashes), created_at / started_at / finished_at / updated_at (ISO 8601 UTC), heartbeat (unix s), host, pid,
pid_start, device, precision, versions {python, torch, transformers, peft, asymviz}, progress {step,
total_steps, phase}, trainable_params {lora, head, total}, head_modules, head_trained, frozen_check {factor,
modules, bit_identical} (null in mode ab), timings {load_s, prefix_s, train_s, eval_s, save_s, wall_s},
metrics {test_accuracy, test_macro_f1 | test_loss, test_perplexity, validation_..., train_loss,
examples_per_s | tokens_per_s, peak_memory_mb, peak_memory_kind}, error (one line, or null), plus the run's
setting: threads, world_size, base_model (the stable name), targets, layers. peak_memory_mb is the process's
peak RSS on a CPU (`process_max_rss`) and the peak allocated during the training steps on a GPU
(`cuda_max_allocated_training`, evaluations excluded).

`interrupted` is never written by a run: a record that says `running` reads as `interrupted` when its process is
gone (same host: pid + process start time checked) or its heartbeat is older than `STALE_S` (another host).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asymviz.errors import AsymvizError
from asymviz.processes import is_alive, process_start

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = 1
STATUSES = ("running", "completed", "failed", "interrupted", "cancelled")
# a run folder's layout: nothing outside this module spells these names
RUN_FILE = "run.json"
METRICS_FILE = "metrics.csv"
CANCEL_FILE = "CANCEL"
ADAPTER_DIR = "adapter"  # the trained adapter (PEFT save_pretrained); absent in mode head_only
INIT_DIR = "init"  # the adapter at step 0; absent in mode head_only
SPLIT_FILE = "split.json"
GENERATIONS_FILE = "generations.jsonl"
ADAPTER_CONFIG = (
    "adapter_config.json"  # inside adapter/ and init/: PEFT's, present once the folder is complete
)
# a store's own files, next to its run folders
LR_FILE = "lr_selection.csv"  # one row per lr-grid run (asymviz.training.lr_grid.LR_COLUMNS)
SWEEP_FILE = "sweep.json"  # {"sweeps": [entry, ...]}, one entry per sweep started on the store
SWEEP_DIR = ".sweep"  # worker queues and logs of the sweeps running on the store
METRIC_COLUMNS = ("step", "split", "metric", "value")
STALE_S = 600.0  # a heartbeat this old (another host) means the run is gone
DEFAULT_STORE = "runs"

# The run table's schema: column -> dtype, in column order (RunStore.list()). "object" columns hold str / None.
LIST_SCHEMA: dict[str, str] = {
    "run_id": "object", "model": "object", "task": "object", "mode": "object", "a_init": "object",
    "rank": "Int64", "alpha": "float64", "seed": "Int64", "init_seed": "Int64", "lr": "float64",
    "lr_ratio": "float64", "head_lr": "float64", "role": "object", "status": "object", "step": "Int64",
    "total_steps": "Int64", "trainable_params": "Int64", "trainable_lora": "Int64", "trainable_head": "Int64",
    "n_train": "Int64", "wall_s": "float64", "examples_per_s": "float64", "tokens_per_s": "float64",
    "peak_memory_mb": "float64", "test_accuracy": "float64", "test_macro_f1": "float64", "test_loss": "float64",
    "test_perplexity": "float64", "validation_accuracy": "float64", "validation_loss": "float64",
    "heldout_accuracy": "float64", "heldout_macro_f1": "float64", "device": "object", "created_at": "object",
    "error": "object", "group": "object", "has_weights": "bool", "path": "object",
}  # fmt: skip
LIST_COLUMNS = tuple(LIST_SCHEMA)
ROLES = (
    "main",
    "lr_grid",
    "lr_superseded",
)  # run.json "role" written by a sweep with an lr grid (absent for a
# lone run); lr_superseded: a main run whose group later chose another lr (a wider grid), kept but not counted


class RunError(AsymvizError):
    """A run folder or store that cannot be read, or a run id that does not exist."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text next to `path`, then rename over it: readers see the old or the new file, never half.
    The temporary name holds the pid and thread id, so concurrent writers never share one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented JSON (numpy / torch scalars, tuples, sets, paths converted), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=1, default=_json_default) + "\n")


# ----------------------------------------------------------------------------------------------------------
# a run folder's paths


def is_run_folder(path: str | Path) -> bool:
    """True when `path` holds a run.json."""
    return (Path(path) / RUN_FILE).exists()


def adapter_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ADAPTER_DIR


def init_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / INIT_DIR


def generations_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / GENERATIONS_FILE


def has_adapter_files(folder: str | Path) -> bool:
    """True when an adapter folder (adapter/ or init/) is complete (PEFT's adapter_config.json is there)."""
    return (Path(folder) / ADAPTER_CONFIG).exists()


def write_split(run_dir: str | Path, row_ids: dict) -> None:
    """split.json: the row numbers of each split ({"train": [...], "validation": [...], "test": [...]})."""
    write_json_atomic(Path(run_dir) / SPLIT_FILE, row_ids)


def read_split(run_dir: str | Path) -> dict:
    """split.json as written by `write_split`; RunError when it is missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / SPLIT_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{run_dir}: no readable {SPLIT_FILE} ({exc})") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _init_seed(data: dict, config: dict) -> int | None:
    """The seed of a run's init: run.json's init_seed, else the config's init_seed, else its seed."""
    if data.get("init_seed") is not None:
        return data["init_seed"]
    return config.get("init_seed") if config.get("init_seed") is not None else config.get("seed")


def annotate_run(path: str | Path, **fields: Any) -> None:
    """Merge `fields` into a finished run's run.json (atomically), e.g. a sweep's role and lr_selection."""
    file = Path(path) / RUN_FILE
    data = json.loads(file.read_text())
    data.update(fields)
    write_json_atomic(file, data)


# ----------------------------------------------------------------------------------------------------------


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
            "init_seed": _init_seed(d, cfg),
            "lr": cfg.get("lr"),
            "lr_ratio": cfg.get("lr_ratio", 1.0),
            "head_lr": cfg.get("head_lr") if cfg.get("head_lr") is not None else cfg.get("lr"),
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


# ----------------------------------------------------------------------------------------------------------


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
            "init_seed": _init_seed({}, config),
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
