"""Learning rate chosen per mode on the validation split: the grid, the choice, lr_selection.csv.

    plan = LrPlan(configs, lrs=[3e-4, 1e-3, 3e-3])     # configs: a sweep's grid (tasks x ranks x seeds x modes)
    plan.grid_configs()          # per group, the first config (first seed at the first rank) at every lr
    choice = plan.choose(group, store)                  # LrChoice: chosen lr, metric, one row per grid run
    plan.main_configs(group, choice.lr)                 # every config of the group with the chosen lr

A group is every config that differs only in seed, init_seed, rank or lr (so: per task, mode, a_init, model
and budget). Its grid runs are the group's first config at each lr; they evaluate on validation and test like
any run (the choice reads validation only). The chosen lr maximises validation accuracy (ties: lower validation
loss, then the smaller lr) for classification, and minimises validation loss for a causal LM. A grid run that
failed counts as worst. The grid run at the chosen lr is the same config as the group's first main run, so it
is not trained twice: it becomes a main run.

In the store: every grid run's run.json gets `role: "lr_grid"` and `lr_selection` {grid, metric, value, chosen,
chosen_lr}; every main run (the chosen grid run included) gets `role: "main"` and `lr_selection` {grid, metric,
chosen_lr, values (repr(lr) -> validation value), grid_runs, grid_run (true for the chosen grid run)}.
`lr_selection.csv` in the store has one row per grid run: LR_COLUMNS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.training.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.runs import RunStore

LR_FILE = "lr_selection.csv"
LR_COLUMNS = ("task", "model", "mode", "a_init", "rank", "seed", "lr", "metric", "value", "chosen", "status",
              "run_id")  # fmt: skip


def group_key(config: TrainConfig) -> str:
    """The key shared by the configs that share one learning rate choice (all but seed, init_seed, rank, lr)."""
    return config.replace(seed=0, init_seed=None, rank=1, lr=1.0).key()


@dataclass(frozen=True)
class LrChoice:
    lr: float | None  # None: no grid run completed
    metric: str  # "validation_accuracy" | "validation_loss"
    rows: list[dict] = field(default_factory=list)  # one per grid run: LR_COLUMNS


class LrPlan:
    """The grid and the main runs of a sweep whose learning rate is chosen per group on validation."""

    def __init__(self, configs: Sequence[TrainConfig], lrs: Sequence[float]):
        if not lrs:
            raise ConfigError("lrs: give at least one learning rate")
        for lr in lrs:
            if not lr > 0:
                raise ConfigError(f"lrs: every learning rate must be > 0, got {lr}")
        self.lrs = tuple(float(x) for x in lrs)
        self.groups: dict[str, list[TrainConfig]] = {}
        for cfg in configs:
            self.groups.setdefault(group_key(cfg), []).append(cfg)

    def grid(self, group: str) -> list[TrainConfig]:
        first = self.groups[group][0]
        return [first.replace(lr=lr) for lr in self.lrs]

    def grid_configs(self) -> list[TrainConfig]:
        return [cfg for g in self.groups for cfg in self.grid(g)]

    def main_configs(self, group: str, lr: float) -> list[TrainConfig]:
        return [cfg.replace(lr=lr) for cfg in self.groups[group]]

    def choose(self, group: str, store: RunStore) -> LrChoice:
        """Pick the group's lr from its grid runs in `store` (they must have finished)."""
        rows = []
        for cfg in self.grid(group):
            run_id = cfg.run_id()
            record = store.get(run_id) if run_id in store else None
            m = record.final_metrics if record is not None else {}
            rows.append({
                "task": cfg.task, "model": cfg.model, "mode": cfg.mode,
                "a_init": cfg.a_init if cfg.mode == "b_only" else None, "rank": cfg.rank, "seed": cfg.seed,
                "lr": cfg.lr, "status": record.status if record is not None else "missing", "run_id": run_id,
                "_acc": m.get("validation_accuracy"), "_loss": m.get("validation_loss"),
            })  # fmt: skip
        classification = any(r["_acc"] is not None for r in rows)
        metric = "validation_accuracy" if classification else "validation_loss"

        def score(r):  # smaller is better; failed or missing runs last
            ok = r["status"] == "completed" and _finite(r["_loss"] if not classification else r["_acc"])
            if not ok:
                return (1, 0.0, 0.0, r["lr"])
            if classification:
                return (0, -r["_acc"], r["_loss"] if _finite(r["_loss"]) else math.inf, r["lr"])
            return (0, r["_loss"], 0.0, r["lr"])

        best = min(rows, key=score)
        lr = best["lr"] if score(best)[0] == 0 else None
        for r in rows:
            r["metric"] = metric
            r["value"] = r["_acc"] if classification else r["_loss"]
            r["chosen"] = lr is not None and r["lr"] == lr
            del r["_acc"], r["_loss"]
        return LrChoice(lr, metric, rows)


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def grid_annotation(choice: LrChoice, row: dict, lrs: Sequence[float]) -> dict:
    """run.json fields of one grid run once its group's lr is chosen."""
    return {
        "role": "main" if row["chosen"] else "lr_grid",
        "lr_selection": {
            "grid": list(lrs),
            "metric": choice.metric,
            "value": row["value"],
            "chosen": row["chosen"],
            "chosen_lr": choice.lr,
        },  # fmt: skip
    }


def main_annotation(choice: LrChoice, lrs: Sequence[float], run_id: str | None = None) -> dict:
    """run.json fields of a main run (trained with the chosen lr); `grid_run`: it is the chosen grid run."""
    grid_runs = [r["run_id"] for r in choice.rows]
    return {
        "role": "main",
        "lr_selection": {
            "grid": list(lrs),
            "metric": choice.metric,
            "chosen_lr": choice.lr,
            "values": {repr(r["lr"]): r["value"] for r in choice.rows},
            "grid_runs": grid_runs,
            "grid_run": run_id in grid_runs,
        },  # fmt: skip
    }


def write_lr_selection(store_root: Path, rows: list[dict]) -> pd.DataFrame:
    """Merge `rows` into the store's lr_selection.csv (rows of the same run_id replaced); returns the table."""
    import pandas as pd

    from asymviz.runs import write_text_atomic

    path = Path(store_root) / LR_FILE
    new = pd.DataFrame(rows, columns=list(LR_COLUMNS))
    if path.exists():
        old = pd.read_csv(path)
        old = old[~old["run_id"].isin(new["run_id"])]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    new = new.sort_values(["task", "mode", "a_init", "rank", "lr"], na_position="first", kind="stable")
    write_text_atomic(path, new.to_csv(index=False))
    return new.reset_index(drop=True)
