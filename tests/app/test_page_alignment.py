"""The Alignment page on a store of real tiny runs: it asks first, runs alignment and diagnostics in the
background when asked, shows the bars and the table, and reports errors as st.error, never a traceback."""

import time
from pathlib import Path

import pytest
from app_helpers import app_test, no_errors, shared_tiny_store, write_bert_like_adapter


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


def _until_done(at, timeout=120):
    """Rerun the page until no progress bar is left (the jobs run in server threads)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        if not at.get("progress"):
            return at
        time.sleep(0.3)
    raise AssertionError("the alignment did not finish in time")


def test_a_stored_run_aligned_from_the_page(tiny_store):
    at = app_test("alignment", store=tiny_store, timeout=120)
    at.run()
    no_errors(at)
    assert any("Press" in i.value for i in at.info)  # nothing runs before the click
    assert not at.get("plotly_chart")
    ab = next(p.name for p in tiny_store.iterdir() if "_ab_" in p.name)
    at.selectbox(key="aln_run").set_value(ab).run()
    at.button(key="aln_go").click().run()
    _until_done(at)
    no_errors(at)
    figures = at.get("plotly_chart")
    assert len(figures) == 3  # data sides, weight sides, diagnostics
    labels = [m.label for m in at.metric]
    assert "A vs inputs, trained" in labels and "B vs output gradients, trained" in labels
    assert "A vs inputs, at init (step 0)" in labels
    tables = [d.value for d in at.dataframe]
    summary = next(t for t in tables if "ratio" in t)
    assert set(summary["source"]) == {"trained", "init"}
    diag = next(t for t in tables if "n_intruders" in t)
    assert len(diag) == 4 and (diag["n_intruders"] >= 0).all()


def _own_adapter(at, path, base, task=None):
    at.radio(key="aln_source").set_value("A local path").run()
    at.text_input(key="aln_path").input(str(path)).run()
    at.text_input(key="aln_base").input(str(base)).run()
    if task is not None:
        at.selectbox(key="aln_task").set_value("my CSV/JSONL file").run()
        at.text_input(key="aln_task_file").input(str(task)).run()


def test_your_own_adapter_with_a_base_model_and_a_task_file(tmp_path):
    from tiny_task import write_tiny_bert, write_tiny_task

    base = write_tiny_bert(tmp_path)
    task = write_tiny_task(tmp_path, n=40)
    adapter = write_bert_like_adapter(tmp_path / "mine", layers=2)  # random A and B, no classifier saved
    at = app_test("alignment", store=tmp_path / "empty", timeout=120)
    at.run()
    _own_adapter(at, adapter, base, task)
    no_errors(at)
    at.button(key="aln_go").click().run()
    _until_done(at)
    no_errors(at)
    assert len(at.get("plotly_chart")) == 3
    labels = [m.label for m in at.metric]
    assert "A vs inputs, trained" in labels and not any("init" in label for label in labels)  # no init here
    # the adapter carries no trained classifier: the page says so
    assert any("random head" in w.value for w in at.warning)
    assert any("(all it has)" in c.value for c in at.caption)  # 256 asked, the tiny training split is smaller


def test_errors_are_shown_not_raised(tmp_path):
    from tiny_task import write_tiny_bert

    adapter = write_bert_like_adapter(tmp_path / "three_layers", layers=3)  # the tiny base has 2 layers
    base = write_tiny_bert(tmp_path)
    at = app_test("alignment", store=tmp_path / "empty", timeout=120)
    at.run()
    _own_adapter(at, adapter, tmp_path / "no_such_model")
    at.button(key="aln_go").click().run()
    _until_done(at)
    assert not at.exception
    assert len(at.error) == 2 and all("no_such_model" in e.value for e in at.error)
    at.text_input(key="aln_base").input(str(base)).run()
    at.button(key="aln_go").click().run()
    _until_done(at)
    assert not at.exception
    assert at.error and all("layer.2" in e.value for e in at.error)  # a module the base model lacks


def test_a_zip_upload_is_unpacked_for_peft(tmp_path):
    from app_helpers import zip_folder

    from app.uploads import UPLOAD_DIR, peft_folder
    from asymviz.errors import AdapterError

    folder = write_bert_like_adapter(tmp_path / "mine")
    (tmp_path / "upload").mkdir()
    archive = zip_folder(folder, tmp_path / "upload" / "mine.zip")
    unpacked = Path(peft_folder(str(archive)))
    assert (unpacked / "adapter_config.json").is_file() and unpacked.name == "mine"
    assert unpacked.parent.parent == UPLOAD_DIR  # the app's upload folder, never next to the user's file
    assert list((tmp_path / "upload").iterdir()) == [archive]
    assert peft_folder(str(archive)) == str(unpacked)  # unpacked once
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "adapter_model.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes())
    with pytest.raises(AdapterError, match="adapter_config.json"):
        peft_folder(str(lone / "adapter_model.safetensors"))


# ---- the panels on Inspect an adapter and Compare runs ---------------------------------------------------


def test_inspect_panel_runs_diagnostics_then_alignment_on_request(tiny_store):
    at = app_test("inspect", store=tiny_store, timeout=120)
    at.run()
    at.radio(key="ins_a_source").set_value("A stored run").run()
    at.segmented_control(key="ins_view").set_value("Alignment & diagnostics").run()
    no_errors(at)
    assert not at.get("plotly_chart") and not _tables(at)  # opt-in: nothing computed yet
    assert "/base" in at.text_input(key="ins_aln_base").value  # the run's model
    at.button(key="ins_diag_go").click().run()
    _until_done(at)
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1 and "n_intruders" in _tables(at)[0]
    at.button(key="ins_aln_go").click().run()
    _until_done(at)
    no_errors(at)
    assert len(at.get("plotly_chart")) == 3  # diagnostics, alignment with the data, with W0


def test_compare_panel_aligns_the_selected_runs_by_mode(tiny_store):
    at = app_test("compare", store=tiny_store, timeout=120)
    at.run()
    at.segmented_control(key="cmp_view").set_value("Alignment with data").run()
    at.number_input(key="cmp_aln_samples").set_value(32).run()  # a setting no other test aligned with
    no_errors(at)
    assert not at.get("plotly_chart")
    at.button(key="cmp_aln_go").click().run()
    _until_done(at, timeout=240)
    no_errors(at)
    assert any(c.value == "4 of 4 run(s) aligned." for c in at.caption)
    assert len(at.get("plotly_chart")) == 1  # one task


def test_a_zipped_peft_adapter_aligns_like_its_folder(tmp_path):
    from app_helpers import zip_folder
    from tiny_task import write_tiny_adapter, write_tiny_bert, write_tiny_task

    base = write_tiny_bert(tmp_path)
    task = write_tiny_task(tmp_path, n=40)
    folder, _ = write_tiny_adapter(base, tmp_path / "seq_cls")  # with its classifier (modules_to_save)
    archive = zip_folder(folder, tmp_path / "seq_cls.zip")
    at = app_test("alignment", store=tmp_path / "empty", timeout=120)
    at.run()
    _own_adapter(at, archive, base, task)
    at.number_input(key="aln_samples").set_value(16).run()
    at.button(key="aln_go").click().run()
    _until_done(at)
    no_errors(at)
    assert len(at.get("plotly_chart")) == 3
    assert not any("random head" in w.value for w in at.warning)  # the saved classifier is used


def _tables(at):
    """The page's tables without the adapter card's module table (Inspect shows the card above every view)."""
    return [d.value for d in at.dataframe if "a_verdict" not in d.value]
