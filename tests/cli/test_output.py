"""asymviz.cli.output: `table` fits 100 columns with a legend; csv and json stay the whole frame; the sweep's
outline counts the runs it will train."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from asymviz.cli.main import build_parser, main
from asymviz.cli.outline import sweep_outline
from asymviz.cli.output import LEGENDS, TABLE_WIDTH, format_table, write_frame


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


@pytest.fixture
def wide():
    """A similarity-like frame: two long adapter paths repeated on every row, long module names, floats."""
    a = "/home/someone/experiments/2024-06/fine_foods_minilm_ab_r8_s0_e8d869de/adapter"
    b = "/home/someone/experiments/2024-06/fine_foods_minilm_ab_r8_s1_9d7c936b/adapter"
    rows = [
        {"adapter_1": a, "adapter_2": b, "module": f"bert.encoder.layer.{i}.attention.self.{kind}", "layer": i,
         "kind": kind, "which": "B", "dim": 384, "k1": 8, "k2": 8, "similarity": 0.1 + i / 7,
         "random_baseline": 8 / 384}
        for i in range(6) for kind in ("query", "value")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_table_fits_100_columns_with_aliases_and_legend(wide):
    text = format_table(wide, legend="what the columns mean")
    assert text.splitlines()[0] == "# what the columns mean"
    assert max(len(line) for line in _table_lines(text)) <= TABLE_WIDTH
    assert f"# [1] {wide['adapter_1'][0]}" in text and f"# [2] {wide['adapter_2'][0]}" in text
    assert "common prefix 'bert.encoder.layer.' left out" in text
    body = _table_lines(text)
    assert body[0].split()[:3] == ["adapter_1", "adapter_2", "module"]
    assert body[1].split()[:3] == ["[1]", "[2]", "0.attention.self.query"]
    assert body[1].split()[-1] == "0.1000"  # 4 significant digits, in the table only
    second = body.index("adapter_1  random_baseline")  # the last column did not fit: a block of its own
    assert body[second + 1].split() == ["[1]", "0.02083"]


def test_too_many_columns_wrap_into_blocks_repeating_the_first():
    frame = pd.DataFrame({f"column_number_{i}": np.arange(3) * 1.5 for i in range(12)})
    frame.insert(0, "run_id", ["run_a", "run_b", "run_c"])
    text = format_table(frame)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    headers = [line for line in lines if line.startswith("run_id")]
    assert len(headers) >= 2  # more than one block, each with the key column first
    shown = {c for h in headers for c in h.split()}
    assert shown == set(frame.columns)


def test_many_distinct_long_names_are_shortened_in_the_middle():
    ids = [f"chatterbot_topic_minilm_a_only_r16_s{i}_c90512a{i}" for i in range(5)]
    text = format_table(pd.DataFrame({"run_id": ids, "x": range(5)}))
    assert "shortened in the middle" in text
    body = _table_lines(text)[1:]
    assert [line.split()[0] for line in body] == [f"chatterbot_top…r16_s{i}_c90512a{i}" for i in range(5)]


def test_columns_pick_and_say_how_many_more():
    frame = pd.DataFrame({"a": [1], "b": [2.5], "c": ["x"]})
    text = format_table(frame, columns=["c", "a", "missing"])
    assert "# 1 more columns with --format csv or json" in text
    assert _table_lines(text)[0].split() == ["c", "a"]


def test_nan_and_integral_floats():
    text = format_table(pd.DataFrame({"n": [229653.0, 1.0], "x": [np.nan, np.inf]}))
    assert _table_lines(text)[1].split() == ["229653", "NaN"]
    assert _table_lines(text)[2].split() == ["1", "inf"]


def test_csv_and_json_are_unchanged_by_the_table_options(wide, capsys):
    write_frame(wide, "csv", None, legend="ignored", columns=["layer"])
    assert capsys.readouterr().out == wide.to_csv(index=False)
    write_frame(wide, "json", None, legend="ignored", columns=["layer"])
    back = pd.read_json(io.StringIO(capsys.readouterr().out), orient="records")
    assert list(back.columns) == list(wide.columns) and back["similarity"].tolist() == pytest.approx(
        wide["similarity"].tolist(), abs=1e-10
    )


def test_every_table_command_has_a_legend_and_help_points_to_the_readme():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("spectra", "similarity", "align", "diagnose", "sweep", "demo"):
        assert "Output columns" in sub[name].format_help(), name
    runs = next(a for a in sub["runs"]._actions if a.dest == "runs_command").choices
    for name in ("list", "compare"):
        assert "Output columns" in runs[name].format_help(), name
    assert set(LEGENDS) >= {"spectra", "similarity", "runs", "compare", "align", "diagnose", "intruders"}


def test_runs_list_table_of_the_shipped_store_fits(capsys):
    from asymviz.paths import shipped_store

    assert main(["runs", "list", "--store", str(shipped_store() / "minilm_tasks"), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# one row per run")
    assert max(len(line) for line in _table_lines(out)) <= TABLE_WIDTH
    assert main(["runs", "list", "--store", str(shipped_store() / "minilm_tasks"), "--format", "json"]) == 0
    assert "path" in json.loads(capsys.readouterr().out)[0]  # json keeps every column


def test_sweep_outline_counts_pending_runs(tmp_path):
    from asymviz.training.config import TrainConfig
    from asymviz.training.sweep import expand

    configs = expand(TrainConfig(steps=10), tasks=["fine_foods"], modes=["ab", "b_only"], seeds=[0, 1, 2])
    runs, line = sweep_outline(configs, tmp_path / "store")
    assert runs == 6
    assert line.startswith("sweep: 6 runs to train on CPU, about 480 training examples: roughly")
    runs, line = sweep_outline(configs, tmp_path / "store", lrs=[1e-3, 3e-3])
    # the grid (2 lrs x (2 modes + the head_only control that chooses the head's lr), first seed) and, at most,
    # every main run
    assert runs == 6 + 2 * 3
    assert "up to 12 runs" in line and "(6 lr-grid runs first" in line
    runs, line = sweep_outline([c.replace(model="/some/model") for c in configs], tmp_path / "store")
    assert "no measured speed for /some/model on CPU" in line
