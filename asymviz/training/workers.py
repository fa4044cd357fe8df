"""GPU sweep workers: long-lived processes, `jobs_per_device` per GPU, that take configs from a queue folder.

    run_workers(plan, store, devices=["0", "1"], jobs_per_device=4, on_run=print)   # called by sweep()
    python -m asymviz.training.workers QUEUE_DIR STORE_DIR                          # one worker (started by it)

A worker claims a config by renaming its file (atomic), trains it with a Workspace it keeps for its whole life
(imports, base model and tokenised data are paid once per worker, not once per run), marks it done and takes
the next; with an empty queue it waits until the sweep adds more (the Plan releases main runs as grids finish)
or closes the queue. This is a queue of its own, not asymviz.jobs': its items are configs that share one loaded
model per process, where a job of asymviz.jobs is one command line that owns a device slot.

Queue folder (under the store's SWEEP_DIR): `<phase>-<n>.json` ({"config": TrainConfig.to_dict(),
"annotations": {...}}), renamed `.claimed<pid>` while trained and `.done` after; `CLOSED`: no more will come;
`worker<k>.log`: each worker's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from asymviz.runs import SWEEP_DIR, RunStore, write_json_atomic
from asymviz.training.config import TrainConfig
from asymviz.training.plan import Job, Plan, estimated_steps

CLOSED = "CLOSED"  # in a queue folder: no more configs will come; idle workers exit


def run_workers(plan: Plan, store: RunStore, devices: list[str], jobs_per_device: int, on_run) -> None:
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
        jobs = sorted(jobs, key=lambda j: -estimated_steps(j.config, sizes))  # longest first
        for job in jobs:
            stem = f"{phase:02d}-{len(ids):05d}"
            if job.config.run_id() in store:  # clear what a failed, cancelled or killed run left
                store.delete(job.config.run_id())
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
        cmd = [sys.executable, "-m", "asymviz.training.workers", str(queue), str(store.root)]
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


def worker(queue: Path, root: Path) -> int:
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


if __name__ == "__main__":  # python -m asymviz.training.workers QUEUE STORE
    if len(sys.argv) == 3:
        raise SystemExit(worker(Path(sys.argv[1]), Path(sys.argv[2])))
    raise SystemExit("usage: python -m asymviz.training.workers QUEUE_DIR STORE_DIR")
