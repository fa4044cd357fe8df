"""The training commands through asymviz.cli.main (the public contract: names of commands and flags)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from asymviz.cli.main import main


def _train_args(train_assets, out, *extra):
    return ["train", "--model", str(train_assets["bert"]), "--task", str(train_assets["task"]), "--mode", "b_only",
            "--a-init", "gaussian", "--rank", "2", "--alpha", "4", "--targets", "query,value", "--steps", "2",
            "--lr", "1e-3", "--batch-size", "4", "--max-length", "16", "--seed", "1", "--device", "cpu",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def test_train_then_list(tmp_path, train_assets, capsys):
    assert main(_train_args(train_assets, tmp_path / "store" / "one")) == 0
    run = json.loads((tmp_path / "store" / "one" / "run.json").read_text())
    cfg = run["config"]
    assert (cfg["mode"], cfg["a_init"], cfg["rank"], cfg["alpha"], cfg["steps"], cfg["seed"]) == (
        "b_only",
        "gaussian",
        2,
        4.0,
        2,
        1,
    )
    assert cfg["targets"] == ["query", "value"] and cfg["max_length"] == 16
    capsys.readouterr()
    assert main(["runs", "list", "--store", str(tmp_path / "store"), "--format", "csv"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    for col in ("run_id", "model", "task", "mode", "rank", "seed", "status", "trainable_params", "wall_s",
                "test_accuracy", "test_macro_f1"):  # fmt: skip
        assert col in frame.columns
    assert frame.loc[0, "status"] == "completed" and frame.loc[0, "mode"] == "b_only"
    assert main(["runs", "list", "--store", str(tmp_path / "store"), "--format", "table"]) == 0
    assert "b_only" in capsys.readouterr().out


def test_train_twice_needs_overwrite(tmp_path, train_assets, capsys):
    out = tmp_path / "one"
    assert main(_train_args(train_assets, out)) == 0
    assert main(_train_args(train_assets, out)) == 2
    assert "already holds a completed run" in capsys.readouterr().err
    assert main(_train_args(train_assets, out, "--overwrite")) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--rank", "0"], "rank: must be a positive integer"),
        (["--steps", "3", "--epochs", "1"], "steps: give either"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, train_assets, capsys, extra, message):
    assert main(_train_args(train_assets, tmp_path / "x", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_config_file_and_flags(tmp_path, train_assets, tiny_config):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(tiny_config(mode="a_only", steps=2).to_dict()))
    assert main(["train", "--config", str(path), "--seed", "5", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    cfg = json.loads((tmp_path / "r" / "run.json").read_text())["config"]
    assert cfg["mode"] == "a_only" and cfg["seed"] == 5 and cfg["steps"] == 2


def test_sweep_is_resumable(tmp_path, train_assets, capsys):
    store = tmp_path / "store"
    args = ["sweep", "--model", str(train_assets["bert"]), "--tasks", str(train_assets["task"]),
            "--modes", "ab,b_only", "--seeds", "0,1", "--ranks", "2", "--steps", "2", "--batch-size", "4",
            "--device", "cpu", "--store", str(store), "--quiet", "--format", "csv"]  # fmt: skip
    assert main(args) == 0
    first = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert len(first) == 4 and (first["status"] == "completed").all()
    started = {
        p.name: json.loads((p / "run.json").read_text())["started_at"] for p in store.iterdir() if p.is_dir()
    }
    assert main(args) == 0  # nothing to do: every run completed
    assert {
        p.name: json.loads((p / "run.json").read_text())["started_at"] for p in store.iterdir() if p.is_dir()
    } == started
    assert "completed" not in capsys.readouterr().err  # no run was announced: none ran


def test_sweep_redoes_an_interrupted_run(tmp_path, train_assets, tiny_config):
    from asymviz.runs import RunStore
    from asymviz.training.sweep import sweep

    cfgs = [tiny_config(mode="ab", steps=2), tiny_config(mode="a_only", steps=2)]
    store = RunStore(tmp_path)
    sweep(cfgs, store)
    victim = store.path(cfgs[1].run_id()) / "run.json"
    data = json.loads(victim.read_text())
    data.update(status="running", pid=2**22 + 12345, pid_start="0")
    victim.write_text(json.dumps(data))
    assert store.get(cfgs[1].run_id()).status == "interrupted"
    frame = sweep(cfgs, store)
    assert (frame["status"] == "completed").all()


def test_runs_cancel_and_unknown_run(tmp_path, capsys):
    assert main(["runs", "cancel", "nope", "--store", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "sweep", "runs", "demo"):
        assert command in out


def test_commands_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, asymviz.cli.training, asymviz.training, asymviz.runs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_task_is_refused_before_a_run_folder_is_written(tmp_path, capsys):
    assert main(["train", "--task", "nope", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task: 'nope' is neither a bundled task") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
