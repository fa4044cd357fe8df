"""A run's one adapted module: its moments over the run's own training split (asymviz.probes.run_moments)."""

from __future__ import annotations

import pytest

from asymviz.errors import MechanismError


def test_run_moments_are_the_previous_layers_output_tokens(mechanism_store, train_assets):
    """Σ of the top value projection = Σ over real tokens of the layer below's output, on the training split."""
    import torch

    from asymviz.base.models import load_model, resolve_model
    from asymviz.mechanism import mechanism_runs
    from asymviz.probes.run_moments import run_moments
    from asymviz.runs import RunRecord
    from asymviz.training.config import TrainConfig
    from asymviz.training.workspace import Workspace

    runs = mechanism_runs(mechanism_store)
    run = RunRecord.load(runs.loc[runs["mode"] == "ab", "path"].iloc[0])
    mom = run_moments(run, batch_size=5)
    config = TrainConfig.from_dict(run.config)
    ws = Workspace()
    task = ws.task(config)
    model, tokenizer = load_model(resolve_model(config.model), "classification", num_labels=2)
    enc = ws.encoded(config, task, tokenizer, resolve_model(config.model))["train"]
    with torch.no_grad():
        hidden = model.eval()(
            input_ids=enc.ids, attention_mask=enc.mask, output_hidden_states=True
        ).hidden_states
    x = hidden[1][enc.mask.bool()].double()  # (tokens, 32): the input of layer 1
    assert mom.n_tokens == x.shape[0]
    torch.testing.assert_close(
        mom.inputs, x.T @ x, rtol=1e-4, atol=1e-4 * float(x.square().sum()) / x.shape[0]
    )


def test_base_model_of_finds_a_shipped_models_folder(tmp_path):
    from asymviz.probes.run_moments import base_model_of
    from asymviz.runs import RunRecord

    run_dir = tmp_path / "cached_runs" / "vit_mechanism" / "mnist_run"
    run_dir.mkdir(parents=True)
    run = RunRecord(run_dir, {"config": {"model": ".gpu_store/models/vit-fmnist"}})
    with pytest.raises(MechanismError, match="not here"):
        base_model_of(run)
    shipped = tmp_path / "cached_runs" / "models" / "vit-fmnist"
    shipped.mkdir(parents=True)
    (shipped / "config.json").write_text("{}")
    assert base_model_of(run) == str(shipped)
    assert base_model_of(run, "elsewhere") == "elsewhere"
    assert base_model_of(RunRecord(run_dir, {"config": {"model": "minilm"}})) == "minilm"


def test_run_moments_refuse_a_run_whose_split_differs(mechanism_store, tmp_path):
    import json
    import shutil

    from asymviz.mechanism import mechanism_runs
    from asymviz.probes.run_moments import run_moments
    from asymviz.runs import RunRecord

    runs = mechanism_runs(mechanism_store)
    copy = tmp_path / "run"
    shutil.copytree(runs.loc[runs["mode"] == "ab", "path"].iloc[0], copy)
    split = json.loads((copy / "split.json").read_text())
    split["train"] = split["train"][1:]  # one training row fewer than the task gives
    (copy / "split.json").write_text(json.dumps(split))
    with pytest.raises(MechanismError, match="training split is not the one"):
        run_moments(RunRecord.load(copy))
