"""A detached-process queue: each job is a command line run as a separate OS process, one per device slot, first
come first served. It knows nothing about what the commands do (the app queues `asymviz train` / `asymviz sweep`
command lines, built by asymviz.cli.training).

    job = submit(store, ["python", "-m", "asymviz", "sweep", ...], run_dir=store, device="auto")
    jobs_frame(store)       # one row per job: status, queue position, elapsed time
    cancel(store, job.job_id)

This is one of three queues in asymviz, each a different thing: this one holds *command lines* that must
outlive the web app's process and take a device slot each; a GPU sweep's worker queue
(asymviz.training.workers) holds *configs* handed to long-lived workers that keep a model loaded between runs;
the app's analysis jobs (app/cached.py) are *function calls* in server threads whose results are the cache.

Nothing runs inside the web app's process. `submit` writes a job file and starts a detached *runner*
(`python -m asymviz.jobs run QUEUE JOB_ID`, its own session) that waits for its turn, takes a device slot
(an exclusive `flock` on `slots/<slot>.lock`: one job per GPU, or one on the CPU), starts the training
command as its child, watches for a cancel request, and records how it ended. Closing the browser tab or
restarting the app neither kills nor orphans a job: the state is on disk, under the run store:

    <store>/.queue/<job_id>.json     the job (atomic writes: write a temp file, then rename)
    <store>/.queue/<job_id>.log      the training command's stdout and stderr
    <store>/.queue/<job_id>.cancel   a cancel request (flag file)
    <store>/.queue/slots/<slot>.lock held by the runner whose job trains on that slot

If a runner dies (machine restart, SIGKILL), the kernel releases its lock, its child gets SIGTERM (Linux
parent-death signal), and the job shows as `interrupted`; the queue moves on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.processes import is_alive, process_start
from asymviz.runs import write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

QUEUE_DIR = ".queue"
STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
POLL_S = 0.25
CANCEL_GRACE_S = 15.0
JOB_COLUMNS = [
    "job_id", "group", "label", "status", "position", "slot", "created", "started", "finished", "elapsed_s",
    "returncode", "run_dir", "error", "meta",
]  # fmt: skip
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Job:
    job_id: str
    argv: list[str]  # the training command, run as the runner's child
    run_dir: str  # where the command writes its run (watched by the app)
    device: str = "cpu"  # "cpu", "cuda" (any free GPU) or "auto" (a GPU when there is one, else the CPU)
    label: str = ""  # shown in the app
    group: str = ""  # jobs submitted together (e.g. the three modes of one request)
    status: str = "queued"
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    slot: str | None = None  # "cpu" or "cuda:<i>"
    runner_pid: int | None = None
    runner_start: str | None = (
        None  # the runner's process start time (asymviz.processes): tells a reused pid apart
    )
    child_pid: int | None = None
    returncode: int | None = None
    error: str | None = None  # last lines of the log when the command failed
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the command
    meta: dict = field(
        default_factory=dict
    )  # what the app shows (e.g. model, task, mode, steps); not used here


# ------------------------------------------------------------------------------------------------------------
# files


def queue_dir(store: str | Path) -> Path:
    return Path(store) / QUEUE_DIR


def _job_path(queue: Path, job_id: str) -> Path:
    return queue / f"{job_id}.json"


def _write_job(queue: Path, job: Job) -> None:
    write_text_atomic(_job_path(queue, job.job_id), json.dumps(asdict(job), indent=1))


def _read_job(path: Path) -> Job | None:
    try:
        return Job(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # removed meanwhile, or not a job file


def read_job(store: str | Path, job_id: str) -> Job | None:
    return _read_job(_job_path(queue_dir(store), job_id))


def _update(queue: Path, job_id: str, **changes) -> Job | None:
    job = _read_job(_job_path(queue, job_id))
    if job is None:
        return None
    for k, v in changes.items():
        setattr(job, k, v)
    _write_job(queue, job)
    return job


def _runner_alive(job: Job) -> bool:
    return is_alive(job.runner_pid, job.runner_start)


# ------------------------------------------------------------------------------------------------------------
# the public API


def submit(
    store: str | Path,
    argv: Sequence[str],
    run_dir: str | Path,
    device: str = "cpu",
    label: str = "",
    group: str = "",
    env: dict[str, str] | None = None,
    meta: dict | None = None,
) -> Job:
    """Queue a command and start its runner (detached: it outlives the caller). Returns the job as written."""
    if device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"device: must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if not argv:
        raise ConfigError("argv: the command to run is empty")
    queue = queue_dir(store)
    (queue / "slots").mkdir(parents=True, exist_ok=True)
    job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]
    job = Job(job_id=job_id, argv=[str(a) for a in argv], run_dir=str(run_dir), device=device, label=label,
              group=group, created=time.time(), env=dict(env or {}), meta=dict(meta or {}))  # fmt: skip
    _write_job(queue, job)
    with open(queue / f"{job_id}.log", "ab") as log:
        subprocess.Popen(  # the runner records its own pid: from here on only it writes the job file
            [sys.executable, "-m", "asymviz.jobs", "run", str(queue), job_id],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=_child_env({}), cwd=str(REPO_ROOT),
        )  # fmt: skip
    return job


def cancel(store: str | Path, job_id: str) -> Job | None:
    """Ask a job to stop: a queued job leaves the queue, a running one gets SIGTERM (then SIGKILL)."""
    queue = queue_dir(store)
    job = _read_job(_job_path(queue, job_id))
    if job is None or job.status not in ACTIVE:
        return job
    (queue / f"{job_id}.cancel").touch()
    if not _runner_alive(job):  # nobody will act on the flag: settle it here
        return _update(queue, job_id, status="cancelled" if job.status == "queued" else "interrupted",
                       finished=time.time())  # fmt: skip
    return job


def list_jobs(store: str | Path) -> list[Job]:
    """Every job of the store's queue, oldest first; jobs whose runner died show as `interrupted`."""
    queue = queue_dir(store)
    if not queue.is_dir():
        return []
    jobs = [j for j in (_read_job(p) for p in queue.glob("*.json")) if j is not None]
    for job in jobs:
        if job.status in ACTIVE and job.runner_pid is not None and not _runner_alive(job):
            fresh = _read_job(_job_path(queue, job.job_id))  # it may have finished just now
            if fresh is not None and fresh.status in ACTIVE:
                fresh = _update(queue, job.job_id, status="interrupted", finished=time.time(),
                                error="the runner process died (machine restart or killed)")  # fmt: skip
            if fresh is not None:
                job.__dict__.update(fresh.__dict__)
        elif job.status == "queued" and job.runner_pid is None and time.time() - job.created > 30:
            _update(
                queue,
                job.job_id,
                status="interrupted",
                finished=time.time(),
                error="the runner never started",
            )
            job.status = "interrupted"
    return sorted(jobs, key=lambda j: (j.created, j.job_id))


def queue_position(jobs: Sequence[Job], job: Job) -> int | None:
    """1 for the next job to start, 2 after it, ...; None when the job is not waiting."""
    if job.status != "queued":
        return None
    waiting = [j for j in jobs if j.status == "queued"]
    return 1 + [j.job_id for j in waiting].index(job.job_id) if job in waiting else None


def jobs_frame(store: str | Path) -> pd.DataFrame:
    """list_jobs as a frame.

    Returns
    -------
    DataFrame, one row per job (oldest first), columns
        job_id, group, label, status (queued|running|completed|failed|cancelled|interrupted),
        position (1-based place in the queue, None unless queued), slot ("cpu"/"cuda:i" once started),
        created, started, finished (Unix times), elapsed_s (running: so far; finished: start to end),
        returncode, run_dir, error, meta (the dict given to submit)
    """
    import pandas as pd

    jobs = list_jobs(store)
    now = time.time()
    rows = []
    for j in jobs:
        end = j.finished if j.finished is not None else now
        rows.append(
            {"job_id": j.job_id, "group": j.group, "label": j.label, "status": j.status,
             "position": queue_position(jobs, j), "slot": j.slot, "created": j.created, "started": j.started,
             "finished": j.finished, "elapsed_s": (end - j.started) if j.started else None,
             "returncode": j.returncode, "run_dir": j.run_dir, "error": j.error, "meta": j.meta}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def log_tail(store: str | Path, job_id: str, lines: int = 20) -> str:
    path = queue_dir(store) / f"{job_id}.log"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


# ------------------------------------------------------------------------------------------------------------
# the runner (a separate process per job)


def _slots(device: str) -> list[str]:
    gpus = gpu_count() if device in ("cuda", "auto") else 0
    if device == "cuda" and gpus == 0:
        return []
    return [f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"]


def gpu_count() -> int:
    """GPUs visible to this process, without importing torch (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _my_turn(queue: Path, job: Job) -> bool:
    """FIFO: only the oldest waiting job (with a live runner) may take a slot."""
    waiting = [j for j in list_jobs(queue.parent) if j.status == "queued"]
    return bool(waiting) and waiting[0].job_id == job.job_id


def _try_lock(queue: Path, slot: str):
    import fcntl

    fd = os.open(queue / "slots" / f"{slot.replace(':', '')}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _child_env(extra: dict[str, str], slot: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if slot and slot.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = _physical_gpu(slot)
    env.update(extra)
    return env


def _physical_gpu(slot: str) -> str:
    index = int(slot.split(":")[1])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [v.strip() for v in visible.split(",") if v.strip()][index]
    return str(index)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the runner dies (Linux); no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_job(queue: Path, job_id: str) -> int:
    """The runner's main loop: wait for the turn and a slot, run the command, record the outcome."""
    queue = Path(queue)
    cancel_flag = queue / f"{job_id}.cancel"
    job = _update(queue, job_id, runner_pid=os.getpid(), runner_start=process_start(os.getpid()))
    if job is None:
        return 2
    # 1. wait: first in line, then a free slot
    lock = None
    while True:
        if cancel_flag.exists():
            _update(queue, job_id, status="cancelled", finished=time.time())
            return 0
        slots = _slots(job.device)
        if not slots:
            _update(
                queue, job_id, status="failed", finished=time.time(), error="device cuda: no GPU is visible"
            )
            return 1
        if _my_turn(queue, job):
            for slot in slots:
                lock = _try_lock(queue, slot)
                if lock is not None:
                    break
            if lock is not None:
                break
        time.sleep(POLL_S)
    # 2. run
    log = open(queue / f"{job_id}.log", "ab")  # noqa: SIM115 (closed below, after the child ends)
    try:
        child = subprocess.Popen(
            job.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=_child_env(job.env, slot), cwd=str(REPO_ROOT), preexec_fn=_die_with_parent,
        )  # fmt: skip
    except OSError as exc:
        _update(queue, job_id, status="failed", finished=time.time(), slot=slot, error=f"cannot start: {exc}")
        return 1
    _update(queue, job_id, status="running", started=time.time(), slot=slot, child_pid=child.pid)
    cancelled = False
    forwarded = False

    def forward(signum, frame):  # the runner itself was asked to stop: stop the child, then record it
        nonlocal forwarded
        forwarded = True
        _signal_group(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    deadline = None
    while child.poll() is None:
        if not cancelled and cancel_flag.exists():
            cancelled = True
            _signal_group(child.pid, signal.SIGTERM)
            deadline = time.time() + CANCEL_GRACE_S
        if deadline is not None and time.time() > deadline:
            _signal_group(child.pid, signal.SIGKILL)
            deadline = None
        time.sleep(POLL_S)
    rc = child.returncode
    log.close()
    if cancelled:
        status, error = "cancelled", None
    elif forwarded:
        status, error = "interrupted", "the runner was stopped"
    elif rc == 0:
        status, error = "completed", None
    else:
        status, error = "failed", log_tail(queue.parent, job_id, 6) or f"exit status {rc}"
    _update(queue, job_id, status=status, finished=time.time(), returncode=rc, error=error)
    os.close(lock)
    return 0


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: this reaches its workers too
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """python -m asymviz.jobs run QUEUE_DIR JOB_ID        (the runner; started by submit)"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 3 and argv[0] == "run":
        return run_job(Path(argv[1]), argv[2])
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
