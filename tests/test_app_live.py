"""The Live fine-tune page: the form, the queue monitor (status, queue position, progress, cancel) and curves.

The monitor tests submit a stand-in command through asymviz.jobs that writes a run folder the way the
training engine does (metrics.csv in long form), so they exercise the page without training a model.
"""

import sys
import time

import pytest
from app_helpers import app_test, no_errors

from asymviz import jobs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the job queue uses flock and /proc")


def _writer(run_dir, steps: int, pause: float) -> list[str]:
    src = (
        "import os, sys, time\n"
        f"d = {str(run_dir)!r}; os.makedirs(d, exist_ok=True)\n"
        "f = open(os.path.join(d, 'metrics.csv'), 'w'); f.write('step,split,metric,value\\n'); f.flush()\n"
        f"for s in range(1, {steps} + 1):\n"
        f"    time.sleep({pause}); f.write(f'{{s}},train,loss,{{1.0 / s}}\\n'); f.flush()\n"
        "    if s % 2 == 0: f.write(f'{s},validation,accuracy,{0.5 + 0.01 * s}\\n'); f.flush()\n"
    )
    return [sys.executable, "-c", src]


def _submit(store, mode, steps=4, pause=0.05, group="g1"):
    run_dir = store / f"run-{mode}"
    return jobs.submit(store, _writer(run_dir, steps, pause), run_dir, group=group, label=f"{mode} run",
                       meta={"mode": mode, "steps": steps})  # fmt: skip


def _wait_done(store, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        frame = jobs.jobs_frame(store)
        if not frame["status"].isin(jobs.ACTIVE).any():
            return frame
        time.sleep(0.1)
    raise AssertionError("jobs did not finish")


def test_form_with_the_demo_defaults(tmp_path):
    at = app_test("live", store=tmp_path)
    at.run()
    no_errors(at)
    assert at.selectbox(key="live_model").value == "minilm"
    assert at.selectbox(key="live_task").value == "fine_foods"
    assert at.button_group(key="live_modes").value == ["ab", "b_only", "a_only"]
    assert any("No fine-tune started" in i.value for i in at.info)


def test_form_refuses_incomplete_input(tmp_path):
    at = app_test("live", store=tmp_path)
    at.run()
    at.button_group(key="live_modes").set_value([])
    at.selectbox(key="live_task").set_value("my CSV/JSONL file").run()
    at.text_input(key="live_task_other").input(str(tmp_path / "missing.csv"))
    at.button(key="live_start").click().run()
    assert not at.exception
    assert "no such file" in at.error[0].value and "at least one mode" in at.error[0].value
    assert jobs.list_jobs(tmp_path) == []


def test_monitor_shows_queue_progress_and_curves(tmp_path):
    store = tmp_path
    _submit(store, "ab", steps=6, pause=0.15)
    _submit(store, "b_only", steps=4)
    at = app_test("live", store=store)
    at.run()
    no_errors(at)
    text = " ".join(m.value for m in at.markdown)
    assert "queued — 1 in line" in text or "running" in text  # the second job waits with its place shown
    assert len([b for b in at.button if b.label == "Cancel"]) == 2
    _wait_done(store)
    at.run()
    no_errors(at)
    bars = at.get("progress")
    assert len(bars) == 2 and all(b.value == 100 for b in bars)
    assert len(at.get("plotly_chart")) == 2  # training loss and validation accuracy
    assert not [b for b in at.button if b.label == "Cancel"]


def test_cancel_from_the_page(tmp_path):
    store = tmp_path
    job = _submit(store, "a_only", steps=200, pause=0.1)
    deadline = time.time() + 20
    while jobs.read_job(store, job.job_id).status != "running" and time.time() < deadline:
        time.sleep(0.1)
    at = app_test("live", store=store)
    at.run()
    [cancel] = [b for b in at.button if b.label == "Cancel"]
    cancel.click().run()
    no_errors(at)
    frame = _wait_done(store)
    assert list(frame["status"]) == ["cancelled"]
    at.run()
    assert "cancelled" in " ".join(m.value for m in at.markdown)
