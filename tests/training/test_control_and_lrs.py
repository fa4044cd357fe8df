"""The comparison a reviewer accepts (asymviz issue 12): the head_only control, the head's own lr, LoRA+ groups,
and frozen-factor norms, on the tiny BERT."""

from __future__ import annotations

import json

import pytest
import torch

from asymviz.base.models import default_head, load_model, resolve_model
from asymviz.runs import RunError, RunStore
from asymviz.training import lora
from asymviz.training.loop import train


def test_head_only_trains_only_the_head_and_writes_a_well_formed_run(tmp_path, tiny_config):
    cfg = tiny_config(mode="head_only", lr=1e-2)
    base, _ = load_model(resolve_model(cfg.model), "classification", num_labels=2)
    head = default_head(base, "classification")
    model = lora.wrap(base, cfg, "classification", head)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    in_head = {n for n, _ in model.named_parameters() if any(f".{h}." in f".{n}" for h in head)}
    assert trainable and trainable == in_head  # the head's every parameter, nothing else
    assert not any(".lora_" in n for n, _ in model.named_parameters())  # no adapter at all

    record = train(cfg, tmp_path / "run")
    assert record.status == "completed"
    d = record.data
    assert d["mode"] == "head_only" and d["has_adapter"] is False and d["frozen_check"] is None
    assert d["trainable_params"]["lora"] == 0 and d["trainable_params"]["head"] == sum(
        p.numel() for n, p in model.named_parameters() if n in trainable
    )
    assert d["learning_rates"] == {"lora_A": None, "lora_B": None, "head": 1e-2}
    assert not (tmp_path / "run" / "adapter").exists() and not (tmp_path / "run" / "init").exists()
    assert 0 <= d["metrics"]["test_accuracy"] <= 1
    assert set(d["split_summary"]) >= {"train", "validation", "test"}  # data's split summary, recorded
    assert d["split_summary"]["train"]["rows"] == d["data"]["n_train"]
    row = RunStore(tmp_path).list().iloc[0]
    assert row["mode"] == "head_only" and row["trainable_lora"] == 0 and not row["has_weights"]
    with pytest.raises(RunError, match="head_only trains no adapter"):
        record.load_adapter()


def test_head_only_needs_a_head(train_assets, tiny_config):
    from asymviz.errors import ConfigError

    cfg = tiny_config(mode="head_only")
    base, _ = load_model(resolve_model(cfg.model), "classification", num_labels=2)
    with pytest.raises(ConfigError, match="head_only needs a head"):
        lora.wrap(base, cfg, "causal_lm", ())


def test_lr_ratio_gives_the_loraplus_param_groups(train_assets, tiny_config):
    """Every LoRA factor gets the lr PEFT's create_loraplus_optimizer gives it; the head gets head_lr."""
    from peft.optimizers import create_loraplus_optimizer

    cfg = tiny_config(mode="ab", lr=1e-3, lr_ratio=16.0, head_lr=5e-4)
    base, _ = load_model(resolve_model(cfg.model), "classification", num_labels=2)
    model = lora.wrap(base, cfg, "classification", default_head(base, "classification"))
    ours = {id(p): g["lr"] for g in lora.param_groups(model, cfg) for p in g["params"]}
    peft = create_loraplus_optimizer(model, torch.optim.AdamW, lr=cfg.lr, loraplus_lr_ratio=cfg.lr_ratio)
    theirs = {id(p): g["lr"] for g in peft.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    lora_ids = [i for i in ours if ".lora_" in names[i]]
    assert lora_ids and {ours[i] for i in lora_ids} == {1e-3, 1.6e-2}
    for i in lora_ids:
        assert ours[i] == pytest.approx(theirs[i]), names[i]
    assert {ours[i] for i in ours if i not in lora_ids} == {5e-4}  # the whole head at its own lr
    assert set(ours) == set(theirs)  # the same trainable parameters


def test_lr_ratio_is_for_mode_ab_only(tiny_config):
    from asymviz.errors import ConfigError

    with pytest.raises(ConfigError, match="^lr_ratio: LoRA"):
        tiny_config(mode="b_only", lr_ratio=4.0)
    assert tiny_config(lr_ratio=1.0).run_id() == tiny_config().run_id()  # the default leaves run ids alone
    assert tiny_config(lr_ratio=4.0).run_id() != tiny_config().run_id()


@pytest.mark.parametrize(("mode", "factor"), [("b_only", "A"), ("a_only", "B")])
def test_frozen_norms_are_recorded_and_equal_the_inits(tmp_path, tiny_config, mode, factor):
    from asymviz.adapters import load_adapter

    record = train(tiny_config(mode=mode, rank=4), tmp_path / "run")
    norms = record.data["frozen_norms"]
    assert norms["factor"] == factor
    init = load_adapter(tmp_path / "run" / "init")
    mats = [torch.from_numpy(getattr(m, factor)).double() for m in init]  # A: (r, d_in), B: (d_out, r)
    rows = torch.cat([torch.linalg.vector_norm(x, dim=1) for x in mats])
    cols = torch.cat([torch.linalg.vector_norm(x, dim=0) for x in mats])
    assert norms["modules"] == len(mats)
    for key, x in (("row", rows), ("col", cols)):
        assert norms[key]["mean"] == pytest.approx(float(x.mean()), rel=1e-6)
        assert norms[key]["min"] == pytest.approx(float(x.min()), rel=1e-6)
        assert norms[key]["max"] == pytest.approx(float(x.max()), rel=1e-6)
    # orthonormal rows of A (b_only) / columns of B (a_only): norm 1
    unit = norms["row"] if factor == "A" else norms["col"]
    assert unit["min"] == pytest.approx(1.0, abs=1e-5) and unit["max"] == pytest.approx(1.0, abs=1e-5)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["frozen_norms"] == norms


def test_ab_records_no_frozen_norms(tmp_path, tiny_config):
    assert train(tiny_config(mode="ab"), tmp_path / "run").data["frozen_norms"] is None


def test_head_lr_is_chosen_once_per_task_and_equal_across_modes(tmp_path, tiny_config):
    from asymviz.training.sweep import expand, sweep

    configs = expand(tiny_config(steps=2), modes=["ab", "b_only", "head_only"], seeds=[0, 1])
    frame = sweep(configs, RunStore(tmp_path), lrs=[1e-3, 3e-2], lr_extensions=0)
    assert (frame["status"] == "completed").all()
    head_grid = frame[(frame["mode"] == "head_only")]
    chosen = json.loads((tmp_path / head_grid["run_id"].iloc[0] / "run.json").read_text())["lr_selection"]
    mains = frame[frame["role"] == "main"]
    assert sorted(mains["mode"]) == ["ab", "ab", "b_only", "b_only", "head_only", "head_only"]
    assert set(mains["head_lr"]) == {chosen["chosen_lr"]}  # one head lr, the control's choice
    grids = frame[(frame["role"] == "lr_grid") & (frame["mode"] != "head_only")]
    assert set(grids["head_lr"]) == {chosen["chosen_lr"]}  # the LoRA grids train with it too


def test_a_causal_lm_sweep_with_a_grid_has_no_head_control(tmp_path, train_assets, tiny_config):
    """A causal LM trains no head: the plan adds no head-lr control (it used to, and the control's failure --
    no head to train -- stopped every group of the task)."""
    from asymviz.training.sweep import sweep

    configs = [tiny_config(model=str(train_assets["llama"]), task=str(train_assets["qa"]), mode=m)
               for m in ("ab", "b_only")]  # fmt: skip
    frame = sweep(configs, tmp_path, lrs=[1e-3, 1e-2], lr_extensions=0)
    assert set(frame["mode"]) == {"ab", "b_only"} and set(frame["status"]) == {"completed"}
    assert len(frame) == 4  # two lrs per mode, the best one of each is its main run
