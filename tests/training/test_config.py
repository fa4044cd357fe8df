"""asymviz.training.config: TrainConfig checks name the field; presets; stable run ids."""

from __future__ import annotations

import pytest

from asymviz.errors import ConfigError
from asymviz.training.config import DEMO, DEMO_HEAD_LR, DEMO_LR, MODES, TrainConfig, preset


def test_defaults_are_valid_and_roundtrip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.mode == "ab" and cfg.a_init == "orthogonal" and cfg.rank == 8 and cfg.alpha == 16.0


def test_strings_and_lists_become_tuples():
    cfg = TrainConfig(targets="query, value", head=["classifier"])
    assert cfg.targets == ("query", "value") and cfg.head == ("classifier",)
    assert cfg.to_dict()["targets"] == ["query", "value"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"mode": "a_and_b"}, "mode"),
        ({"a_init": "zeros"}, "a_init"),
        ({"rank": 0}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"alpha": 0}, "alpha"),
        ({"lr": -1.0}, "lr"),
        ({"head_lr": 0.0}, "head_lr"),
        ({"steps": 10, "epochs": 1.0}, "steps"),
        ({"epochs": 0.0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 2}, "max_length"),
        ({"warmup": 1.0}, "warmup"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"holdout": 0.6}, "holdout"),
        ({"device": "tpu"}, "device"),
        ({"precision": "fp8"}, "precision"),
        ({"top_layers": 0}, "top_layers"),
        ({"cache_prefix": True}, "cache_prefix"),
        ({"targets": ""}, "targets"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TrainConfig(**changes)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="^colour: not a TrainConfig field"):
        TrainConfig.from_dict({"colour": "red"})


def test_run_id_is_stable_and_distinguishes_what_matters():
    a = TrainConfig(mode="b_only", seed=1)
    assert a.run_id() == TrainConfig(mode="b_only", seed=1).run_id()
    assert a.run_id().startswith("fine_foods_minilm_b_only_r8_s1_")
    assert a.run_id() != a.replace(lr=2e-3).run_id()
    assert a.run_id() == a.replace(device="cuda", threads=4).run_id()  # where it runs is not what it is


def test_demo_preset_is_three_modes_with_their_lr_and_the_control():
    configs = preset("demo")
    assert [c.mode for c in configs] == [*MODES, "head_only"]
    assert [c.lr for c in configs[:3]] == [DEMO_LR[m] for m in MODES]
    assert {c.effective_head_lr for c in configs} == {DEMO_HEAD_LR}  # the head's lr is the same in every mode
    assert all(c.model == "minilm" and c.task == "fine_foods" and c.cache_prefix for c in configs)
    assert preset("demo", seed=3)[0].seed == 3


def test_equal_budget_doubles_the_rank_of_the_one_factor_modes():
    ab, b, a = preset("equal_budget", rank=4)
    assert (ab.rank, b.rank, a.rank) == (4, 8, 8)
    assert ab.alpha / ab.rank == b.alpha / b.rank  # same scaling


def test_unknown_preset():
    with pytest.raises(ConfigError, match="^preset: unknown"):
        preset("fastest")


def test_demo_config_is_what_the_docs_say():
    assert DEMO.top_layers and DEMO.cache_prefix and DEMO.device == "cpu"


def test_init_seed_is_its_own_knob_and_keeps_older_run_ids():
    # fields added later (init_seed, save_dtype) leave the run ids of older configs unchanged
    assert TrainConfig().key() == "cd5c1968"
    assert TrainConfig(mode="b_only", a_init="gaussian", rank=16).key() == "5144d8e7"
    shared = TrainConfig(seed=3, init_seed=0)
    assert shared.effective_init_seed == 0 and "_s3_i0_" in shared.run_id()
    assert shared.key() != TrainConfig(seed=3).key() != TrainConfig(seed=3, init_seed=1).key()
    same = TrainConfig(seed=2, init_seed=2)  # the ordinary seed-2 run: one run id for both
    assert same.init_seed is None and same.run_id() == TrainConfig(seed=2).run_id()
    assert TrainConfig(save_dtype="fp16").key() != TrainConfig().key()
    assert TrainConfig(generate=0).key() == TrainConfig().key()  # generations do not change the run
    assert TrainConfig.from_dict(shared.to_dict()) == shared


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"init_seed": -1}, "init_seed"),
        ({"save_dtype": "bf16"}, "save_dtype"),
        ({"generate": -1}, "generate"),
    ],
)
def test_new_fields_are_checked(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)
