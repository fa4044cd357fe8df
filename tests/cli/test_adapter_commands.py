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
