"""A training process killed at any moment leaves a store that lists and loads (SIGKILL: interrupted;
SIGTERM: cancelled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asymviz.runs import RunError, RunStore

REPO = Path(__file__).resolve().parents[2]


def _start(cfg_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ASYMVIZ_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "asymviz.training", "train", "--config", str(cfg_path), "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_step(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if (json.loads((out / "run.json").read_text()).get("progress") or {}).get("step", 0) >= step:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("the run did not get going")


@pytest.fixture
def long_run(tmp_path, tiny_config):
    cfg = tiny_config(steps=100_000, eval_every=7)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path, tmp_path / "store" / "run"


def test_sigkill_leaves_a_readable_interrupted_run(long_run):
    cfg_path, out = long_run
    proc = _start(cfg_path, out)
    try:
        _wait_for_step(out, 10, proc)
    finally:
        proc.kill()
        proc.wait()
    store = RunStore(out.parent)
    frame = store.list()
    assert frame["status"].tolist() == ["interrupted"]
    run = store.get("run")
    assert run.status == "interrupted"
    metrics = run.metrics()
    assert (metrics["split"] == "train").sum() >= 9  # losses written as it went
    assert len(run.load_init()) == 4  # the step-0 adapter is complete
    with pytest.raises(RunError, match="no trained adapter"):
        run.load_adapter()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written files left visible


def test_sigterm_ends_as_cancelled(long_run):
    cfg_path, out = long_run
    proc = _start(cfg_path, out)
    try:
        _wait_for_step(out, 3, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    run = RunStore(out.parent).get("run")
    assert run.status == "cancelled" and run.progress["step"] >= 3


def test_cancel_request_from_the_store(long_run):
    cfg_path, out = long_run
    proc = _start(cfg_path, out)
    try:
        _wait_for_step(out, 3, proc)
        RunStore(out.parent).cancel("run")
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert RunStore(out.parent).get("run").status == "cancelled"
