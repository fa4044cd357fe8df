"""Steady under faults: kills and a full disk leave a run store that lists and loads (named test_faults, not
test_kill: pytest imports test files by basename and tests/training/test_kill.py has that one).

tests/training/test_kill.py kills `python -m asymviz.training train` itself (SIGKILL: interrupted, SIGTERM and
CANCEL: cancelled). Here: the CLI entry point `python -m asymviz train` killed with SIGKILL; the app server
killed while fine-tunes it queued run, then "restarted" (a fresh reader of the store); the queue's runner
killed mid-run; a forked sweep worker killed; a full disk (a 1 MiB tmpfs when this process may mount one, and
always a writer whose writes fail with ENOSPC) while a run is being written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asymviz import jobs
from asymviz.runs import RunRecord, RunStore, write_json_atomic

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="kills, /proc and flock are Linux's")

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "ASYMVIZ_NO_PROGRESS": "1"}


def _progress_step(run: Path) -> int:
    try:
        return int((json.loads((run / "run.json").read_text()).get("progress") or {}).get("step", 0))
    except (OSError, ValueError):
        return 0


def _wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended early ({proc.returncode})")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def _readable(store: Path, live: bool = False) -> dict[str, str]:
    """The store as a restarted app reads it: every run folder's record loads (RunStore.list would skip one
    that does not), its metrics read, and the CLI's json listing parses and agrees. Returns status by folder."""
    folders = sorted(p.parent for p in Path(store).glob("*/run.json"))  # a folder without one: no run yet
    statuses = {}
    for folder in folders:
        record = RunRecord.load(folder)
        record.metrics()
        statuses[folder.name] = record.status
    frame = RunStore(store).list()
    same = len if live else sorted  # runs still training may change status between the reads
    assert same(list(frame["status"])) == same(list(statuses.values()))
    done = subprocess.run([sys.executable, "-m", "asymviz", "runs", "list", "--store", str(store), "--format",
                           "json"], env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert same([r["status"] for r in json.loads(done.stdout)]) == same(list(statuses.values()))
    return statuses


def _no_temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


def _job_status(store: Path, job_id: str) -> str:
    """As the app reads it: list_jobs marks a job whose runner died as interrupted."""
    return next(j.status for j in jobs.list_jobs(store) if j.job_id == job_id)


@pytest.fixture
def long_config(tmp_path, tiny_config) -> Path:
    path = tmp_path / "long.json"
    path.write_text(json.dumps(tiny_config(steps=100_000, eval_every=50).to_dict()))
    return path


def test_sigkill_of_the_cli_train_reads_interrupted(tmp_path, long_config):
    run = tmp_path / "store" / "run"
    proc = subprocess.Popen([sys.executable, "-m", "asymviz", "train", "--config", str(long_config), "--out",
                             str(run)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_until(lambda: _progress_step(run) >= 5, 120, "the run did not get going", proc)
    finally:
        proc.kill()
        proc.wait()
    assert _readable(run.parent) == {"run": "interrupted"}
    assert len(RunRecord.load(run).load_init()) > 0
    assert not _no_temp_files(run)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_app_server_killed_while_fine_tunes_run_then_restarted(tmp_path, tiny_config):
    """The app queues fine-tunes through asymviz.jobs; its server is SIGKILLed while one trains and one waits.
    The runners live in their own sessions, so the fine-tunes go on and finish; a restarted reader sees them
    running, then completed, and the store reads at every moment."""
    store = tmp_path / "store"
    configs = []
    for i, steps in enumerate((150, 5)):
        path = tmp_path / f"c{i}.json"
        path.write_text(json.dumps(tiny_config(steps=steps, eval_every=100).to_dict()))
        configs.append(path)
    server = (
        "import sys, time; from asymviz import jobs\n"
        f"for i, cfg in enumerate({[str(c) for c in configs]!r}):\n"
        f"    out = {str(store)!r} + f'/run{{i}}'\n"
        "    argv = [sys.executable, '-m', 'asymviz', 'train', '--config', cfg, '--out', out]\n"
        f"    jobs.submit({str(store)!r}, argv, out, label=f'live {{i}}')\n"
        "print('submitted', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", server], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
        _wait_until(lambda: _progress_step(store / "run0") >= 3, 120, "the first fine-tune did not start")
    finally:
        proc.kill()  # the app server dies
        proc.wait()
    statuses = _readable(store, live=True)  # the restarted app's first look
    assert statuses.get("run0") == "running" and statuses.get("run1") in (None, "running", "completed")
    frame = jobs.jobs_frame(store)
    assert set(frame["status"]) <= {"running", "queued", "completed"}

    def finished() -> bool:
        return set(jobs.jobs_frame(store)["status"]) == {"completed"}

    _wait_until(finished, 240, "the queued fine-tunes did not finish after the server died")
    assert _readable(store) == {"run0": "completed", "run1": "completed"}
    for name in ("run0", "run1"):
        assert len(RunRecord.load(store / name).load_adapter()) > 0
    assert not _no_temp_files(store)


def _start_live_fine_tune(store, long_config):
    """A fine-tune submitted through the app's job queue, once it has trained 3 steps: (job, its running record)."""
    argv = [
        sys.executable,
        "-m",
        "asymviz",
        "train",
        "--config",
        str(long_config),
        "--out",
        str(store / "run"),
    ]
    job = jobs.submit(store, argv, store / "run", label="live")
    _wait_until(lambda: _progress_step(store / "run") >= 3, 120, "the fine-tune did not start")
    return job, jobs.read_job(store, job.job_id)


def test_runner_and_training_killed_reads_interrupted(tmp_path, long_config):
    """A machine-level kill: the queue's runner and its training process both SIGKILLed mid-run. The job and
    the run read `interrupted`, and the store stays readable."""
    store = tmp_path / "store"
    job, running = _start_live_fine_tune(store, long_config)
    os.kill(running.child_pid, signal.SIGKILL)
    os.kill(running.runner_pid, signal.SIGKILL)
    _wait_until(
        lambda: _gone(running.child_pid) and _gone(running.runner_pid), 30, "the processes did not die"
    )
    _wait_until(lambda: _job_status(store, job.job_id) == "interrupted", 30, "job not interrupted")
    assert _readable(store) == {"run": "interrupted"}


def test_runner_killed_stops_its_training_and_the_store_reads(tmp_path, long_config):
    """The runner alone SIGKILLed: its child gets the parent-death signal (SIGTERM) and stops; the job reads
    interrupted, the run a finished state (the training records SIGTERM as `cancelled`)."""
    store = tmp_path / "store"
    job, running = _start_live_fine_tune(store, long_config)
    os.kill(running.runner_pid, signal.SIGKILL)
    _wait_until(lambda: _gone(running.child_pid), 60, "the training outlived its runner")
    _wait_until(lambda: _job_status(store, job.job_id) == "interrupted", 30, "job not interrupted")
    assert _readable(store)["run"] in ("cancelled", "interrupted")


def test_a_sweep_worker_killed_leaves_the_store_readable(tmp_path, tiny_config):
    """`asymviz sweep --cpu-jobs 2` trains in forked workers; one is SIGKILLed mid-run: the sweep ends, its
    run reads interrupted, the others complete or were not reached, the store reads."""
    cfg = tmp_path / "base.json"
    cfg.write_text(json.dumps(tiny_config(steps=300, eval_every=100).to_dict()))
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "asymviz", "sweep", "--config", str(cfg), "--modes", "ab,b_only", "--seeds", "0",
           "--store", str(store), "--cpu-jobs", "2", "--format", "csv", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def a_worker_trains() -> bool:
            return any(_progress_step(run) >= 3 for run in store.glob("*") if run.is_dir())

        _wait_until(a_worker_trains, 180, "no worker started training", proc)
        run = next(r for r in store.glob("*") if r.is_dir() and _progress_step(r) >= 3)
        pid = json.loads((run / "run.json").read_text())["pid"]
        assert pid in _children(proc.pid)  # a forked worker, not the sweep's own process
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    statuses = _readable(store)
    assert statuses[run.name] == "interrupted"
    assert set(statuses.values()) <= {"interrupted", "completed"}
    assert not _no_temp_files(store)


# ----------------------------------------------------------------------------------------------------------
# a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that allows it), unmounted afterwards; skips where it cannot."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _small_completed_run(tmp_path, tiny_config) -> Path:
    from asymviz.training.loop import train

    record = train(tiny_config(steps=2, eval_every=1), tmp_path / "made" / "run")
    assert record.status == "completed"
    return record.path


def test_a_full_disk_keeps_the_previous_run_intact(tmp_path, tiny_config, tiny_disk):
    """A completed run on a disk that then fills up: rewriting its record fails with ENOSPC and leaves the
    previous run.json byte for byte, with no temp file; a new run trained onto the full disk fails, and the
    store still lists and loads the old one."""
    from asymviz.runs import annotate_run

    run = tiny_disk / "store" / "run"
    shutil.copytree(_small_completed_run(tmp_path, tiny_config), run)
    before = (run / "run.json").read_bytes()
    _fill(tiny_disk)
    with pytest.raises(OSError) as caught:
        annotate_run(run, role="main", note="x" * 200_000)
    assert caught.value.errno == errno.ENOSPC
    assert (run / "run.json").read_bytes() == before and not _no_temp_files(tiny_disk)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny_config(steps=5).to_dict()))
    done = subprocess.run([sys.executable, "-m", "asymviz", "train", "--config", str(cfg), "--out",
                           str(tiny_disk / "store" / "new")], env=ENV, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode != 0
    statuses = _readable(tiny_disk / "store")
    assert statuses["run"] == "completed"
    assert statuses.get("new") in (None, "failed", "interrupted")  # never `running` or `completed`
    assert not _no_temp_files(tiny_disk)
    assert len(RunRecord.load(run).load_adapter()) > 0
    assert (run / "run.json").read_bytes() == before


def test_enospc_in_the_atomic_writer_keeps_the_previous_version(tmp_path, monkeypatch):
    """Without a tmpfs: every write to the temp file fails as on a full disk."""
    import builtins
    import io

    run = tmp_path / "run"
    run.mkdir()
    write_json_atomic(run / "run.json", {"status": "completed", "step": 1})
    before = (run / "run.json").read_bytes()
    real_open = builtins.open

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def __getattr__(self, name):
            return getattr(self.file, name)

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FullDisk(handle) if "w" in mode and Path(file).name.endswith(".tmp") else handle

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)  # pathlib's Path.open
    with pytest.raises(OSError) as caught:
        write_json_atomic(run / "run.json", {"status": "running", "step": 2})
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert (run / "run.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]  # the temp file is gone
