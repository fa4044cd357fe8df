"""The Live fine-tune page: the form (demo defaults, refusals), a real tiny fine-tune started from the page and
watched to the end, queue positions and cancel.

The queue tests submit a stand-in command through asymviz.jobs that writes its run folder with
asymviz.runs.RunWriter, as the training engine does, so they exercise the monitor in seconds.
"""

import sys
import time

import pytest
from app_helpers import app_test, no_errors, write_tiny_model_and_task

from asymviz import jobs
from asymviz.runs import list_runs

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the job queue uses flock and /proc")


def _stand_in(store, run_id: str, mode: str, steps: int, pause: float) -> list[str]:
    src = (
        "import time\n"
        "from asymviz.runs import RunWriter\n"
        f"w = RunWriter({str(store / run_id)!r}, heartbeat_s=0)\n"
        f"w.start({run_id!r}, {{'mode': {mode!r}, 'model': 'stand-in', 'task': 't', 'rank': 4, 'seed': 0}})\n"
        f"for s in range(1, {steps} + 1):\n"
        f"    time.sleep({pause}); w.log(s, 'train', {{'loss': 1.0 / s}})\n"
        f"    w.update(progress={{'step': s, 'total_steps': {steps}, 'phase': 'train'}}, force=True)\n"
        "w.finish('completed', metrics={'test_accuracy': 0.5})\n"
    )
    return [sys.executable, "-c", src]


def _submit(store, mode, steps=4, pause=0.05):
    run_id = f"standin_{mode}"
    return jobs.submit(store, _stand_in(store, run_id, mode, steps, pause), store, label=f"{mode} request",
                       meta={"run_ids": [run_id], "modes": [mode], "steps": steps})  # fmt: skip


def _wait_done(store, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        frame = jobs.jobs_frame(store)
        if len(frame) and not frame["status"].isin(jobs.ACTIVE).any():
            return frame
        time.sleep(0.2)
    raise AssertionError(f"jobs did not finish: {jobs.jobs_frame(store)[['status', 'error']]}")


def test_form_with_the_demo_defaults(tmp_path):
    at = app_test("live", store=tmp_path)
    at.run()
    no_errors(at)
    assert at.selectbox(key="live_model").value == "minilm"
    assert at.selectbox(key="live_task").value == "fine_foods"
    assert at.button_group(key="live_modes").value == ["ab", "b_only", "a_only", "head_only"]
    from asymviz.training.config import DEMO

    assert at.number_input(key="live_steps").value == DEMO.steps and at.toggle(key="live_demo").value
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


def test_a_tiny_fine_tune_from_the_page_to_the_store(tmp_path):
    model, task = write_tiny_model_and_task(tmp_path / "tiny")
    store = tmp_path / "store"
    at = app_test("live", store=store, timeout=120)
    at.run()
    at.selectbox(key="live_model").set_value("another model (id or local folder)").run()
    at.text_input(key="live_model_other").input(str(model))
    at.selectbox(key="live_task").set_value("my CSV/JSONL file").run()
    at.text_input(key="live_task_other").input(str(task))
    at.button_group(key="live_modes").set_value(["ab", "b_only"])
    at.number_input(key="live_rank").set_value(4)
    at.number_input(key="live_steps").set_value(2)
    at.toggle(key="live_demo").set_value(False)
    at.button(key="live_start").click().run()
    no_errors(at)
    assert len(jobs.list_jobs(store)) == 1
    _wait_done(store)
    at.run()
    no_errors(at)
    runs = list_runs(store)
    assert sorted(runs["mode"]) == ["ab", "b_only"] and (runs["status"] == "completed").all()
    assert [round(b.value) for b in at.get("progress")] == [100, 100]
    assert "completed" in " ".join(m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 1  # the training-loss curves
    final = at.dataframe[0].value
    assert sorted(final["mode"]) == ["A&B", "B only (random A frozen)"]
    # the finished runs are on the Overview now
    at.switch_page("app/pages/overview.py").run()
    no_errors(at)
    assert len(at.dataframe[0].value) == 2


def test_queue_position_progress_and_cancel(tmp_path):
    store = tmp_path
    first = _submit(store, "ab", steps=60, pause=0.1)
    _submit(store, "b_only", steps=3)
    deadline = time.time() + 30
    while jobs.read_job(store, first.job_id).status != "running" and time.time() < deadline:
        time.sleep(0.1)
    at = app_test("live", store=store)
    at.run()
    no_errors(at)
    # the newest request is shown first: it waits behind the running one
    assert "queued** — 1 in line" in " ".join(m.value for m in at.markdown)
    at.selectbox(key="live_job_pick").set_value(first.job_id).run()
    assert "running" in " ".join(m.value for m in at.markdown)
    [cancel] = [b for b in at.button if b.label == "Cancel"]
    cancel.click().run()
    no_errors(at)
    frame = _wait_done(store)
    assert dict(zip(frame["label"], frame["status"], strict=True)) == {
        "ab request": "cancelled", "b_only request": "completed"
    }  # fmt: skip
    at.run()
    no_errors(at)
