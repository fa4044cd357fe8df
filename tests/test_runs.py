"""asymviz.runs: the run store reads live, finished and killed runs from run.json alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from asymviz.runs import (
    LIST_COLUMNS,
    RUN_FILE,
    RunError,
    RunRecord,
    RunStore,
    RunWriter,
    list_runs,
    write_json_atomic,
)


def _write_run(root, run_id, **fields):
    folder = root / run_id
    folder.mkdir(parents=True)
    data = {"schema": 1, "run_id": run_id, "status": "completed", "model": "minilm", "task": "fine_foods",
            "mode": "ab", "rank": 8, "seed": 0, "config": {"alpha": 16.0, "a_init": "orthogonal", "mode": "ab"},
            "metrics": {"test_accuracy": 0.8}, "trainable_params": {"lora": 1, "head": 2, "total": 3},
            "timings": {"wall_s": 1.5}}  # fmt: skip
    data.update(fields)
    (folder / RUN_FILE).write_text(json.dumps(data))
    return folder


def test_writer_lifecycle_is_readable_at_every_stage(tmp_path):
    writer = RunWriter(tmp_path / "r1", heartbeat_s=0.0)
    writer.start("r1", {"model": "m", "task": "t", "mode": "b_only", "rank": 4, "seed": 1})
    record = RunStore(tmp_path).get("r1")
    assert record.status == "running"  # our own pid: alive
    writer.log(1, "train", {"loss": 0.5})
    writer.update(progress={"step": 1, "total_steps": 10})
    assert RunStore(tmp_path).get("r1").progress == {"step": 1, "total_steps": 10, "phase": "load"}
    assert RunStore(tmp_path).get("r1").metrics().to_dict("records") == [
        {"step": 1, "split": "train", "metric": "loss", "value": 0.5}
    ]
    writer.finish("completed", metrics={"test_accuracy": 0.9})
    record = RunStore(tmp_path).get("r1")
    assert record.status == "completed" and record.final_metrics == {"test_accuracy": 0.9}
    assert record.data["finished_at"] is not None
    assert not [p for p in (tmp_path / "r1").iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_metrics_skip_a_line_cut_by_a_kill(tmp_path):
    folder = _write_run(tmp_path, "r")
    (folder / "metrics.csv").write_text(
        "step,split,metric,value\n1,train,loss,0.7\n2,train,loss,0.6\n3,train,lo"
    )
    frame = RunRecord.load(folder).metrics()
    assert frame["step"].tolist() == [1, 2]
    assert list(frame.columns) == ["step", "split", "metric", "value"]
    assert str(frame["value"].dtype) == "float64"


def test_running_record_of_a_dead_process_reads_as_interrupted(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _write_run(tmp_path, "dead", status="running", host=socket.gethostname(), pid=proc.pid, pid_start="1",
               heartbeat=time.time())  # fmt: skip
    _write_run(
        tmp_path, "alive", status="running", host=socket.gethostname(), pid=os.getpid(), heartbeat=time.time()
    )
    store = RunStore(tmp_path)
    assert store.get("dead").status == "interrupted"
    assert store.get("alive").status == "running"


def test_other_host_uses_the_heartbeat(tmp_path):
    _write_run(tmp_path, "fresh", status="running", host="elsewhere", pid=1, heartbeat=time.time())
    _write_run(tmp_path, "stale", status="running", host="elsewhere", pid=1, heartbeat=time.time() - 10**5)
    store = RunStore(tmp_path)
    assert store.get("fresh").status == "running"
    assert store.get("stale").status == "interrupted"


def test_list_has_fixed_columns_and_skips_junk(tmp_path):
    _write_run(
        tmp_path, "b_run", mode="b_only", config={"a_init": "gaussian", "mode": "b_only", "alpha": 16.0}
    )
    _write_run(tmp_path, "a_run", metrics={"test_loss": 2.0, "test_perplexity": 7.4})
    (tmp_path / "junk").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / RUN_FILE).write_text("{not json")
    (tmp_path / ".queue").mkdir()
    frame = list_runs(tmp_path)
    assert list(frame.columns) == list(LIST_COLUMNS)
    assert frame["run_id"].tolist() == ["a_run", "b_run"]
    assert frame["a_init"].tolist()[1] == "gaussian" and frame["a_init"].isna().tolist()[0]
    assert frame.loc[0, "test_perplexity"] == pytest.approx(7.4)
    assert frame["trainable_params"].tolist() == [3, 3]
    assert str(frame["rank"].dtype) == "Int64"


def test_list_has_the_head_targets_and_top_layers_a_run_trained(tmp_path):
    """head: run.json's resolved head_modules (a default head is named), else the config's; comma-joined."""
    _write_run(tmp_path, "default_head", head_modules=["pooler", "classifier"], targets=["query", "value"])
    _write_run(
        tmp_path, "classifier_only", config={"head": ["classifier"], "top_layers": 1, "targets": ["value"]}
    )
    _write_run(tmp_path, "old_run")
    frame = list_runs(tmp_path).set_index("run_id")
    assert frame.loc["default_head", "head"] == "pooler,classifier"
    assert frame.loc["default_head", "targets"] == "query,value"
    assert frame.loc["classifier_only", "head"] == "classifier"
    assert (
        frame.loc["classifier_only", "targets"] == "value" and frame.loc["classifier_only", "top_layers"] == 1
    )
    assert pd.isna(frame.loc["old_run", "head"]) and pd.isna(frame.loc["old_run", "top_layers"])
    assert str(frame["top_layers"].dtype) == "Int64"


def test_empty_or_missing_store_lists_nothing(tmp_path):
    assert list(RunStore(tmp_path / "nope").list().columns) == list(LIST_COLUMNS)
    assert len(RunStore(tmp_path).list()) == 0


def test_hundreds_of_runs_list(tmp_path):
    for i in range(300):
        _write_run(tmp_path, f"run{i:03d}", seed=i)
    frame = RunStore(tmp_path).list()  # timing is in bench/bench_train.py; here only that it works
    assert len(frame) == 300 and frame["seed"].tolist() == list(range(300))


def test_cancel_get_delete(tmp_path):
    _write_run(tmp_path, "r", status="running", host=socket.gethostname(), pid=os.getpid())
    store = RunStore(tmp_path)
    store.cancel("r")
    assert store.get("r").cancel_requested
    with pytest.raises(RunError, match="no run 'zz'"):
        store.get("zz")
    with pytest.raises(RunError):
        store.path("../x")
    store.delete("r")
    assert "r" not in store


def test_missing_adapter_is_a_clear_error(tmp_path):
    _write_run(tmp_path, "r", status="failed", error="ValueError: boom")
    record = RunStore(tmp_path).get("r")
    with pytest.raises(RunError, match="no trained adapter"):
        record.load_adapter()
    assert record.row()["error"] == "ValueError: boom"


def test_group_folders_hold_runs_one_level_down(tmp_path):
    _write_run(tmp_path, "top_run")
    _write_run(tmp_path / "exp1", "grid_run", role="lr_grid")
    _write_run(tmp_path / "exp1", "main_run", role="main")
    _write_run(tmp_path / "exp2", "other_run")
    (tmp_path / "exp1" / "main_run" / "adapter").mkdir()
    (tmp_path / "exp1" / "main_run" / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "exp2" / "deeper" / "too_deep").mkdir(parents=True)  # two levels down: not a run of the store
    _write_run(tmp_path / "exp2" / "deeper", "too_deep_run")
    store = RunStore(tmp_path)
    frame = store.list()
    assert frame["run_id"].tolist() == ["top_run", "grid_run", "main_run", "other_run"]
    assert frame["group"].tolist() == ["", "exp1", "exp1", "exp2"]
    assert frame["role"].tolist()[1:3] == ["lr_grid", "main"]
    assert frame["has_weights"].tolist() == [False, False, True, False]
    assert store.groups() == ["exp1", "exp2"]
    assert store.path("main_run") == tmp_path / "exp1" / "main_run" and "main_run" in store
    assert store.get("other_run").run_id == "other_run"
    assert store.path("new_run") == tmp_path / "new_run"  # a new run goes to the top level
    with pytest.raises(RunError, match="bad run id"):
        store.path("exp1/main_run")
