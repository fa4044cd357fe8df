"""Sweeps: many runs into one store, resumable, on the CPU, one GPU or several; optionally with the learning
rate chosen per mode on the validation split first.

    configs = expand(TrainConfig(model="minilm"), tasks=["fine_foods"], modes=MODES, seeds=[0, 1, 2])
    frame = sweep(configs, "runs")                           # in this process, one after another
    frame = sweep(configs, "runs", devices=["0", "1"])       # one worker process per GPU
    frame = sweep(configs, "runs", devices=["0"], jobs_per_device=4)   # four runs in flight on one GPU
    frame = sweep(configs, "runs", lrs=[3e-4, 1e-3, 3e-3])   # lr grid on validation first (lr_grid.py)
    demo("runs")                                             # the CPU demo preset; returns the comparison table

Each run's folder is `store/<config.run_id()>`, a name derived from the config, so a sweep started again skips
the runs that completed and redoes those that failed, were cancelled or were killed. In-process sweeps share a
Workspace (data, tokenised splits, the loaded base model, frozen-prefix outputs) between runs. Worker sweeps
start `jobs_per_device` long-lived processes per GPU (`python -m asymviz.training.sweep worker QUEUE STORE`, with
CUDA_VISIBLE_DEVICES set); each takes the next config from a queue folder and keeps its own Workspace, so several
runs are in flight on one GPU and each worker pays imports and model loading once. The longest runs are queued
first. With `lrs`, the lr grid runs first; each group's main runs are queued as soon as its grid has finished
(workers never wait for the whole grid).

Every sweep appends an entry to the store's `sweep.json` (SWEEP_FIELDS: name, started_at, finished_at, wall_s,
devices, jobs_per_device, cpu_jobs, lrs, runs, trained, reused, examples, examples_per_s, ...), so the summed
throughput of a sweep is `examples / wall_s` (start-up included), and every run it trains gets
`sweep: {name, started_at}` in its run.json.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.runs import RunStore, utc_now, write_json_atomic
from asymviz.training.config import MODES, TrainConfig, preset
from asymviz.training.lr_grid import LrPlan, grid_annotation, main_annotation, write_lr_selection

if TYPE_CHECKING:
    import pandas as pd

SWEEP_DIR = ".sweep"  # worker configs and logs, inside the store
SWEEP_FILE = "sweep.json"  # {"sweeps": [entry, ...]}, one entry per sweep started on the store
SWEEP_FIELDS = (
    "name", "started_at", "finished_at", "wall_s", "host", "devices", "jobs_per_device", "cpu_jobs", "lrs",
    "runs", "trained", "reused", "failed", "examples", "examples_per_s", "argv",
)  # fmt: skip
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
    a_inits: Sequence[str] | None = None,
    init_seeds: Sequence[int | None] | None = None,
) -> list[TrainConfig]:
    """The grid tasks × ranks × seeds × init_seeds × modes (× a_inits for b_only) over `base`, modes innermost.

    None keeps base's value. `a_inits` apply to mode b_only only (the other modes have no random frozen A).
    `init_seeds=[S]` makes every run share the init of seed S ("5 seeds, one init"; the run with seed S is then
    the ordinary seed-S run). Duplicates are dropped, order kept.
    """
    out, seen = [], set()
    for task, rank, seed, init_seed, mode in itertools.product(
        tasks or [base.task],
        ranks or [base.rank],
        seeds if seeds is not None else [base.seed],
        init_seeds if init_seeds is not None else [base.init_seed],
        modes or [base.mode],
    ):
        for a_init in (a_inits or [base.a_init]) if mode == "b_only" else [base.a_init]:
            cfg = base.replace(task=task, rank=rank, seed=seed, init_seed=init_seed, mode=mode, a_init=a_init)
            if cfg.run_id() not in seen:
                seen.add(cfg.run_id())
                out.append(cfg)
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


# ----------------------------------------------------------------------------------------------------------
# the plan: what to run, released as it becomes ready


@dataclass
class Job:
    config: TrainConfig
    annotations: dict = field(default_factory=dict)  # extra run.json fields (role, lr_selection, sweep)


class _Plan:
    """Without lrs: every pending config at once. With lrs: the grid first, then each group's main runs as soon
    as that group's grid runs have finished (`ready(finished)` is called again and again)."""

    def __init__(self, configs: Sequence[TrainConfig], store: RunStore, lrs, info: dict):
        self.store, self.info = store, info
        self.configs = list(configs)
        self.lr = LrPlan(configs, lrs) if lrs else None
        self.released: set[str] = set()  # groups whose main runs were queued
        self.started = False
        self.reused: list[str] = []  # completed before this sweep
        self.choices: dict = {}

    def all_configs(self) -> list[TrainConfig]:
        if self.lr is None:
            return self.configs
        grid = self.lr.grid_configs()
        mains = [c for g, choice in self.choices.items() if choice.lr is not None
                 for c in self.lr.main_configs(g, choice.lr)]  # fmt: skip
        return grid + mains

    def _jobs(self, configs, annotations) -> list[Job]:
        todo = pending(configs, self.store)
        ids = {c.run_id() for c in todo}
        self.reused += [
            c.run_id() for c in configs if c.run_id() not in ids and c.run_id() not in self.reused
        ]
        return [Job(c, {**annotations, "sweep": self.info}) for c in todo]

    def ready(self, finished: set[str]) -> list[Job]:
        jobs = []
        if not self.started:
            self.started = True
            if self.lr is None:
                return self._jobs(self.configs, {})
            jobs = self._jobs(self.lr.grid_configs(), {"role": "lr_grid"})
            # a resumed sweep: groups whose grid runs all completed earlier are released at once
        if self.lr is None:
            return []
        done = finished | set(self.reused)
        for g in self.lr.groups:
            if g in self.released or not all(c.run_id() in done for c in self.lr.grid(g)):
                continue
            self.released.add(g)
            choice = self.lr.choose(g, self.store)
            self.choices[g] = choice
            self._annotate_grid(g)
            if choice.lr is not None:
                jobs += self._jobs(self.lr.main_configs(g, choice.lr), main_annotation(choice, self.lr.lrs))
        return jobs

    def _annotate_grid(self, g) -> None:
        from asymviz.runs import annotate_run

        choice = self.choices[g]
        for row in choice.rows:
            if row["run_id"] in self.store:
                annotate_run(self.store.path(row["run_id"]), **grid_annotation(choice, row, self.lr.lrs))
        write_lr_selection(self.store.root, choice.rows)

    def finish(self) -> None:
        """Annotate the grid and main runs (also those reused from earlier sweeps) once everything has run."""
        from asymviz.runs import annotate_run

        if self.lr is not None:
            self._supersede()

        for g, choice in self.choices.items():
            self._annotate_grid(g)
            for cfg in self.lr.main_configs(g, choice.lr) if choice.lr is not None else []:
                if cfg.run_id() in self.store:
                    annotate_run(
                        self.store.path(cfg.run_id()), **main_annotation(choice, self.lr.lrs, cfg.run_id())
                    )


    def _supersede(self) -> None:
        """Main runs of a decided group trained at another lr (an earlier, narrower grid, or a sweep without a
        grid: no role) become lr_superseded."""
        from asymviz.runs import annotate_run
        from asymviz.training.lr_grid import group_key

        current = {c.run_id() for c in self.all_configs()}
        for record in self.store.records():
            if record.data.get("role") not in ("main", None) or record.run_id in current:
                continue
            try:
                cfg = TrainConfig.from_dict(record.config)
            except Exception:  # a run of another asymviz version: left as it is
                continue
            choice = self.choices.get(group_key(cfg))
            if choice is not None and choice.lr is not None and cfg.lr != choice.lr:
                annotate_run(record.path, role="lr_superseded", superseded_by_lr=choice.lr)


def _estimated_steps(cfg: TrainConfig, sizes: dict) -> int:
    """Steps a config will take (for queueing the longest first); 1 when the task cannot be read."""
    if cfg.steps:
        return cfg.steps
    key = (cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train)
    if key not in sizes:
        try:
            from asymviz.base.tasks import load_task

            sizes[key] = len(load_task(cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train).train)
        except Exception:
            sizes[key] = 1
    return max(1, math.ceil((cfg.epochs or 1.0) * sizes[key] / cfg.batch_size))


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
    name: str = "sweep",
) -> pd.DataFrame:
    """Run every config that has no completed run in `store`; returns the store's rows for all configs (with
    `lrs`: the grid runs and the main runs; the `role` column tells them apart).

    devices=None runs here on the CPU (or this process's GPU), sharing one Workspace: one run after another, or
    with `cpu_jobs` > 1 (CPU, POSIX) that many at a time in forked children after the shared work (data, model,
    frozen prefix) is done once in this process; the cores are split between the children. A list of GPU indices
    starts worker processes instead, `jobs_per_device` at a time on each GPU. `progress(ProgressEvent)` gets
    the in-process runs' progress (for forked children: their summed steps); `on_run(record)` is called as each
    run ends. A failed run is recorded in its folder and the sweep goes on. `lrs`: choose each group's learning
    rate on validation first (see asymviz.training.lr_grid); the configs' own lr is then ignored. `name` names
    the sweep's entry in sweep.json.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    store.root.mkdir(parents=True, exist_ok=True)
    if jobs_per_device < 1:
        raise ConfigError(f"jobs_per_device: must be >= 1, got {jobs_per_device}")
    t0 = time.perf_counter()
    info = {"name": name, "started_at": utc_now()}
    entry = {**info, "finished_at": None, "wall_s": None, "host": socket.gethostname(),
             "devices": list(devices) if devices is not None else ["here"], "jobs_per_device": jobs_per_device,
             "cpu_jobs": cpu_jobs, "lrs": list(lrs) if lrs else None, "argv": sys.argv}  # fmt: skip
    index = _record_sweep(store, entry, None)
    plan = _Plan(configs, store, lrs, info)
    trained: list[str] = []

    def ended(record) -> None:
        trained.append(record.run_id)
        if on_run is not None:
            on_run(record)

    try:
        if devices is None and cpu_jobs > 1 and hasattr(os, "fork"):
            _sweep_forked(plan, store, progress, ended, cpu_jobs)
        elif devices is None:
            _sweep_here(plan, store, progress, ended)
        else:
            _sweep_workers(plan, store, list(devices), jobs_per_device, ended)
    finally:
        plan.finish()
        _record_sweep(
            store, {**entry, **_sweep_totals(store, plan, trained, time.perf_counter() - t0)}, index
        )
    frame = store.list()
    ids = [c.run_id() for c in plan.all_configs()]
    return frame[frame["run_id"].isin(ids)].reset_index(drop=True)


def _sweep_totals(store: RunStore, plan: _Plan, trained: list[str], wall: float) -> dict:
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


def _fresh_folder(store: RunStore, cfg: TrainConfig) -> None:
    """Clear what a failed, cancelled or killed run left, so a finished-looking folder is never stale."""
    if cfg.run_id() in store:
        shutil.rmtree(store.path(cfg.run_id()), ignore_errors=True)


def _sweep_here(plan: _Plan, store: RunStore, progress, on_run) -> None:
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    finished: set[str] = set()
    while jobs := plan.ready(finished):
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


def _sweep_forked(plan: _Plan, store: RunStore, progress, on_run, jobs: int) -> None:
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


CLOSED = "CLOSED"  # in a queue folder: no more configs will come; idle workers exit


def _sweep_workers(plan: _Plan, store: RunStore, devices: list[str], jobs_per_device: int, on_run) -> None:
    """Persistent worker processes (jobs_per_device per device) that take configs from a queue folder.

    A worker claims a config by renaming its file (atomic), trains it with a Workspace it keeps for its whole
    life (imports, base model and tokenised data are paid once per worker, not once per run), marks it done and
    takes the next; with an empty queue it waits until this process adds more or closes the queue.
    """
    import uuid

    queue = store.root / SWEEP_DIR / f"queue-{uuid.uuid4().hex[:8]}"
    queue.mkdir(parents=True)
    device = "cpu" if devices[0] == "cpu" else "cuda"
    ids: dict[str, str] = {}  # file stem -> run id
    sizes: dict = {}

    def enqueue(jobs: list[Job], phase: int) -> None:
        jobs = sorted(jobs, key=lambda j: -_estimated_steps(j.config, sizes))  # longest first
        for job in jobs:
            stem = f"{phase:02d}-{len(ids):05d}"
            _fresh_folder(store, job.config)
            ids[stem] = job.config.run_id()
            payload = {"config": job.config.replace(device=device).to_dict(), "annotations": job.annotations}
            write_json_atomic(queue / f"{stem}.json", payload)

    finished: set[str] = set()
    phase = 0
    enqueue(plan.ready(finished), phase)
    if not ids:
        return
    procs = []
    for k, dev in enumerate(d for d in devices for _ in range(jobs_per_device)):
        env = {**os.environ, "ASYMVIZ_NO_PROGRESS": "1"}
        if dev != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = dev
        log = open(queue / f"worker{k}.log", "w")
        cmd = [sys.executable, "-m", "asymviz.training.sweep", "worker", str(queue), str(store.root)]
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    cancelled = clean = False
    try:
        while True:
            for file in queue.glob("*.done"):
                run_id = ids.get(file.name.split(".")[0])
                if run_id is None or run_id in finished:
                    continue
                finished.add(run_id)
                record = store.get(run_id) if run_id in store else None
                if record is not None:
                    cancelled = cancelled or record.status == "cancelled"
                    if on_run is not None:
                        on_run(record)
            alive = any(p.poll() is None for p, _ in procs)
            new = plan.ready(finished) if alive and not cancelled else []
            if new:
                phase += 1
                enqueue(new, phase)
            if cancelled:  # stop the sweep: drop what no worker has claimed yet
                for file in queue.glob("*.json"):
                    file.unlink(missing_ok=True)
            if cancelled or not alive or (not new and finished >= set(ids.values())):
                (queue / CLOSED).touch()  # idle workers exit
                if all(p.poll() is not None for p, _ in procs):
                    break
            time.sleep(0.5)
        clean = True
    finally:
        (queue / CLOSED).touch()
        for proc, _ in procs:  # interrupted: stop the workers (each records its run as cancelled)
            if proc.poll() is None and not clean:
                proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _worker(queue: Path, root: Path) -> int:
    """Take configs from `queue` until it is empty and closed (see _sweep_workers)."""
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    store = RunStore(root)
    ws = Workspace()
    parent = os.getppid()
    while True:
        for file in sorted(queue.glob("*.json")):
            claimed = file.with_suffix(f".claimed{os.getpid()}")
            try:
                os.rename(file, claimed)
            except OSError:
                continue  # another worker took it
            payload = json.loads(claimed.read_text())
            if "config" not in payload:  # a bare config (older queues)
                payload = {"config": payload, "annotations": {}}
            cfg = TrainConfig.from_dict(payload["config"])
            code = None
            try:
                record = train(cfg, store.path(cfg.run_id()), workspace=ws, overwrite=True,
                               annotations=payload.get("annotations") or {})  # fmt: skip
                wall = record.data.get("timings", {}).get("wall_s", 0)
                print(f"{record.status} {record.run_id} {wall:.1f}s", flush=True)
                if record.status == "cancelled":
                    code = 130
            except Exception as exc:  # recorded in the run's run.json; go on with the next
                print(f"failed {cfg.run_id()}: {exc}", flush=True)
            os.replace(claimed, claimed.with_suffix(".done"))
            if code is not None:
                return code
            break
        else:
            if (queue / CLOSED).exists() or os.getppid() != parent:
                return 0
            time.sleep(0.2)


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
