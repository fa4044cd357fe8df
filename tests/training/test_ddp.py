"""Data parallelism: two processes (torchrun, gloo on the CPU; `accelerate launch` sets the same variables) train
exactly what one process trains on the global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_dropout_bert(train_assets, tmp_path):
    folder = tmp_path / "bert0"
    shutil.copytree(train_assets["bert"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_two_processes_equal_one_on_the_global_batch(tmp_path, tiny_config, no_dropout_bert):
    from asymviz.runs import RunStore
    from asymviz.training.loop import train

    single = train(
        tiny_config(model=str(no_dropout_bert), batch_size=8, steps=3, mode="b_only"), tmp_path / "one"
    )
    cfg = tiny_config(model=str(no_dropout_bert), batch_size=4, steps=3, mode="b_only")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ASYMVIZ_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "asymviz.training", "train", "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "two")]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    two = RunStore(tmp_path).get("two")
    assert two.status == "completed" and two.data["world_size"] == 2
    assert two.final_metrics["examples_per_s"] > 0
    a, b = single.load_adapter(), two.load_adapter()
    for ma, mb in zip(a, b):
        torch.testing.assert_close(torch.from_numpy(ma.B), torch.from_numpy(mb.B), atol=1e-5, rtol=1e-4)
        assert np.array_equal(ma.A, mb.A)  # frozen, same seed
    assert two.final_metrics["test_loss"] == pytest.approx(single.final_metrics["test_loss"], abs=1e-5)
