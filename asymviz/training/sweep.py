"""Sweeps: many runs into one store, resumable, on the CPU, one GPU or several.

    configs = expand(TrainConfig(model="minilm"), tasks=["fine_foods"], modes=MODES, seeds=[0, 1, 2])
    frame = sweep(configs, "runs")                           # in this process, one after another
    frame = sweep(configs, "runs", devices=["0", "1"])       # one worker process per GPU
    frame = sweep(configs, "runs", devices=["0"], jobs_per_device=4)   # four runs in flight on one GPU
    demo("runs")                                             # the CPU demo preset; returns the comparison table

Each run's folder is `store/<config.run_id()>`, a name derived from the config, so a sweep started again skips
the runs that completed and redoes those that failed, were cancelled or were killed. In-process sweeps share a
Workspace (data, tokenised splits, the loaded base model, frozen-prefix outputs) between runs; worker sweeps start
`python -m asymviz.training train --config FILE --out DIR` per run with CUDA_VISIBLE_DEVICES set.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.runs import RunStore, write_json_atomic
from asymviz.training.config import MODES, TrainConfig, preset

if TYPE_CHECKING:
    import pandas as pd

SWEEP_DIR = ".sweep"  # worker configs and logs, inside the store
COMPARISON_COLUMNS = (
    "mode", "rank", "trainable_lora", "trainable_head", "trainable_params", "lr", "steps",
    "validation_accuracy", "test_accuracy", "test_macro_f1", "test_loss", "test_perplexity", "wall_s", "status",
)  # fmt: skip


def expand(
    base: TrainConfig,
    tasks: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    ranks: Sequence[int] | None = None,
) -> list[TrainConfig]:
    """The grid tasks × ranks × seeds × modes over `base` (None keeps base's value), modes innermost."""
    out = []
    for task, rank, seed, mode in itertools.product(
        tasks or [base.task], ranks or [base.rank], seeds if seeds is not None else [base.seed], modes or [base.mode]
    ):
        out.append(base.replace(task=task, rank=rank, seed=seed, mode=mode))
    return out


def pending(configs: Sequence[TrainConfig], store: RunStore) -> list[TrainConfig]:
    """The configs without a completed (or live running) run in the store, without duplicates."""
    todo, seen = [], set()
    for cfg in configs:
        run_id = cfg.run_id()
        if run_id in seen:
            continue
        seen.add(run_id)
        if run_id in store and store.get(run_id).status in ("completed", "running"):
            continue
        todo.append(cfg)
    return todo


def sweep(
    configs: Sequence[TrainConfig],
    store: str | Path | RunStore = "runs",
    *,
    devices: Sequence[str] | None = None,
    jobs_per_device: int = 1,
    progress: Callable | None = None,
    on_run: Callable | None = None,
) -> pd.DataFrame:
    """Run every config that has no completed run in `store`; returns the store's rows for all `configs`.

    devices=None runs in this process, one run after another (sharing a Workspace). A list of GPU indices
    starts worker processes instead, `jobs_per_device` at a time on each GPU. `progress(ProgressEvent)` is
    passed to in-process runs; `on_run(record)` is called as each run ends. A failed run is recorded in its
    folder and the sweep goes on.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    store.root.mkdir(parents=True, exist_ok=True)
    todo = pending(configs, store)
    if jobs_per_device < 1:
        raise ConfigError(f"jobs_per_device: must be >= 1, got {jobs_per_device}")
    if devices is None:
        _sweep_here(todo, store, progress, on_run)
    else:
        _sweep_workers(todo, store, list(devices), jobs_per_device, on_run)
    frame = store.list()
    ids = [c.run_id() for c in configs]
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True)


def _sweep_here(todo, store: RunStore, progress, on_run) -> None:
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    for cfg in todo:
        try:
            record = train(cfg, store.path(cfg.run_id()), progress, workspace=ws, overwrite=True)
        except Exception:  # recorded in run.json (status failed); the sweep goes on
            record = store.get(cfg.run_id()) if cfg.run_id() in store else None
        if on_run is not None and record is not None:
            on_run(record)
        if record is not None and record.status == "cancelled":
            break  # a cancel (or Ctrl-C) stops the sweep, not just one run


def _sweep_workers(todo, store: RunStore, devices: list[str], jobs_per_device: int, on_run) -> None:
    work = store.root / SWEEP_DIR
    work.mkdir(exist_ok=True)
    slots = [d for d in devices for _ in range(jobs_per_device)]
    queue = list(todo)
    running: dict[str, tuple[subprocess.Popen, str, object]] = {}  # slot key -> (process, run_id, log)
    free = [f"{d}#{k}" for k, d in enumerate(slots)]
    try:
        while queue or running:
            while queue and free:
                slot = free.pop(0)
                cfg = queue.pop(0)
                run_id = cfg.run_id()
                conf = work / f"{run_id}.json"
                write_json_atomic(conf, cfg.replace(device="cuda").to_dict())
                log = open(work / f"{run_id}.log", "w")
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": slot.split("#")[0], "ASYMVIZ_NO_PROGRESS": "1"}
                cmd = [sys.executable, "-m", "asymviz.training", "train", "--config", str(conf),
                       "--out", str(store.path(run_id)), "--overwrite"]  # fmt: skip
                running[slot] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), run_id, log)
            time.sleep(0.2)
            for slot, (proc, run_id, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[slot]
                free.append(slot)
                if on_run is not None and run_id in store:
                    on_run(store.get(run_id))
    finally:
        for proc, _, log in running.values():  # interrupted: stop the workers (they record `cancelled`)
            proc.terminate()
        for proc, _, log in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


# ----------------------------------------------------------------------------------------------------------
# the demo


def comparison_table(frame: pd.DataFrame, store: RunStore | None = None) -> pd.DataFrame:
    """One row per run of a mode comparison, in mode order. Columns: COMPARISON_COLUMNS (lr and steps
    from each run's config)."""
    import pandas as pd

    rows = []
    order = {m: i for i, m in enumerate(MODES)}
    for _, r in frame.sort_values("mode", key=lambda c: c.map(order)).iterrows():
        cfg = json.loads(Path(r["path"], "run.json").read_text()).get("config", {})
        rows.append({**{c: r.get(c) for c in COMPARISON_COLUMNS}, "lr": cfg.get("lr"), "steps": r.get("total_steps")})
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return table.dropna(axis=1, how="all")


def demo(store: str | Path = "runs", progress: Callable | None = None, on_run: Callable | None = None, **overrides):
    """The CPU demo: preset("demo") (three modes, one seed) into `store`; returns (table, wall seconds).

    Runs already completed in the store are reused (delete them, or use a fresh store, to time the demo)."""
    t0 = time.perf_counter()
    configs = preset("demo", **overrides)
    frame = sweep(configs, store, progress=progress, on_run=on_run)
    return comparison_table(frame), time.perf_counter() - t0
