"""asymviz.training.lr_grid: the choice, the extension past an end of the grid, LoRA+ ratios (synthetic runs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from asymviz.training.config import TrainConfig
from asymviz.training.lr_grid import LrGroup, group_key


@dataclass
class _Record:
    status: str
    final_metrics: dict


class _Store:
    """A run store whose every run completed with a validation accuracy of objective(config)."""

    def __init__(self, objective):
        self.objective = objective
        self.configs = {}

    def add(self, configs):
        self.configs.update({c.run_id(): c for c in configs})

    def __contains__(self, run_id):
        return run_id in self.configs

    def get(self, run_id):
        cfg = self.configs[run_id]
        return _Record("completed", {"validation_accuracy": self.objective(cfg), "validation_loss": 1.0})


def _settle(group, store):
    """Choose, extend, choose ... as the sweep's Plan does; returns the last choice."""
    while True:
        store.add(group.grid())
        choice = group.choose(store)
        if not group.extend(choice):
            return choice


def _peak(at):  # accuracy peaks at lr = `at` (log scale)
    return lambda cfg: 1.0 - (math.log10(cfg.lr) - math.log10(at)) ** 2 / 100


def test_the_grid_extends_until_the_optimum_is_interior():
    group = LrGroup([TrainConfig(mode="b_only")], lrs=[1e-4, 1e-3], max_extensions=3)
    choice = _settle(group, _Store(_peak(1e-2)))
    assert group.lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])  # the grid's own step, twice
    assert choice.lr == pytest.approx(1e-2) and not choice.at_edge and choice.extensions == 2
    assert [r["extension"] for r in choice.rows] == [0, 0, 1, 2]  # every point recorded


def test_the_grid_stops_extending_at_the_limit_and_says_so():
    group = LrGroup([TrainConfig(mode="b_only")], lrs=[1e-3, 2e-3], max_extensions=3)
    choice = _settle(group, _Store(_peak(1.0)))
    assert group.lrs == pytest.approx([1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2])
    assert choice.lr == pytest.approx(1.6e-2) and choice.at_edge and choice.extensions == 3
    low = LrGroup([TrainConfig(mode="b_only")], lrs=[1e-3, 1e-2], max_extensions=1)
    assert _settle(low, _Store(_peak(1e-9))).lr == pytest.approx(1e-4)  # downwards too


def test_an_interior_optimum_and_a_single_lr_do_not_extend():
    group = LrGroup([TrainConfig()], lrs=[1e-4, 1e-3, 1e-2])
    assert _settle(group, _Store(_peak(1e-3))).lr == 1e-3 and group.extensions == 0
    one = LrGroup([TrainConfig()], lrs=[1e-3])
    assert _settle(one, _Store(_peak(1.0))).lr == 1e-3 and one.extensions == 0


def test_ab_searches_loraplus_ratios_with_the_lr():
    def objective(cfg):  # best at lr_B = lr * ratio = 1.6e-2 with lr 1e-3
        return _peak(1e-3)(cfg) - abs(math.log2(cfg.lr_ratio) - 4) / 10

    group = LrGroup([TrainConfig(mode="ab")], lrs=[5e-4, 1e-3, 2e-3], ratios=[1, 4, 16])
    choice = _settle(group, _Store(objective))
    assert (choice.lr, choice.lr_ratio) == (1e-3, 16.0) and len(choice.rows) == 9
    mains = group.mains(choice)
    assert mains[0].lr == 1e-3 and mains[0].lr_ratio == 16.0
    only = LrGroup([TrainConfig(mode="b_only")], lrs=[1e-3], ratios=[1, 4, 16])
    assert only.ratios == (1.0,)  # one trained factor: no ratio to search


def test_every_rank_is_its_own_group_and_the_lrs_are_not():
    base = TrainConfig(mode="b_only")
    assert group_key(base.replace(rank=16)) != group_key(base)
    assert group_key(base.replace(seed=3, lr=5.0, head_lr=1.0)) == group_key(base)
