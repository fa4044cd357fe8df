"""A run folder's layout and the store's files: their names, their paths, and how they are written (atomically).

The one place that spells `run.json`, `adapter/`, `init/`, `split.json`, ... (see asymviz.runs for the layout).
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asymviz.errors import AsymvizError

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
MECHANISM_FILE = "mechanism.csv"  # a group's asymviz.mechanism table (`asymviz mechanism GROUP -o GROUP/...`)
SWEEP_DIR = ".sweep"  # worker queues and logs of the sweeps running on the store
METRIC_COLUMNS = ("step", "split", "metric", "value")
STALE_S = 600.0  # a heartbeat this old (another host) means the run is gone
DEFAULT_STORE = "runs"

# The run table's schema: column -> dtype, in column order (RunStore.list()). "object" columns hold str / None.
LIST_SCHEMA: dict[str, str] = {
    "run_id": "object", "model": "object", "task": "object", "mode": "object", "a_init": "object",
    "rank": "Int64", "alpha": "float64", "seed": "Int64", "init_seed": "Int64", "lr": "float64",
    "lr_ratio": "float64", "head_lr": "float64", "head": "object", "targets": "object", "top_layers": "Int64",
    "role": "object", "status": "object", "step": "Int64",
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
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill: the old file stays, no half-written temp file is left
        tmp.unlink(missing_ok=True)
        raise


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


def run_folder_of(path: str | Path | None) -> Path | None:
    """The run folder `path` is (it holds run.json), or whose `adapter/` it is; None for anything else (a bare
    adapter folder or file)."""
    if not path:
        return None
    p = Path(path)
    if is_run_folder(p):
        return p
    return p.parent if p.name == ADAPTER_DIR and is_run_folder(p.parent) else None


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


def init_seed_of(data: dict, config: dict) -> int | None:
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
