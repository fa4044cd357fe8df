"""The Inspect page: an adapter from a local path, every view, a second adapter, and clear errors."""

from pathlib import Path

import pytest
from app_helpers import app_test, no_errors, shared_tiny_store, write_bert_like_adapter

VIEWS = [
    "Spectra",
    "Layer × module",
    "Modules",
    "Parameters & bound",
    "Compare with a second adapter",
    "Report",
]


@pytest.fixture
def adapters(tmp_path):
    return write_bert_like_adapter(tmp_path / "first", seed=0), write_bert_like_adapter(
        tmp_path / "second", seed=1
    )


def _open(at, path, key="ins_a"):
    at.radio(key=f"{key}_source").set_value("A local path").run()
    at.text_input(key=f"{key}_path").input(str(path)).run()


def test_asks_for_an_adapter_first(tmp_path):
    at = app_test("inspect", store=tmp_path)
    at.run()
    no_errors(at)
    assert any("Choose an adapter" in i.value for i in at.info)


def test_every_view_renders(adapters, tmp_path):
    at = app_test("inspect", store=tmp_path)
    at.run()
    _open(at, adapters[0])
    no_errors(at)
    assert [m.value for m in at.metric][:3] == ["6", "4", f"{6 * 4 * 64:,}"]
    assert len(at.get("plotly_chart")) == 1  # the spectra
    for view in VIEWS:
        at.segmented_control(key="ins_view").set_value(view).run()
        no_errors(at)
    at.segmented_control(key="ins_view").set_value("Layer × module").run()
    at.selectbox(key="ins_metric").set_value("fro_norm").run()
    at.segmented_control(key="ins_which").set_value("B").run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1


def test_compare_with_a_second_adapter(adapters, tmp_path):
    at = app_test("inspect", store=tmp_path)
    at.run()
    _open(at, adapters[0])
    at.segmented_control(key="ins_view").set_value("Compare with a second adapter").run()
    _open(at, adapters[1], key="ins_b")
    no_errors(at)
    sims = [m for m in at.metric if m.label.startswith("mean similarity")]
    assert len(sims) == 3 and all(0.0 <= float(m.value) <= 1.0 for m in sims)
    assert len(at.get("plotly_chart")) == 1


def test_bad_input_is_an_error_not_a_traceback(tmp_path):
    at = app_test("inspect", store=tmp_path)
    at.run()
    _open(at, tmp_path / "missing")
    assert not at.exception and "no such file" in at.error[0].value
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    _open(at, bad)
    assert not at.exception and at.error and "bad.safetensors" in at.error[0].value


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return shared_tiny_store(tmp_path_factory)


def test_a_stored_run_and_its_report(tiny_store):
    at = app_test("inspect", store=tiny_store)
    at.run()
    at.radio(key="ins_a_source").set_value("A stored run").run()
    no_errors(at)
    options = at.selectbox(key="ins_a_run").options
    assert len(options) == 4 and all("task.jsonl.gz" in o for o in options)
    assert [m.value for m in at.metric][:2] == ["4", "4"]  # 2 layers × (query, value), rank 4
    at.segmented_control(key="ins_view").set_value("Report").run()
    no_errors(at)
    assert len(at.get("download_button")) >= 1
    assert any(c.value.endswith("asymviz report ADAPTER -o report.html`.") for c in at.caption)


def test_the_card_opens_the_page_with_the_a_verdict_and_what_it_means(tiny_store):
    """A stored run's card compares A with the run's init/: b_only never trains A (random, B-only text), ab
    trains it (learned); the numbers are asymviz.card's."""
    from asymviz.card import adapter_card
    from asymviz.runs import list_runs

    runs = list_runs(tiny_store)
    at = app_test("inspect", store=tiny_store)
    at.run()
    at.radio(key="ins_a_source").set_value("A stored run").run()
    for mode, answer, words in (("b_only", "yes", "B-only training"), ("ab", "no", "moved away")):
        run = runs[(runs["mode"] == mode) & (runs["seed"] == 0)].iloc[0]
        at.selectbox(key="ins_a_run").set_value(run["run_id"]).run()
        no_errors(at)
        shown = {m.label: m.value for m in at.metric}
        assert shown["A still random?"] == answer
        card = adapter_card(f"{run['path']}/adapter").adapter
        assert card["a_test"] == "init"
        assert shown["update ‖ΔW‖_F"] == f"{card['update_norm']:.4g}"
        assert any(words in m.value for m in at.markdown)


def test_the_detected_format_is_shown_when_the_loader_gives_one(adapters, tmp_path):
    from asymviz.adapters import load_adapter

    at = app_test("inspect", store=tmp_path)
    at.run()
    _open(at, adapters[0])
    no_errors(at)
    fmt = getattr(load_adapter(adapters[0]), "format", None)
    source = next(c.value for c in at.caption if c.value.startswith("Source:"))
    assert (f"format: **{fmt}**" in source) if fmt else ("format:" not in source)


def test_a_b_only_run_shows_its_frozen_a_norms_from_run_json(tiny_store):
    import json

    from asymviz.runs import list_runs

    runs = list_runs(tiny_store)
    run = runs[(runs["mode"] == "b_only") & (runs["seed"] == 0)].iloc[0]
    norms = json.loads((Path(run["path"]) / "run.json").read_text()).get("frozen_norms")
    at = app_test("inspect", store=tiny_store)
    at.run()
    at.radio(key="ins_a_source").set_value("A stored run").run()
    at.selectbox(key="ins_a_run").set_value(run["run_id"]).run()
    no_errors(at)
    shown = [c.value for c in at.caption if "Frozen A at init" in c.value]
    if norms is None:  # a store written before the engine recorded them: nothing to show
        assert not shown
    else:
        assert len(shown) == 1 and f"mean {norms['row']['mean']:.4g}" in shown[0]
