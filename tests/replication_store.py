"""Run stores for the Overview's replication sections (issue 13), written by hand: run.json files in the
documented schema, with tiny adapters where an analysis reads weights, and real tiny-BERT runs for the
mechanism test. Used by tests/app/test_page_overview_replication.py and tests/app/test_browser_overview.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from app_helpers import write_fake_run

TASKS = ("fine_foods", "word_pos")
SEEDS = range(3)
# mode -> (mean accuracy, per-seed noise): B only ≈ A&B, A only lower, the control lowest
LEVELS = {"ab": (0.80, 0.003), "b_only": (0.80, 0.003), "a_only": (0.74, 0.003), "head_only": (0.60, 0.003)}


FULL_HEAD = ["pooler", "classifier"]


def similarity_adapter(task: str, init_seed: int, seed: int) -> dict:
    """Two 32 × 32 modules, r = 4: A is its init draw plus a little training (A barely moves), B is the
    task's direction plus seed noise."""
    from conftest import random_factors

    t = TASKS.index(task)
    out = {}
    for m, kind in enumerate(("query", "value")):
        a0, _ = random_factors(4, 32, 32, seed=100 * init_seed + m)
        noise_a, b_task = random_factors(4, 32, 32, seed=1000 + 10 * t + m)
        _, noise_b = random_factors(4, 32, 32, seed=5000 + 100 * seed + 10 * init_seed + m)
        out[f"bert.encoder.layer.0.attention.self.{kind}"] = (a0 + 0.05 * noise_a, b_task + 0.3 * noise_b)
    return out


def write_table1(store: Path, rng, keep_one: bool = False) -> None:
    """minilm_tasks as the v2 sweep writes it: LoRA modes at r = 8 and 16, the control once (at r = 8).
    keep_one: the first B-only run keeps a 384 × 384 adapter (MiniLM's query and value), as exp 1 ships."""
    from conftest import random_factors

    for task in TASKS:
        for seed in SEEDS:
            for mode, (mu, sd) in LEVELS.items():
                for rank in (8,) if mode == "head_only" else (8, 16):
                    keep = keep_one and task == TASKS[0] and seed == 0 and mode == "b_only" and rank == 8
                    adapter = {
                        f"layer.0.attention.self.{k}": random_factors(rank, 384, 384)
                        for k in ("query", "value")
                    }
                    write_fake_run(store, "minilm_tasks", task, mode, seed, mu + rng.normal(0, sd), rank=rank,
                                   head=FULL_HEAD, adapter=adapter if keep else None)  # fmt: skip


def write_replication_store(store: Path, mechanism_runs: bool = True) -> Path:
    """Every experiment's group folder: Table 1, the d/r sweep, the classifier-only head arm, the mechanism
    test and the 2×2 similarity design: hand-written run.json files, with tiny adapters where an analysis
    reads weights (one run of Table 1, where the slimmed d/r sweep reads d_in; every run of the similarity
    design). Without `mechanism_runs` the minilm_mechanism group is left to `train_mechanism_runs`."""
    rng = np.random.default_rng(1)
    write_table1(store, rng, keep_one=True)
    for task in TASKS:
        for seed in SEEDS:
            for mode, (mu, sd) in LEVELS.items():
                for rank in (1,) if mode == "head_only" else (1, 8, 64):
                    write_fake_run(store, "minilm_rank", task, mode, seed, mu + rng.normal(0, sd), rank=rank)
                write_fake_run(
                    store, "minilm_head", task, mode, seed, mu + rng.normal(0, sd), head=["classifier"]
                )
                if mechanism_runs:
                    write_fake_run(store, "minilm_mechanism", task, mode, seed, mu + rng.normal(0, sd),
                                   top_layers=1, targets=["value"], head=["classifier"])  # fmt: skip
            for init in (0, 1):
                write_fake_run(store, "similarity", task, "ab", seed, 0.8 + rng.normal(0, 0.01), init_seed=init,
                               rank=4, adapter=similarity_adapter(task, init, seed))  # fmt: skip
    return store


def train_mechanism_runs(store: Path, bert: Path, task: Path) -> Path:
    """A store whose minilm_mechanism group holds real tiny runs (a 2-layer BERT, LoRA on the top value
    projection only, classifier head), as in tests/test_mechanism.py but 30 steps: A&B then gains over head
    only, so the observed share is defined (its interval is not, with 3 seeds: the figure draws it open)."""
    from asymviz.training.config import TrainConfig
    from asymviz.training.loop import train

    for mode in ("head_only", "ab", "b_only", "a_only"):
        for seed in (0, 1, 2):
            cfg = TrainConfig(model=str(bert), task=str(task), mode=mode, rank=2,
                              alpha=4.0, targets=("value",), top_layers=1, head=("classifier",), steps=30,
                              batch_size=4, lr=5e-2, seed=seed, device="cpu", threads=1)  # fmt: skip
            train(cfg, store / "minilm_mechanism" / cfg.run_id())
    return store
