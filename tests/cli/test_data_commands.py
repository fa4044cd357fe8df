"""`asymviz tasks` and `asymviz probe` (the public contract: columns, formats, one `error:` line on bad input)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from tiny_task import write_separable_task, write_tiny_bert_with_vocab

from asymviz.base.tasks import SUMMARY_COLUMNS, TASKS
from asymviz.cli.main import main
from asymviz.probes.linear_probe import COLUMNS


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path / "cache"))


def test_tasks_lists_every_bundled_task_and_split(capsys):
    assert main(["tasks", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert tuple(frame.columns) == SUMMARY_COLUMNS
    assert list(dict.fromkeys(frame["task"])) == list(TASKS)
    topic = frame[frame.task == "chatterbot_topic"].set_index("split")
    assert (topic.loc[["validation", "test"], "largest_item_share"] < 0.05).all()
    assert (topic["rows"] == topic["unique_texts"]).all()


def test_tasks_json_and_table_for_chosen_tasks(capsys, tmp_path):
    out = tmp_path / "t.json"
    assert main(["tasks", "--task", "word_pos,chatterbot_qa", "--format", "json", "-o", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["task"] for r in records] == ["word_pos"] * 3 + ["chatterbot_qa"] * 3
    assert records[3]["task_type"] == "causal_lm" and records[3]["majority_accuracy"] is None
    assert main(["tasks", "--task", "word_pos"]) == 0
    assert "majority_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tasks", "--task", "nope"], "error: --task: unknown task 'nope'"),
        (
            ["probe", "--model", "minilm", "--task", "chatterbot_qa"],
            "error: task: chatterbot_qa is a causal_lm",
        ),
        (["probe", "--model", "/no/such/model", "--task", "word_pos"], "error: model: no model folder"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_probe_prints_one_row_per_task(tmp_path, capsys):
    bert = write_tiny_bert_with_vocab(tmp_path)
    task = write_separable_task(tmp_path / "sep.csv", n=80)
    argv = ["probe", "--model", str(bert), "--task", f"{task},{task}", "--format", "csv", "--threads", "1"]
    assert main(argv) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert tuple(frame.columns) == COLUMNS and len(frame) == 2
    assert frame["cached"].tolist() == [False, True]  # the second reads the first's features
    assert frame["test_accuracy"].between(0, 1).all()
