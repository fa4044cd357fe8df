"""Public mode (ASYMVIZ_PUBLIC=1, `asymviz app --public`): a fixed store, no local paths, no server paths shown,
capped uploads and live fine-tunes, a visitor sees and cancels only their own requests."""

import gc
import time

import pandas as pd
import pytest
from app_helpers import app_test, no_errors, shared_tiny_store, write_bert_like_adapter

from asymviz import jobs


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


@pytest.fixture
def public(monkeypatch, tiny_store, tmp_path):
    monkeypatch.setenv("ASYMVIZ_PUBLIC", "1")
    monkeypatch.setenv("ASYMVIZ_STORE", str(tiny_store))
    monkeypatch.setenv("ASYMVIZ_LIVE_DIR", str(tmp_path / "live"))
    return tiny_store


def _texts(at) -> list[str]:
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "text", "title", "subheader")
    return [str(e.value) for kind in kinds for e in at.get(kind)]


def test_the_store_is_the_operators_and_cannot_be_switched(public, tmp_path):
    at = app_test("overview", store=tmp_path)  # a visitor's store in the session is ignored
    at.run()
    no_errors(at)
    assert not at.sidebar.text_input  # no store field
    assert list(at.dataframe[0].value["seeds"]) == [1, 2, 1]  # the tiny store's runs


@pytest.mark.parametrize("page", ["overview", "compare", "inspect", "alignment", "live", "theory"])
def test_no_page_shows_a_server_path(public, page, tmp_path):
    at = app_test(page)
    at.run()
    no_errors(at)
    shown = "\n".join(_texts(at))
    for path in (str(public), str(tmp_path), str(public.parent)):
        assert path not in shown


def test_no_local_path_source_and_the_stored_run_option_stays(public):
    at = app_test("inspect")
    at.run()
    assert "A local path" not in at.radio(key="ins_a_source").options
    at.radio(key="ins_a_source").set_value("A stored run").run()
    no_errors(at)
    assert len(at.selectbox(key="ins_a_run").options) == 4


def test_base_model_is_a_choice_not_a_free_path(public):
    at = app_test("inspect")
    at.run()
    at.radio(key="ins_a_source").set_value("A stored run").run()
    at.segmented_control(key="ins_view").set_value("Alignment & diagnostics").run()
    no_errors(at)
    assert not [t for t in at.text_input if t.key == "ins_aln_base"]
    assert "minilm" in at.selectbox(key="ins_aln_base").options


def test_live_form_is_capped(public, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_PUBLIC_STEPS", "50")
    at = app_test("live")
    at.run()
    no_errors(at)
    assert at.selectbox(key="live_model").options == ["minilm", "smollm2"]
    assert "my CSV/JSONL file" not in at.selectbox(key="live_task").options
    assert at.selectbox(key="live_device").options == ["cpu"]
    assert at.number_input(key="live_steps").max == 50 and at.number_input(key="live_steps").value <= 50


def _fake_jobs(rows):
    frame = pd.DataFrame(
        [{c: None for c in jobs.JOB_COLUMNS} | row for row in rows], columns=jobs.JOB_COLUMNS
    )
    frame["created"] = time.time()
    frame["meta"] = [{} for _ in rows]
    return frame


def test_a_full_queue_refuses_with_a_clear_message(public, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_PUBLIC_QUEUE", "2")
    busy = _fake_jobs(
        [{"job_id": f"other{i}", "status": s, "label": "x"} for i, s in enumerate(("running", "queued"))]
    )
    monkeypatch.setattr(jobs, "jobs_frame", lambda store: busy)
    submitted = []
    monkeypatch.setattr(jobs, "submit", lambda *a, **k: submitted.append(a))
    at = app_test("live")
    at.run()
    at.button(key="live_start").click().run()
    assert any("queue is full" in e.value for e in at.error)
    assert not submitted
    assert not [b for b in at.button if b.key.startswith("cancel_")]  # other visitors' requests: not shown


def test_one_request_per_visitor_and_only_their_own_can_be_cancelled(public, monkeypatch):
    running = _fake_jobs([{"job_id": "mine", "status": "running", "label": "my request"},
                          {"job_id": "theirs", "status": "queued", "label": "their request"}])  # fmt: skip
    monkeypatch.setattr(jobs, "jobs_frame", lambda store: running)
    monkeypatch.setattr(jobs, "submit", lambda *a, **k: pytest.fail("must not submit"))
    at = app_test("live")
    at.session_state["my_jobs"] = ["mine"]
    at.run()
    at.button(key="live_start").click().run()
    assert any("already have a fine-tune" in e.value for e in at.error)
    assert [b.key for b in at.button if b.key.startswith("cancel_")] == ["cancel_mine"]
    assert at.selectbox(key="live_job_pick").options == ["my request (submitted " + at.selectbox(
        key="live_job_pick").options[0].split("(submitted ")[1]]  # fmt: skip


def test_a_public_request_runs_under_the_time_limit_with_capped_threads(public, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_PUBLIC_RUN_S", "90")
    monkeypatch.setenv("ASYMVIZ_PUBLIC_THREADS", "1")
    monkeypatch.setattr(jobs, "jobs_frame", lambda store: _fake_jobs([]))
    calls = []

    class Job:
        job_id = "new"

    def submit(store, argv, run_dir, **kwargs):
        calls.append((argv, kwargs))
        return Job()

    monkeypatch.setattr(jobs, "submit", submit)
    at = app_test("live")
    at.run()
    at.button(key="live_start").click().run()
    ((argv, kwargs),) = calls
    assert argv[:3] == ["timeout", "--kill-after=15", "90"] and kwargs["device"] == "cpu"
    import json

    configs = json.loads(open(argv[argv.index("--configs") + 1]).read())
    assert {c["threads"] for c in configs} == {1}
    assert at.session_state["my_jobs"] == ["new"]


def test_limits_from_the_environment_are_checked(monkeypatch):
    from app.state import Limits

    monkeypatch.setenv("ASYMVIZ_PUBLIC_UPLOADS", "3")
    assert Limits.from_env().uploads == 3
    monkeypatch.setenv("ASYMVIZ_PUBLIC_UPLOADS", "lots")
    with pytest.raises(ValueError, match="ASYMVIZ_PUBLIC_UPLOADS"):
        Limits.from_env()
    with pytest.raises(ValueError, match="ASYMVIZ_PUBLIC_QUEUE"):
        Limits(queue=0)


def test_a_session_folder_is_deleted_with_its_session(tmp_path):
    from app.uploads import SessionFolder

    folder = SessionFolder(tmp_path)
    (folder.path / "adapter.zip").write_bytes(b"x")
    path = folder.path
    del folder
    gc.collect()
    assert not path.exists() and tmp_path.exists()


def test_error_lines_lose_their_paths(public):
    from app.components import without_paths

    assert without_paths("/tmp/asymviz-uploads/ins_a-1f/x.zip: not a zip file") == "x.zip: not a zip file"
    assert without_paths("cannot read ~/models/m (no config)") == "cannot read m (no config)"


def test_the_report_names_the_adapter_without_its_path(tmp_path):
    from asymviz.adapters import load_adapter
    from asymviz.report import render_report

    folder = write_bert_like_adapter(tmp_path / "secret" / "my-lora")
    html = render_report(load_adapter(folder), show_paths=False)
    assert "my-lora" in html and str(tmp_path) not in html
