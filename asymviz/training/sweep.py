"""Sweep execution: many runs into one store, resumable, on the CPU, one GPU or several; the CPU demo.

    configs = expand(TrainConfig(model="minilm"), tasks=["fine_foods"], modes=MODES, seeds=[0, 1, 2])
    frame = sweep(configs, "runs")                           # in this process, one after another
    frame = sweep(configs, "runs", cpu_jobs=3)               # forked CPU children side by side
    frame = sweep(configs, "runs", devices=["0", "1"])       # one worker process per GPU (workers.py)
    frame = sweep(configs, "runs", devices=["0"], jobs_per_device=4)   # four runs in flight on one GPU
    frame = sweep(configs, "runs", lrs=[3e-4, 1e-3, 3e-3], lr_ratios=[1, 4, 16])   # lrs chosen first (plan.py)
    demo("runs")                                             # the CPU demo preset; returns the comparison table

What runs, and when, is the Plan's business (asymviz.training.plan); this module only executes its jobs. Each
run's folder is `store/<config.run_id()>`, a name derived from the config, so a sweep started again skips the
runs that completed and redoes those that failed, were cancelled or were killed. In-process sweeps share a
Workspace (data, tokenised splits, the loaded base model, frozen-prefix outputs) between runs; forked CPU
children read the parent's prepared Workspace without copying it; GPU workers keep their own.

Every sweep appends an entry to the store's `sweep.json` (SWEEP_FIELDS: name, started_at, finished_at, wall_s,
devices, jobs_per_device, cpu_jobs, lrs, lr_ratios, runs, trained, reused, examples, examples_per_s, ...), so the
summed throughput of a sweep is `examples / wall_s` (start-up included), and every run it trains gets
`sweep: {name, started_at}` in its run.json.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.modes import MODES
from asymviz.runs import SWEEP_FILE, RunStore, utc_now, write_json_atomic
from asymviz.training.config import TrainConfig, preset
from asymviz.training.lr_grid import MAX_EXTENSIONS
from asymviz.training.plan import Job, Plan, expand, pending

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["sweep", "expand", "pending", "demo", "comparison_table", "read_sweeps", "SWEEP_FIELDS", "Job"]

SWEEP_FIELDS = (
    "name", "started_at", "finished_at", "wall_s", "host", "devices", "jobs_per_device", "cpu_jobs", "lrs",
    "lr_ratios", "runs", "trained", "reused", "failed", "examples", "examples_per_s", "argv",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "mode", "rank", "trainable_lora", "trainable_head", "trainable_params", "lr", "lr_ratio", "head_lr", "steps",
    "validation_accuracy", "test_accuracy", "test_macro_f1", "test_loss", "test_perplexity", "wall_s", "status",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the sweep


def sweep(
    configs: Sequence[TrainConfig],
    store: str | Path | RunStore = "runs",
    *,
    devices: Sequence[str] | None = None,
    jobs_per_device: int = 1,
    progress: Callable | None = None,
    on_run: Callable | None = None,
    cpu_jobs: int = 1,
    lrs: Sequence[float] | None = None,
    lr_ratios: Sequence[float] | None = None,
    lr_extensions: int = MAX_EXTENSIONS,
    name: str = "sweep",
    pack: int = 1,
) -> pd.DataFrame:
    """Run every config that has no completed run in `store`; returns the store's rows for all configs (with
    `lrs`: the grid runs and the main runs; the `role` column tells them apart).

    devices=None runs here on the CPU (or this process's GPU), sharing one Workspace: one run after another, or
    with `cpu_jobs` > 1 (CPU, POSIX) that many at a time in forked children after the shared work (data, model,
    frozen prefix) is done once in this process; the cores are split between the children. A list of GPU indices
    starts worker processes instead, `jobs_per_device` at a time on each GPU. `progress(ProgressEvent)` gets
    the in-process runs' progress (for forked children: their summed steps); `on_run(record)` is called as each
    run ends. A failed run is recorded in its folder and the sweep goes on. `lrs`: choose each group's learning
    rate on validation first, the head's once per task on the head_only control (asymviz.training.plan); the
    configs' own lr is then ignored. `lr_ratios`: LoRA+ ratios searched with the lr for mode ab. `lr_extensions`:
    how many points a grid may add past its ends (lr_grid.MAX_EXTENSIONS). `name` names the sweep's entry in
    sweep.json. `pack` > 1 (in process only): up to that many compatible runs train together over one base
    (asymviz.training.pack).
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    store.root.mkdir(parents=True, exist_ok=True)
    if jobs_per_device < 1:
        raise ConfigError(f"jobs_per_device: must be >= 1, got {jobs_per_device}")
    t0 = time.perf_counter()
    info = {"name": name, "started_at": utc_now()}
    entry = {**info, "finished_at": None, "wall_s": None, "host": socket.gethostname(),
             "devices": list(devices) if devices is not None else ["here"], "jobs_per_device": jobs_per_device,
             "cpu_jobs": cpu_jobs, "lrs": list(lrs) if lrs else None,
             "lr_ratios": list(lr_ratios) if lr_ratios else None, "argv": sys.argv}  # fmt: skip
    index = _record_sweep(store, entry, None)
    plan = Plan(configs, store, lrs, info, lr_ratios, lr_extensions)
    trained: list[str] = []

    def ended(record) -> None:
        trained.append(record.run_id)
        if on_run is not None:
            on_run(record)

    try:
        if devices is None and cpu_jobs > 1 and hasattr(os, "fork"):
            _sweep_forked(plan, store, progress, ended, cpu_jobs)
        elif devices is None:
            _sweep_here(plan, store, progress, ended, pack)
        else:
            from asymviz.training.workers import run_workers

            run_workers(plan, store, list(devices), jobs_per_device, ended)
    finally:
        plan.finish()
        _record_sweep(
            store, {**entry, **_sweep_totals(store, plan, trained, time.perf_counter() - t0)}, index
        )
    frame = store.list()
    ids = [c.run_id() for c in plan.all_configs()]
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True)


def _sweep_totals(store: RunStore, plan: Plan, trained: list[str], wall: float) -> dict:
    examples, failed = 0, []
    for run_id in trained:
        record = store.get(run_id) if run_id in store else None
        if record is None or record.status != "completed":
            failed.append(run_id)
            continue
        cfg = record.config
        examples += (
            int(record.progress.get("total_steps") or 0)
            * int(cfg.get("batch_size") or 0)
            * int(record.data.get("world_size") or 1)
        )
    return {
        "finished_at": utc_now(),
        "wall_s": wall,
        "runs": [c.run_id() for c in plan.all_configs()],
        "trained": trained,
        "reused": plan.reused,
        "failed": failed,
        "examples": examples,
        "examples_per_s": examples / wall if wall > 0 else None,
    }


def _record_sweep(store: RunStore, entry: dict, index: int | None) -> int:
    """Add (index None) or replace entry `index` of the store's sweep.json; returns its index."""
    path = store.root / SWEEP_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {"sweeps": []}
    if index is None:
        data["sweeps"].append(entry)
        index = len(data["sweeps"]) - 1
    else:
        data["sweeps"][index] = entry
    write_json_atomic(path, data)
    return index


def read_sweeps(store: str | Path | RunStore) -> pd.DataFrame:
    """The store's sweep.json as a frame, one row per sweep started on it (columns: SWEEP_FIELDS)."""
    import pandas as pd

    root = store.root if isinstance(store, RunStore) else Path(store)
    try:
        sweeps = json.loads((root / SWEEP_FILE).read_text())["sweeps"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        sweeps = []
    return pd.DataFrame([{k: s.get(k) for k in SWEEP_FIELDS} for s in sweeps], columns=list(SWEEP_FIELDS))


def _sweep_here(plan: Plan, store: RunStore, progress, on_run, pack: int = 1) -> None:
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    finished: set[str] = set()
    while jobs := plan.ready(finished):
        if pack > 1:  # issue 15: up to `pack` compatible runs per step over one base (training/pack.py)
            from asymviz.training.pack import train_jobs_packed

            records = train_jobs_packed(jobs, store, pack, progress, on_run, workspace=ws)
            finished.update(job.config.run_id() for job in jobs)
            if any(r.status == "cancelled" for r in records):
                return
            continue
        for job in jobs:
            cfg = job.config
            try:
                record = train(cfg, store.path(cfg.run_id()), progress, workspace=ws, overwrite=True,
                               annotations=job.annotations)  # fmt: skip
            except Exception:  # recorded in run.json (status failed); the sweep goes on
                record = store.get(cfg.run_id()) if cfg.run_id() in store else None
            finished.add(cfg.run_id())
            if on_run is not None and record is not None:
                on_run(record)
            if record is not None and record.status == "cancelled":
                return  # a cancel (or Ctrl-C) stops the sweep, not just one run


def _sweep_forked(plan: Plan, store: RunStore, progress, on_run, jobs: int) -> None:
    """CPU runs `jobs` at a time in forked children that share this process's prepared Workspace.

    Several single-threaded runs side by side use small CPUs better than one run on all cores (no thread
    barriers per operation), and the children read the parent's frozen-prefix outputs without copying them.
    """
    import multiprocessing

    from asymviz.training.loop import ProgressEvent, cpu_threads, prepare
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    ctx = multiprocessing.get_context("fork")
    finished: set[str] = set()
    while batch := plan.ready(finished):
        todo = [job.config for job in batch]
        if progress is not None:
            progress(ProgressEvent(f"{len(todo)} runs side by side", "prefix", 0, 0))
        for cfg in todo:
            prepare(cfg, ws)
        cores = cpu_threads(todo[0])
        queue, running, cancelled = list(batch), {}, False
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    job = queue.pop(0)
                    # the cores the running children leave free, shared by the runs that start now
                    free = cores - sum(c.threads or 1 for c in running.values())
                    starting = min(jobs - len(running), len(queue) + 1)
                    threads = max(1, free // starting)
                    cfg = job.config.replace(threads=threads)  # threads is not part of the run id
                    proc = ctx.Process(target=_forked_run, args=(cfg, store.root, ws, job.annotations))
                    proc.start()
                    running[proc] = cfg
                time.sleep(0.25)
                if progress is not None:
                    _report_children(progress, store, todo)
                for proc, cfg in list(running.items()):
                    if proc.exitcode is None:
                        continue
                    del running[proc]
                    finished.add(cfg.run_id())
                    if on_run is not None and cfg.run_id() in store:
                        on_run(store.get(cfg.run_id()))
                    if proc.exitcode == 130:  # cancelled: stop the sweep
                        queue.clear()
                        cancelled = True
        finally:
            for proc in running:  # interrupted: the children record their runs as cancelled
                if proc.exitcode is None:
                    proc.terminate()
            for proc in running:
                proc.join(timeout=60)
        if cancelled:
            return


def _forked_run(cfg: TrainConfig, root: Path, ws, annotations: dict) -> None:
    from asymviz.training.loop import train

    code = 1
    try:
        record = train(cfg, RunStore(root).path(cfg.run_id()), workspace=ws, overwrite=True,
                       annotations=annotations)  # fmt: skip
        code = 0 if record.status == "completed" else 130
    except BaseException:  # recorded in run.json (status failed)
        pass
    finally:
        os._exit(code)


def _report_children(progress, store: RunStore, todo) -> None:
    from asymviz.training.loop import ProgressEvent

    step = total = 0
    for cfg in todo:
        run_id = cfg.run_id()
        prog = store.get(run_id).progress if run_id in store else {}
        total += prog.get("total_steps") or cfg.steps or 0
        step += prog.get("step") or 0
    progress(ProgressEvent(f"{len(todo)} runs side by side", "train", step, total))


# ----------------------------------------------------------------------------------------------------------
# the demo


def comparison_table(frame: pd.DataFrame, store: RunStore | None = None) -> pd.DataFrame:
    """One row per run of a mode comparison, in mode order. Columns: COMPARISON_COLUMNS (lr and steps
    from each run's config)."""
    import pandas as pd

    rows = []
    order = {m: i for i, m in enumerate(MODES)}
    for _, r in frame.sort_values("mode", key=lambda c: c.map(order)).iterrows():
        rows.append({**{c: r.get(c) for c in COMPARISON_COLUMNS}, "steps": r.get("total_steps")})
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return table.dropna(axis=1, how="all")


def demo(
    store: str | Path = "runs",
    progress: Callable | None = None,
    on_run: Callable | None = None,
    cpu_jobs: int = 4,
    **overrides,
):
    """The CPU demo: preset("demo") (three LoRA modes and the head_only control, one seed) into `store`;
    returns (table, wall seconds).

    The four runs train side by side (cpu_jobs forked children, the cores split between them) after the shared
    frozen prefix is computed once. Runs already completed in the store are reused (delete them, or use a fresh
    store, to time the demo)."""
    t0 = time.perf_counter()
    configs = preset("demo", **overrides)
    frame = sweep(configs, store, progress=progress, on_run=on_run, cpu_jobs=cpu_jobs)
    return comparison_table(frame), time.perf_counter() - t0
