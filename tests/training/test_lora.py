"""asymviz.training.lora: the three modes' init and freezing on a tiny BERT."""

from __future__ import annotations

import math

import pytest
import torch

from asymviz.base.models import default_head, load_model, resolve_model
from asymviz.training import lora


def test_orthonormal_rows_are_orthonormal():
    g = torch.Generator().manual_seed(0)
    A = lora.orthonormal_rows(8, 40, g)
    assert A.shape == (8, 40)
    assert torch.allclose(A @ A.T, torch.eye(8), atol=1e-6)


def test_a_inits_have_the_documented_scale():
    g = torch.Generator().manual_seed(0)
    d = 4096
    assert lora.draw_A(4, d, "gaussian", g).pow(2).sum(1).mean() == pytest.approx(1.0, rel=0.1)
    assert lora.draw_A(4, d, "kaiming", g).abs().max() <= 1 / math.sqrt(d)
    assert lora.draw_A(4, d, "kaiming", g).pow(2).sum(1).mean() == pytest.approx(1 / 3, rel=0.1)


def _wrapped(train_assets, tiny_config, **changes):
    cfg = tiny_config(**changes)
    base, _ = load_model(resolve_model(cfg.model), "classification", num_labels=2)
    head = default_head(base, "classification")
    return lora.wrap(base, cfg, "classification", head), cfg


def test_ab_is_peft_default(train_assets, tiny_config):
    model, _ = _wrapped(train_assets, tiny_config, mode="ab")
    for _, m in lora.lora_modules(model):
        A, B = m.lora_A["default"].weight, m.lora_B["default"].weight
        assert A.requires_grad and B.requires_grad
        assert torch.count_nonzero(B) == 0 and torch.count_nonzero(A) > 0


def test_b_only_freezes_an_orthonormal_A(train_assets, tiny_config):
    model, cfg = _wrapped(train_assets, tiny_config, mode="b_only", rank=4)
    modules = lora.lora_modules(model)
    assert len(modules) == 4  # query, value in 2 layers
    for _, m in modules:
        A, B = m.lora_A["default"].weight, m.lora_B["default"].weight
        assert not A.requires_grad and B.requires_grad
        assert torch.allclose(A @ A.T, torch.eye(4), atol=1e-5)
        assert torch.count_nonzero(B) == 0
    counts = lora.trainable_counts(model)
    assert counts["lora"] == 4 * 32 * 4  # B: d_out x r per module
    assert counts["head"] > 0 and counts["total"] == counts["lora"] + counts["head"]


def test_a_only_freezes_an_orthonormal_B(train_assets, tiny_config):
    model, _ = _wrapped(train_assets, tiny_config, mode="a_only", rank=4)
    for _, m in lora.lora_modules(model):
        A, B = m.lora_A["default"].weight, m.lora_B["default"].weight
        assert A.requires_grad and not B.requires_grad
        assert torch.allclose(B.T @ B, torch.eye(4), atol=1e-5)
        assert torch.count_nonzero(A) == 0


def test_the_head_is_trained_in_every_mode(train_assets, tiny_config):
    for mode in ("ab", "b_only", "a_only"):
        model, _ = _wrapped(train_assets, tiny_config, mode=mode)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n}
        assert any("classifier" in n for n in trainable) and any("pooler" in n for n in trainable)


def test_same_seed_same_init_other_seed_other_init(train_assets, tiny_config):
    a = lora.lora_state(_wrapped(train_assets, tiny_config, mode="b_only", seed=0)[0])
    b = lora.lora_state(_wrapped(train_assets, tiny_config, mode="b_only", seed=0)[0])
    c = lora.lora_state(_wrapped(train_assets, tiny_config, mode="b_only", seed=1)[0])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k)


def test_top_layers_adapts_only_the_top(train_assets, tiny_config):
    model, _ = _wrapped(train_assets, tiny_config, top_layers=1)
    names = [n for n, _ in lora.lora_modules(model)]
    assert names and all(".layer.1." in n for n in names)


def test_frozen_check_sees_a_changed_bit(train_assets, tiny_config):
    model, _ = _wrapped(train_assets, tiny_config, mode="b_only")
    init = lora.lora_state(model)
    assert lora.frozen_check(model, init, "b_only") == {"factor": "A", "modules": 4, "bit_identical": True}
    with torch.no_grad():
        lora.lora_modules(model)[0][1].lora_A["default"].weight[0, 0] += 1e-7
    assert lora.frozen_check(model, init, "b_only")["bit_identical"] is False
    assert lora.frozen_check(model, init, "ab") is None


def test_missing_targets_is_a_config_error(train_assets, tiny_config):
    from asymviz.errors import ConfigError

    with pytest.raises(ConfigError, match="^targets:"):
        _wrapped(train_assets, tiny_config, targets=("nonexistent_proj",))


@pytest.mark.parametrize("mode", ["ab", "b_only", "a_only"])
def test_init_seed_sets_every_init_and_only_the_init(train_assets, tiny_config, mode):
    seed0, _ = _wrapped(train_assets, tiny_config, mode=mode, seed=0)
    shared, _ = _wrapped(train_assets, tiny_config, mode=mode, seed=3, init_seed=0)
    own, _ = _wrapped(train_assets, tiny_config, mode=mode, seed=3)
    a, b, c = lora.lora_state(seed0), lora.lora_state(shared), lora.lora_state(own)
    assert a.keys() == b.keys() and any("classifier" in k for k in a)  # the head is in the state too
    assert all(torch.equal(a[k], b[k]) for k in a)  # LoRA factors and the new head: one init
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_" in k or "classifier" in k)
    # dropout follows the run's seed: the global generator is re-seeded with it after the init
    torch.manual_seed(3)
    expected = torch.rand(4)
    _wrapped(train_assets, tiny_config, mode=mode, seed=3, init_seed=0)
    assert torch.equal(torch.rand(4), expected)
