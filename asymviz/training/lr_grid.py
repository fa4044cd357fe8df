"""Learning rates chosen per group on the validation split: the grid, its extension, the choice, lr_selection.csv.

    group = LrGroup(configs, lrs=[3e-4, 1e-3, 3e-3], ratios=[1, 4, 16])   # one group's configs (group_key)
    group.grid()                      # the first config (first seed) at every grid point (lr, and ab's ratio)
    choice = group.choose(store)      # LrChoice: chosen lr (and LoRA+ ratio), metric, one row per grid run
    if group.extend(choice): ...      # the best lr sat at an end of the grid: one more point was added
    group.mains(choice)               # every config of the group at the chosen point

A group is every config that differs only in seed, init_seed or lr (and lr_ratio, head_lr): per task, mode,
a_init, rank, model and budget -- every rank that is reported is tuned. Its grid runs are the group's first
config at each point; they evaluate on validation and test like any run (the choice reads validation only).
The chosen point maximises validation accuracy (ties: lower validation loss, then the smaller lr, then the
smaller ratio) for classification, and minimises validation loss for a causal LM. A grid run that failed counts
as worst. The grid run at the chosen point is the same config as the group's first main run, so it is not
trained twice: it becomes a main run.

Mode ab can search LoRA+'s ratio λ = lr_B / lr_A (`ratios`) together with the lr: the grid is lrs × ratios, so
A&B is compared at its best ratio, not at λ = 1. The other modes train one factor and have no ratio.

Extension: a best lr at either end of the grid is not an optimum. Then one point is added past that end, by
the grid's own geometric step there (lr · lrs[-1] / lrs[-2] above, lr · lrs[0] / lrs[1] below; at the chosen
ratio), and the choice is made again, until the best lr is interior or `max_extensions` points were added
(MAX_EXTENSIONS = 3 by default; `at_edge` in the choice then says the optimum may lie further out). A grid of
one lr is not extended.

In the store: every grid run's run.json gets `role: "lr_grid"` and `lr_selection` {grid, ratios, metric, value,
chosen, chosen_lr, chosen_lr_ratio, head_lr, extensions, at_edge}; every main run (the chosen grid run included)
gets `role: "main"` and `lr_selection` {grid, ratios, metric, chosen_lr, chosen_lr_ratio, head_lr, extensions,
at_edge, values (repr(lr) -> validation value; "lr@ratio" keys when several ratios were tried), grid_runs,
grid_run}. `lr_selection.csv` (asymviz.runs.LR_FILE) has one row per grid run: LR_COLUMNS (files written before
lr_ratio, head_lr and extension existed read with those columns empty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.runs import LR_FILE
from asymviz.training.config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.runs import RunStore

__all__ = ["LR_FILE", "LR_COLUMNS", "MAX_EXTENSIONS", "group_key", "LrChoice", "LrGroup", "check_grid",
           "grid_annotation", "main_annotation", "write_lr_selection"]  # fmt: skip

LR_COLUMNS = ("task", "model", "mode", "a_init", "rank", "seed", "lr", "lr_ratio", "head_lr", "extension",
              "metric", "value", "chosen", "status", "run_id")  # fmt: skip
MAX_EXTENSIONS = 3


def group_key(config: TrainConfig) -> str:
    """The key shared by the configs that share one learning-rate choice (all but seed, init_seed and the lrs)."""
    return config.replace(seed=0, init_seed=None, lr=1.0, lr_ratio=1.0, head_lr=None).key()


def check_grid(name: str, values: Sequence[float] | None) -> tuple[float, ...] | None:
    """`values` as a tuple of distinct positive floats in the given order; ConfigError naming `name` otherwise."""
    if values is None:
        return None
    if not values:
        raise ConfigError(f"{name}: give at least one value")
    out = []
    for v in values:
        if not float(v) > 0:
            raise ConfigError(f"{name}: every value must be > 0, got {v}")
        if float(v) not in out:
            out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class LrChoice:
    lr: float | None  # None: no grid run completed
    metric: str  # "validation_accuracy" | "validation_loss"
    rows: list[dict] = field(default_factory=list)  # one per grid run: LR_COLUMNS
    lr_ratio: float = 1.0
    head_lr: float | None = None  # the head's lr the group trained with (None: its lr, mode head_only)
    extensions: int = 0  # points added past an end of the grid
    at_edge: bool = False  # the chosen lr is still an end of the (extended) grid


class LrGroup:
    """The grid and the main runs of one group whose learning rate is chosen on validation."""

    def __init__(self, configs: Sequence[TrainConfig], lrs: Sequence[float], ratios: Sequence[float] | None = None,
                 max_extensions: int = MAX_EXTENSIONS, head_lr: float | None = None):  # fmt: skip
        self.configs = list(configs)
        self.first = self.configs[0]
        lrs = check_grid("lrs", lrs)
        ratios = (
            check_grid("lr_ratios", ratios) if self.first.mode == "ab" and ratios else (self.first.lr_ratio,)
        )
        if max_extensions < 0:
            raise ConfigError(f"lr_extensions: must be >= 0, got {max_extensions}")
        self.ratios = ratios
        self.max_extensions = max_extensions
        self.head_lr = head_lr
        self.points: list[tuple[float, float, int]] = [
            (lr, q, 0) for lr in lrs for q in ratios
        ]  # (lr, λ, ext)
        self.extensions = 0

    @property
    def lrs(self) -> list[float]:
        return sorted({lr for lr, _, _ in self.points})

    def _config(self, cfg: TrainConfig, lr: float, ratio: float) -> TrainConfig:
        return cfg.replace(lr=lr, lr_ratio=ratio, head_lr=self.head_lr)

    def grid(self) -> list[TrainConfig]:
        return [self._config(self.first, lr, q) for lr, q, _ in self.points]

    def mains(self, choice: LrChoice) -> list[TrainConfig]:
        return [self._config(cfg, choice.lr, choice.lr_ratio) for cfg in self.configs]

    def choose(self, store: RunStore) -> LrChoice:
        """Pick the group's point from its grid runs in `store` (they must have finished)."""
        rows = []
        for (lr, q, ext), cfg in zip(self.points, self.grid()):
            run_id = cfg.run_id()
            record = store.get(run_id) if run_id in store else None
            m = record.final_metrics if record is not None else {}
            rows.append({
                "task": cfg.task, "model": cfg.model, "mode": cfg.mode,
                "a_init": cfg.a_init if cfg.mode == "b_only" else None, "rank": cfg.rank, "seed": cfg.seed,
                "lr": lr, "lr_ratio": q, "head_lr": cfg.effective_head_lr, "extension": ext,
                "status": record.status if record is not None else "missing", "run_id": run_id,
                "_acc": m.get("validation_accuracy"), "_loss": m.get("validation_loss"),
            })  # fmt: skip
        classification = any(r["_acc"] is not None for r in rows)
        metric = "validation_accuracy" if classification else "validation_loss"

        def score(r):  # smaller is better; failed or missing runs last
            ok = r["status"] == "completed" and _finite(r["_loss"] if not classification else r["_acc"])
            if not ok:
                return (1, 0.0, 0.0, r["lr"], r["lr_ratio"])
            if classification:
                return (
                    0,
                    -r["_acc"],
                    r["_loss"] if _finite(r["_loss"]) else math.inf,
                    r["lr"],
                    r["lr_ratio"],
                )
            return (0, r["_loss"], 0.0, r["lr"], r["lr_ratio"])

        best = min(rows, key=score)
        found = score(best)[0] == 0
        lr, ratio = (best["lr"], best["lr_ratio"]) if found else (None, self.first.lr_ratio)
        for r in rows:
            r["metric"] = metric
            r["value"] = r["_acc"] if classification else r["_loss"]
            r["chosen"] = found and r["lr"] == lr and r["lr_ratio"] == ratio
            del r["_acc"], r["_loss"]
        at_edge = found and len(self.lrs) > 1 and lr in (self.lrs[0], self.lrs[-1])
        return LrChoice(lr, metric, rows, ratio, self.head_lr, self.extensions, at_edge)

    def extend(self, choice: LrChoice) -> bool:
        """Add one point past the end of the grid where the chosen lr sits (at the chosen ratio); False when the
        choice is interior, the grid has one lr, nothing completed, or `max_extensions` points were added."""
        lrs = sorted({lr for lr, q, _ in self.points if q == choice.lr_ratio})
        if not choice.at_edge or len(lrs) < 2 or self.extensions >= self.max_extensions:
            return False
        if choice.lr == lrs[-1]:
            new = choice.lr * lrs[-1] / lrs[-2]
        elif choice.lr == lrs[0]:
            new = choice.lr * lrs[0] / lrs[1]
        else:  # an end of another ratio's lrs, interior at this ratio
            return False
        self.extensions += 1
        self.points.append((float(f"{new:.6g}"), choice.lr_ratio, self.extensions))
        return True


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def _selection(group: LrGroup, choice: LrChoice) -> dict:
    return {"grid": group.lrs, "ratios": list(group.ratios), "metric": choice.metric, "chosen_lr": choice.lr,
            "chosen_lr_ratio": choice.lr_ratio, "head_lr": choice.head_lr, "extensions": choice.extensions,
            "at_edge": choice.at_edge}  # fmt: skip


def grid_annotation(group: LrGroup, choice: LrChoice, row: dict, counted: bool = True) -> dict:
    """run.json fields of one grid run once its group's point is chosen (`counted` False: the chosen grid run
    stays a grid run, e.g. the head-lr control of a sweep that did not ask for head_only runs)."""
    main = row["chosen"] and counted
    return {"role": "main" if main else "lr_grid",
            "lr_selection": {**_selection(group, choice), "value": row["value"], "chosen": row["chosen"]}}  # fmt: skip


def main_annotation(group: LrGroup, choice: LrChoice, run_id: str | None = None) -> dict:
    """run.json fields of a main run (trained at the chosen point); `grid_run`: it is the chosen grid run."""
    grid_runs = [r["run_id"] for r in choice.rows]
    several = len(group.ratios) > 1
    values = {
        (f"{r['lr']!r}@{r['lr_ratio']!r}" if several else repr(r["lr"])): r["value"] for r in choice.rows
    }
    return {"role": "main", "lr_selection": {**_selection(group, choice), "values": values,
                                             "grid_runs": grid_runs, "grid_run": run_id in grid_runs}}  # fmt: skip


def write_lr_selection(store_root: Path, rows: list[dict]) -> pd.DataFrame:
    """Merge `rows` into the store's lr_selection.csv (rows of the same run_id replaced); returns the table."""
    import pandas as pd

    from asymviz.runs import write_text_atomic

    path = Path(store_root) / LR_FILE
    new = pd.DataFrame(rows, columns=list(LR_COLUMNS))
    if path.exists():
        old = pd.read_csv(path).reindex(columns=list(LR_COLUMNS))  # older files: the new columns empty
        old = old[~old["run_id"].isin(new["run_id"])]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    new = new.sort_values(
        ["task", "mode", "a_init", "rank", "lr_ratio", "lr"], na_position="first", kind="stable"
    )
    write_text_atomic(path, new.to_csv(index=False))
    return new.reset_index(drop=True)
