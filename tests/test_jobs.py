"""asymviz.jobs: the live fine-tune queue (separate processes, one per device slot, FIFO, cancel, survival).

The jobs here are tiny Python scripts standing in for `asymviz train`: the queue runs any command.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from asymviz import jobs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the queue uses flock and /proc")


def _script(path, seconds: float, code: int = 0) -> list[str]:
    """A command that records its start and end times (and pid) in `path`, then exits with `code`."""
    src = (
        "import os, sys, time\n"
        f"open({str(path)!r}, 'a').write(f'start {{time.time()}} {{os.getpid()}}\\n')\n"
        f"time.sleep({seconds})\n"
        f"open({str(path)!r}, 'a').write(f'end {{time.time()}}\\n')\n"
        f"print('boom: something went wrong') if {code} else None\n"
        f"sys.exit({code})\n"
    )
    return [sys.executable, "-c", src]


def _wait(store, job_id, statuses, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = next((j for j in jobs.list_jobs(store) if j.job_id == job_id), None)
        if job is not None and job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {job}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = open(f"/proc/{pid}/stat").read()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_fifo_one_job_at_a_time_on_the_cpu(tmp_path):
    store = tmp_path / "store"
    submitted = [
        jobs.submit(store, _script(tmp_path / f"t{i}", 0.6), store / f"run{i}", label=f"job {i}", group="g")
        for i in range(3)
    ]
    frame = jobs.jobs_frame(store)
    assert list(frame.columns) == jobs.JOB_COLUMNS
    assert list(frame["label"]) == ["job 0", "job 1", "job 2"]
    waiting = frame[frame["status"] == "queued"]
    assert list(waiting["position"]) == list(range(1, len(waiting) + 1))  # visible places in the queue
    for job in submitted:
        done = _wait(store, job.job_id, {"completed"})
        assert done.returncode == 0 and done.slot == "cpu"
    spans = []
    for i in range(3):
        lines = (tmp_path / f"t{i}").read_text().split()
        spans.append((float(lines[1]), float(lines[4])))
    for (s0, e0), (s1, _) in zip(spans, spans[1:], strict=False):
        assert e0 <= s1, "jobs overlapped on the one CPU slot"
        assert s0 < s1, "jobs did not start in submission order"
    frame = jobs.jobs_frame(store)
    assert (frame["elapsed_s"] > 0.5).all() and frame["position"].isna().all()


def test_cancel_a_running_and_a_queued_job(tmp_path):
    store = tmp_path / "store"
    first = jobs.submit(store, _script(tmp_path / "t0", 60), store / "run0")
    second = jobs.submit(store, _script(tmp_path / "t1", 60), store / "run1")
    running = _wait(store, first.job_id, {"running"})
    assert jobs.queue_position(jobs.list_jobs(store), jobs.read_job(store, second.job_id)) == 1
    jobs.cancel(store, second.job_id)
    assert _wait(store, second.job_id, {"cancelled"}).started is None
    assert not (tmp_path / "t1").exists()  # the queued command never ran
    jobs.cancel(store, first.job_id)
    done = _wait(store, first.job_id, {"cancelled"}, timeout=20)
    assert done.finished is not None
    time.sleep(0.3)
    assert not _pid_alive(running.child_pid)
    assert "end" not in (tmp_path / "t0").read_text()


def test_failure_is_recorded_with_the_log_tail(tmp_path):
    store = tmp_path / "store"
    job = jobs.submit(store, _script(tmp_path / "t", 0.0, code=3), store / "run")
    done = _wait(store, job.job_id, {"failed"})
    assert done.returncode == 3 and "boom" in done.error
    assert "boom" in jobs.log_tail(store, job.job_id)


def test_job_outlives_the_process_that_submitted_it(tmp_path):
    """The app's process (or a closed tab) going away does not stop a job."""
    store = tmp_path / "store"
    code = (
        "import sys; from asymviz import jobs\n"
        f"j = jobs.submit({str(store)!r}, {_script(tmp_path / 't', 1.0)!r}, {str(store / 'run')!r})\n"
        "print(j.job_id)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(jobs.REPO_ROOT), env={**os.environ, "PYTHONPATH": str(jobs.REPO_ROOT)})  # fmt: skip
    job_id = out.stdout.strip()
    assert _wait(store, job_id, {"completed"}).returncode == 0


def test_a_killed_runner_shows_interrupted_and_frees_the_slot(tmp_path):
    store = tmp_path / "store"
    first = jobs.submit(store, _script(tmp_path / "t0", 60), store / "run0")
    second = jobs.submit(store, _script(tmp_path / "t1", 0.2), store / "run1")
    running = _wait(store, first.job_id, {"running"})
    os.kill(running.runner_pid, signal.SIGKILL)
    assert _wait(store, first.job_id, {"interrupted"}).error
    assert _wait(store, second.job_id, {"completed"}).returncode == 0  # the queue moved on
    deadline = time.time() + 5
    while _pid_alive(running.child_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(running.child_pid), "the training process was orphaned"


def test_train_command_follows_the_cli_contract(tmp_path):
    from asymviz.cli.training import train_command

    argv = train_command("minilm", "fine_foods", "b_only", tmp_path / "run", rank=4, steps=20, seed=1)
    assert argv[1:4] == ["-m", "asymviz", "train"]
    for flag, value in (("--model", "minilm"), ("--task", "fine_foods"), ("--mode", "b_only"), ("--rank", "4"),
                        ("--steps", "20"), ("--seed", "1"), ("--out", str(tmp_path / "run"))):  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
    with pytest.raises(Exception, match="device"):
        jobs.submit(tmp_path, ["true"], tmp_path / "r", device="tpu")
