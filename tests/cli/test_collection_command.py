"""`asymviz collection`: folders of adapters expand, the shared-direction rows are the library's, bad input is
one error line."""

from __future__ import annotations

import io

import pandas as pd
import torch
from conftest import write_adapter

from asymviz.cli.main import main

NAME = "model.layers.0.self_attn.q_proj"


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def _three_sharing_a(root):
    """Three adapters with one A (r=4, d_in=40) and independent random B's (d_out=60)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 40, generator=g)
    for i in range(3):
        write_adapter(root / f"task{i}", {NAME: (A, torch.randn(60, 4, generator=g))}, {"lora_alpha": 8})
    return root


def test_a_folder_of_adapters_gives_the_shared_directions(capsys, tmp_path):
    root = _three_sharing_a(tmp_path / "many")
    code, out, err = run(capsys, "collection", root, "--format", "csv")
    assert code == 0, err
    assert "collection: 3 adapters: task0, task1, task2" in err
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns)[:7] == [
        "module",
        "layer",
        "kind",
        "which",
        "k",
        "variance_explained",
        "random_baseline",
    ]
    a = frame[frame["which"] == "A"].set_index("k")["variance_explained"]
    b = frame[frame["which"] == "B"].set_index("k")
    assert abs(a.loc[4] - 1) < 1e-9 and abs(a.loc[1] - 0.25) < 1e-9  # one shared A: r directions explain all
    assert (b["variance_explained"] < 0.5).all()  # independent B's: far from shared
    code, out, err = run(capsys, "collection", root / "task0", root / "task1", "--part", "clusters", "--which", "A",
                         "--format", "csv")  # fmt: skip
    clusters = pd.read_csv(io.StringIO(out))
    assert code == 0 and clusters["cluster"].nunique() == 1  # same A: one group


def test_bad_input_is_one_error_line(capsys, tmp_path):
    root = _three_sharing_a(tmp_path / "many")
    code, out, err = run(capsys, "collection", root / "task0")
    assert code == 2 and out == "" and err.startswith("error:") and len(err.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "collection", tmp_path / "empty", root)
    assert code == 2 and "no adapter or run folder" in err and len(err.splitlines()) == 1
