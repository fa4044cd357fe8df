"""Sweeps: many runs into one store, resumable, on the CPU, one GPU or several.

    configs = expand(TrainConfig(model="minilm"), tasks=["fine_foods"], modes=MODES, seeds=[0, 1, 2])
    frame = sweep(configs, "runs")                           # in this process, one after another
    frame = sweep(configs, "runs", devices=["0", "1"])       # one worker process per GPU
    frame = sweep(configs, "runs", devices=["0"], jobs_per_device=4)   # four runs in flight on one GPU
    demo("runs")                                             # the CPU demo preset; returns the comparison table

Each run's folder is `store/<config.run_id()>`, a name derived from the config, so a sweep started again skips
the runs that completed and redoes those that failed, were cancelled or were killed. In-process sweeps share a
Workspace (data, tokenised splits, the loaded base model, frozen-prefix outputs) between runs. Worker sweeps
start `jobs_per_device` long-lived processes per GPU (`python -m asymviz.training.sweep worker QUEUE STORE`, with
CUDA_VISIBLE_DEVICES set); each takes the next config from a queue folder and keeps its own Workspace, so several
runs are in flight on one GPU and each worker pays imports and model loading once.
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
        tasks or [base.task],
        ranks or [base.rank],
        seeds if seeds is not None else [base.seed],
        modes or [base.mode],
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
    cpu_jobs: int = 1,
) -> pd.DataFrame:
    """Run every config that has no completed run in `store`; returns the store's rows for all `configs`.

    devices=None runs here on the CPU (or this process's GPU), sharing one Workspace: one run after another, or
    with `cpu_jobs` > 1 (CPU, POSIX) that many at a time in forked children after the shared work (data, model,
    frozen prefix) is done once in this process; the cores are split between the children. A list of GPU indices
    starts worker processes instead, `jobs_per_device` at a time on each GPU. `progress(ProgressEvent)` gets
    the in-process runs' progress (for forked children: their summed steps); `on_run(record)` is called as each
    run ends. A failed run is recorded in its folder and the sweep goes on.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    store.root.mkdir(parents=True, exist_ok=True)
    todo = pending(configs, store)
    if jobs_per_device < 1:
        raise ConfigError(f"jobs_per_device: must be >= 1, got {jobs_per_device}")
    if devices is None and cpu_jobs > 1 and len(todo) > 1 and hasattr(os, "fork"):
        _sweep_forked(todo, store, progress, on_run, cpu_jobs)
    elif devices is None:
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


def _sweep_forked(todo, store: RunStore, progress, on_run, jobs: int) -> None:
    """CPU runs `jobs` at a time in forked children that share this process's prepared Workspace.

    Several single-threaded runs side by side use small CPUs better than one run on all cores (no thread
    barriers per operation), and the children read the parent's frozen-prefix outputs without copying them.
    """
    import multiprocessing

    from asymviz.training.loop import ProgressEvent, cpu_threads, prepare
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    if progress is not None:
        progress(ProgressEvent(f"{len(todo)} runs side by side", "prefix", 0, 0))
    for cfg in todo:
        prepare(cfg, ws)
    cores = cpu_threads(todo[0])
    per_child = max(1, cores // min(jobs, len(todo)))
    ctx = multiprocessing.get_context("fork")
    queue, running = list(todo), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                cfg = queue.pop(0).replace(threads=per_child)  # threads is not part of the run id
                proc = ctx.Process(target=_forked_run, args=(cfg, store.root, ws))
                proc.start()
                running[proc] = cfg
            time.sleep(0.25)
            if progress is not None:
                _report_children(progress, store, todo)
            for proc, cfg in list(running.items()):
                if proc.exitcode is None:
                    continue
                del running[proc]
                if on_run is not None and cfg.run_id() in store:
                    on_run(store.get(cfg.run_id()))
                if proc.exitcode == 130:  # cancelled: stop the sweep
                    queue.clear()
    finally:
        for proc in running:  # interrupted: the children record their runs as cancelled
            if proc.exitcode is None:
                proc.terminate()
        for proc in running:
            proc.join(timeout=60)


def _forked_run(cfg: TrainConfig, root: Path, ws) -> None:
    from asymviz.training.loop import train

    code = 1
    try:
        record = train(cfg, RunStore(root).path(cfg.run_id()), workspace=ws, overwrite=True)
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


def _sweep_workers(todo, store: RunStore, devices: list[str], jobs_per_device: int, on_run) -> None:
    """Persistent worker processes (jobs_per_device per device) that take configs from a queue folder.

    A worker claims a config by renaming its file (atomic), trains it with a Workspace it keeps for its whole
    life (imports, base model and tokenised data are paid once per worker, not once per run), and takes the next.
    """
    import uuid

    if not todo:
        return
    queue = store.root / SWEEP_DIR / f"queue-{uuid.uuid4().hex[:8]}"
    queue.mkdir(parents=True)
    for i, cfg in enumerate(todo):
        device = "cpu" if devices[0] == "cpu" else "cuda"
        write_json_atomic(queue / f"{i:05d}.json", cfg.replace(device=device).to_dict())
    procs = []
    for k, dev in enumerate(d for d in devices for _ in range(jobs_per_device)):
        env = {**os.environ, "ASYMVIZ_NO_PROGRESS": "1"}
        if dev != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = dev
        log = open(queue / f"worker{k}.log", "w")
        cmd = [sys.executable, "-m", "asymviz.training.sweep", "worker", str(queue), str(store.root)]
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    reported: set[str] = set()
    ids = [c.run_id() for c in todo]
    try:
        while True:
            done = all(p.poll() is not None for p, _ in procs)
            for run_id in ids:
                if run_id not in reported and run_id in store:
                    record = store.get(run_id)
                    if record.status not in ("running", "interrupted") or (
                        done and record.status == "interrupted"
                    ):
                        reported.add(run_id)
                        if on_run is not None:
                            on_run(record)
            if done:
                break
            time.sleep(0.5)
    finally:
        for proc, _ in procs:  # interrupted: stop the workers (each records its run as cancelled)
            if proc.poll() is None:
                proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _worker(queue: Path, root: Path) -> int:
    """Take configs from `queue` until it is empty (see _sweep_workers)."""
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    store = RunStore(root)
    ws = Workspace()
    while True:
        for file in sorted(queue.glob("*.json")):
            claimed = file.with_suffix(f".claimed{os.getpid()}")
            try:
                os.rename(file, claimed)
            except OSError:
                continue  # another worker took it
            cfg = TrainConfig.from_dict(json.loads(claimed.read_text()))
            try:
                record = train(cfg, store.path(cfg.run_id()), workspace=ws, overwrite=True)
                print(
                    f"{record.status} {record.run_id} {record.data.get('timings', {}).get('wall_s', 0):.1f}s",
                    flush=True,
                )
                if record.status == "cancelled":
                    return 130
            except Exception as exc:  # recorded in the run's run.json; go on with the next
                print(f"failed {cfg.run_id()}: {exc}", flush=True)
            break
        else:
            return 0


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
        rows.append(
            {**{c: r.get(c) for c in COMPARISON_COLUMNS}, "lr": cfg.get("lr"), "steps": r.get("total_steps")}
        )
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return table.dropna(axis=1, how="all")


def demo(
    store: str | Path = "runs",
    progress: Callable | None = None,
    on_run: Callable | None = None,
    cpu_jobs: int = 3,
    **overrides,
):
    """The CPU demo: preset("demo") (three modes, one seed) into `store`; returns (table, wall seconds).

    The three runs train side by side (cpu_jobs forked children, the cores split between them) after the shared
    frozen prefix is computed once. Runs already completed in the store are reused (delete them, or use a fresh
    store, to time the demo)."""
    t0 = time.perf_counter()
    configs = preset("demo", **overrides)
    frame = sweep(configs, store, progress=progress, on_run=on_run, cpu_jobs=cpu_jobs)
    return comparison_table(frame), time.perf_counter() - t0


if __name__ == "__main__":  # python -m asymviz.training.sweep worker QUEUE STORE
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        raise SystemExit(_worker(Path(sys.argv[2]), Path(sys.argv[3])))
    raise SystemExit("usage: python -m asymviz.training.sweep worker QUEUE_DIR STORE_DIR")
