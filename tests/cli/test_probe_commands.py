"""`asymviz align` / `asymviz diagnose` on a tiny saved model, adapter and task (the public contract)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pandas as pd
import pytest
from tiny_task import write_tiny_adapter, write_tiny_bert, write_tiny_task

from asymviz.cli.main import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    base = write_tiny_bert(root)
    adapter, _ = write_tiny_adapter(base, root / "adapter")
    return {"root": root, "base": str(base), "adapter": str(adapter), "task": str(write_tiny_task(root))}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path / "cache"))


def test_align_writes_the_contract_columns_as_csv(files, tmp_path):
    out = tmp_path / "align.csv"
    argv = [
        "align",
        files["adapter"],
        "--base",
        files["base"],
        "--task",
        files["task"],
        "--samples",
        "12",
        "--k",
        "4",
    ]
    assert main([*argv, "--format", "csv", "-o", str(out)]) == 0
    frame = pd.read_csv(out)
    assert {"module", "which", "side", "similarity", "random_baseline"} <= set(frame.columns)
    assert set(frame["which"]) == {"A", "B"} and set(frame["side"]) == {"input", "output", "weight"}
    assert len(frame) == 16


def test_a_run_folder_names_its_model_and_task(files, capsys):
    run = files["root"] / "run"
    write_tiny_adapter(files["base"], run / "adapter", seed=2)
    write_tiny_adapter(files["base"], run / "init", seed=2, init_lora_weights=True)
    config = {"model": files["base"], "task": files["task"], "max_length": 16}
    (run / "run.json").write_text(json.dumps({"schema": 1, "config": config}))
    assert main(["align", str(run), "--samples", "8", "--k", "4", "--no-weight", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(frame["source"]) == {"trained", "init"} and len(frame) == 2 * 4 * 2
    assert main(["diagnose", str(run), "--k", "3", "--format", "csv"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 4


def test_align_summary_as_json_on_stdout(files, capsys):
    argv = ["align", files["adapter"], "--base", files["base"], "--task", files["task"], "--samples", "8"]
    assert main([*argv, "--k", "4", "--no-weight", "--summary", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["which"], r["side"]) for r in rows} == {("A", "input"), ("B", "output")}
    assert all("ratio" in r for r in rows)


def test_diagnose_table_and_intruder_rows(files, capsys):
    assert main(["diagnose", files["adapter"], "--base", files["base"], "--k", "5", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(frame) == 4 and {"n_intruders", "amplification", "direction_change"} <= set(frame.columns)
    assert (
        main(
            [
                "diagnose",
                files["adapter"],
                "--base",
                files["base"],
                "--k",
                "3",
                "--intruders",
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 * 3 and all(isinstance(r["intruder"], bool) for r in rows)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["align", "{adapter}", "--base", "{base}", "--task", "no_such_task"], "neither a known task"),
        (["align", "{adapter}", "--base", "{base}", "--task", "{task}", "--k", "0"], "at least 1"),
        (["diagnose", "{adapter}", "--base", "{base}", "--eps", "2"], "--eps"),
        (["diagnose", "{root}/missing", "--base", "{base}"], "no such file"),
    ],
)
def test_bad_input_is_one_error_line_and_status_2(files, capsys, argv, message):
    assert main([a.format(**files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_command_module_imports_nothing_heavy():
    code = "import sys, asymviz.cli.probes; print(sorted({'torch', 'transformers', 'peft', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
