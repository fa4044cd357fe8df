"""asymviz.cli: the public contract (command names, columns, exit codes, one-line errors)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from conftest import random_factors

from asymviz.cli.main import main


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_spectra_csv_and_json(capsys, llama_like, tmp_path):
    code, out, err = run(capsys, "spectra", llama_like, "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert {"module", "which", "k", "sigma"} <= set(frame.columns)
    assert set(frame["which"]) == {"A", "B", "delta"} and len(frame) == 6 * 3 * 4
    target = tmp_path / "s.json"
    code, out, _ = run(capsys, "spectra", llama_like, "--which", "delta", "--format", "json", "-o", target)
    rows = json.loads(target.read_text())
    assert code == 0 and out == "" and {r["which"] for r in rows} == {"delta"}


def test_spectra_table(capsys, llama_like):
    code, out, _ = run(capsys, "spectra", llama_like, "--which", "B")
    assert code == 0 and "model.layers.0.self_attn.q_proj" in out and "sigma" in out


def test_similarity_three_adapters(capsys, make_adapter):
    paths = [
        make_adapter({"model.layers.0.q_proj": random_factors(4, 16, 16, seed=s)}, name=f"s{s}")
        for s in range(3)
    ]
    code, out, err = run(capsys, "similarity", *paths, "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert {"adapter_1", "adapter_2", "module", "which", "similarity", "random_baseline"} <= set(
        frame.columns
    )
    assert len(frame) == 3 * 3  # 3 pairs x (A, B, delta)


def test_report(capsys, llama_like, tmp_path):
    target = tmp_path / "report.html"
    code, _, err = run(capsys, "report", llama_like, "--against", llama_like, "-o", target)
    text = target.read_text()
    assert code == 0 and "wrote" in err
    assert "Singular spectra" in text and "Against" in text and text.count("plotly.js v") <= 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["spectra", "/nonexistent/adapter"], "no such file or folder"),
        (["spectra"], "the following arguments are required"),
        (["spectra", "x", "--which", "C"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_error_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_corrupt_adapter_error_names_file(capsys, llama_like):
    (llama_like / "adapter_model.safetensors").write_bytes(b"\x80\x04garbage")
    code, _, err = run(capsys, "spectra", llama_like)
    assert code == 2 and err.startswith("error: adapter_model.safetensors:") and "Traceback" not in err


def test_problems_are_warnings_on_stderr(capsys, llama_like, tmp_path):
    bare = tmp_path / "w.safetensors"
    bare.write_bytes((llama_like / "adapter_model.safetensors").read_bytes())
    code, out, err = run(capsys, "spectra", bare, "--format", "csv")
    assert code == 0 and "warning:" in err and "scaling 1" in err and out.startswith("module,")


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "asymviz" in capsys.readouterr().out


def test_similarity_of_an_adapter_with_itself_is_one(capsys, llama_like):
    code, out, err = run(capsys, "similarity", llama_like, llama_like, "--format", "csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == 6 * 3 and (frame["similarity"] - 1).abs().max() < 1e-9


def test_a_refused_pickle_is_the_only_stderr_line(capsys, llama_like):
    import pickle

    class System:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    (llama_like / "adapter_model.safetensors").unlink()
    (llama_like / "adapter_model.bin").write_bytes(pickle.dumps({"x": System()}))
    code, out, err = run(capsys, "spectra", llama_like, "--format", "csv")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: adapter_model.bin: refused: the pickle asks for os.system; asymviz loads tensors only"
    ]


def test_an_unforeseen_exception_is_one_line(capsys, monkeypatch, llama_like):
    import asymviz.spectra

    def boom(*a, **k):
        raise KeyError("surprise\nsecond line")

    monkeypatch.setattr(asymviz.spectra, "singular_spectrum", boom)
    code, out, err = run(capsys, "spectra", llama_like)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: unexpected KeyError")


def test_info_names_the_format_and_scaling_source(capsys, tmp_path):
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    save_file(
        {"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 8, generator=g),
         "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(8, 4, generator=g),
         "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha": torch.tensor(2.0)},
        tmp_path / "k.safetensors",
    )  # fmt: skip
    code, out, err = run(capsys, "info", tmp_path / "k.safetensors", "--format", "json")
    info = json.loads(out)
    assert code == 0 and info["format"] == "kohya" and info["scaling_source"] == "alpha tensor"
    assert info["modules"] == 1 and info["ranks"] == [4]
    code, out, _ = run(capsys, "info", tmp_path / "k.safetensors", "--modules", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert frame.loc[0, "scaling"] == 0.5 and "expert" in frame.columns
    code, out, _ = run(capsys, "spectra", tmp_path / "k.safetensors", "--which", "delta", "--format", "json")
    assert code == 0 and isinstance(json.loads(out), list)  # still a list of rows


def test_other_method_is_one_error_line(capsys, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"lora_unet_x.hada_w1_a": torch.ones(2, 2)}, tmp_path / "loha.safetensors")
    code, out, err = run(capsys, "spectra", tmp_path / "loha.safetensors")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "LoHa (LyCORIS) adapter: not a low-rank B·A update" in err


def _native_noise_cli(path, fail: bool):
    """The real CLI in a subprocess, with a C-level write to fd 1 and fd 2 (as MKL or torch's C++ warnings
    do) in the middle of the command; `fail` makes the command end in an AdapterError."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import os, asymviz.spectra as s
from asymviz.cli.main import main
from asymviz.errors import AdapterError
orig = s.singular_spectrum
def noisy(*a, **k):
    os.write(1, b"Intel MKL WARNING: native noise\\n"); os.write(2, b"[W native] more noise\\n")
    if {fail}: raise AdapterError("x.safetensors: refused")
    return orig(*a, **k)
s.singular_spectrum = noisy
raise SystemExit(main(["spectra", {str(path)!r}, "--format", "csv"]))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_native_library_output_never_precedes_the_csv_or_the_error_line(llama_like):
    ok = _native_noise_cli(llama_like, fail=False)
    assert ok.returncode == 0 and ok.stdout.startswith("module,"), ok.stderr
    assert "warning: Intel MKL WARNING: native noise" in ok.stderr.splitlines()
    bad = _native_noise_cli(llama_like, fail=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["error: x.safetensors: refused"]


def test_first_hour_mistakes_are_one_error_line_before_any_work(capsys, llama_like, tmp_path):
    for argv, needle in (
        (("similarity", llama_like, llama_like, "--k", "-3"), "must be a positive integer"),
        (("similarity", llama_like, llama_like, "--k", "0"), "must be a positive integer"),
        (("similarity", llama_like), "at least two adapters"),
        (("spectra", llama_like, "-o", tmp_path / "no" / "x.csv"), "does not exist"),
        (("runs", "list", "--store", tmp_path / "nope"), "no run store"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and needle in err, (argv, err)


def test_a_run_folder_stands_for_its_adapter(capsys, llama_like, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(llama_like, run_dir / "adapter")
    shutil.copytree(llama_like, run_dir / "init")
    (run_dir / "run.json").write_text('{"schema": 1, "run_id": "run", "status": "completed"}')
    code, direct, _ = run(capsys, "spectra", llama_like, "--format", "csv")
    code2, via_run, err = run(capsys, "spectra", run_dir, "--format", "csv")
    assert code == code2 == 0 and direct == via_run, err
