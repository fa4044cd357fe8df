"""Sweep planning: the grid of configs, what is still to run, and the order in which runs are released.

    configs = expand(TrainConfig(), tasks=["fine_foods"], modes=["ab", "b_only", "head_only"], seeds=[0, 1, 2])
    plan = Plan(configs, store, lrs=[5e-4, 1e-3, 2e-3], ratios=[1, 16])
    jobs = plan.ready(finished)        # called again and again: the jobs that may start now
    plan.finish()                      # annotate grid and main runs, supersede older choices

Without `lrs` every pending config is released at once. With `lrs` (asymviz.training.lr_grid):
1. The head's learning rate is chosen once per task: on the grid of the head_only control (the head trained
   alone; its runs are ordinary lr_grid runs, and its main runs exist only when head_only is among the modes).
   With `head_lr` set in the configs the head's lr is that value instead, and head_only trains at it.
2. Every other group (task, mode, a_init, rank, ...) then trains its grid with that head lr -- the head's lr is
   the same in every mode -- extends it while the best lr sits at an end, and releases its main runs.
Groups never wait for each other beyond step 1: each group's main runs are released as soon as its grid is done.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from asymviz.runs import RunStore, annotate_run
from asymviz.training.config import TrainConfig
from asymviz.training.lr_grid import (
    MAX_EXTENSIONS,
    LrChoice,
    LrGroup,
    grid_annotation,
    group_key,
    main_annotation,
    write_lr_selection,
)  # fmt: skip


def expand(
    base: TrainConfig,
    tasks: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    ranks: Sequence[int] | None = None,
    a_inits: Sequence[str] | None = None,
    init_seeds: Sequence[int | None] | None = None,
) -> list[TrainConfig]:
    """The grid tasks × ranks × seeds × init_seeds × modes (× a_inits for b_only) over `base`, modes innermost.

    None keeps base's value. `a_inits` apply to mode b_only only (the other modes have no random frozen A).
    head_only has no adapter: it is expanded at the first rank only (its rank and a_init change nothing;
    asymviz.results pairs it with every rank). `lr_ratio` applies to mode ab only (the others get 1).
    `init_seeds=[S]` makes every run share the init of seed S ("5 seeds, one init"; the run with seed S is then
    the ordinary seed-S run). Duplicates are dropped, order kept.
    """
    out, seen = [], set()
    ranks = ranks or [base.rank]
    for task, rank, seed, init_seed, mode in itertools.product(
        tasks or [base.task],
        ranks,
        seeds if seeds is not None else [base.seed],
        init_seeds if init_seeds is not None else [base.init_seed],
        modes or [base.mode],
    ):
        if mode == "head_only":
            rank = ranks[0]
        for a_init in (a_inits or [base.a_init]) if mode == "b_only" else [base.a_init]:
            cfg = base.replace(task=task, rank=rank, seed=seed, init_seed=init_seed, mode=mode, a_init=a_init,
                               lr_ratio=base.lr_ratio if mode == "ab" else 1.0)  # fmt: skip
            if cfg.run_id() not in seen:
                seen.add(cfg.run_id())
                out.append(cfg)
    return out


def pending(configs: Sequence[TrainConfig], store: RunStore) -> list[TrainConfig]:
    """The configs without a completed (or live running) run in the store, without duplicates."""
    todo, seen = [], set()
    for cfg in configs:
        run_id = cfg.run_id()
        if run_id in seen:
            continue
        seen.add(run_id)
        if run_id in store and store.get(run_id).status in ("completed", "running"):
            continue
        todo.append(cfg)
    return todo


def estimated_steps(cfg: TrainConfig, sizes: dict) -> int:
    """Steps a config will take (for queueing the longest first); 1 when the task cannot be read."""
    if cfg.steps:
        return cfg.steps
    key = (cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train)
    if key not in sizes:
        try:
            from asymviz.base.tasks import load_task

            sizes[key] = len(load_task(cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train).train)
        except Exception:
            sizes[key] = 1
    return max(1, math.ceil((cfg.epochs or 1.0) * sizes[key] / cfg.batch_size))


@dataclass
class Job:
    config: TrainConfig
    annotations: dict = field(default_factory=dict)  # extra run.json fields (role, lr_selection, sweep)


def _has_head(cfg: TrainConfig) -> bool:
    """False when the runs of `cfg`'s task train no head: `head=()` given, or a causal-LM task (its default head
    is none). A task that cannot be read counts as having one (its runs fail and say why)."""
    if cfg.head is not None:
        return bool(cfg.head)
    from asymviz.base.tasks import TASKS, load_task

    if cfg.task in TASKS:  # a bundled task: its type is declared, no need to read and split its data
        return TASKS[cfg.task].task_type != "causal_lm"
    try:
        return load_task(cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train).task_type != "causal_lm"
    except Exception:  # noqa: BLE001 -- the runs report the task's problem
        return True


def _task_key(cfg: TrainConfig) -> str:
    """What shares one head lr: everything but the mode, its adapter's settings, seeds and the lrs."""
    return group_key(cfg.replace(mode="head_only", rank=1, alpha=1.0, a_init="orthogonal", targets=None,
                                 lora_dropout=0.0))  # fmt: skip


@dataclass
class _Group:
    grid: LrGroup
    task: str  # _task_key
    counted: bool = True  # False: the head-lr control of a sweep without head_only runs (grid only)
    started: bool = False
    released: bool = False
    choice: LrChoice | None = None


class Plan:
    """What to run, released as it becomes ready (see the module docstring)."""

    def __init__(self, configs: Sequence[TrainConfig], store: RunStore, lrs: Sequence[float] | None, info: dict,
                 ratios: Sequence[float] | None = None, max_extensions: int = MAX_EXTENSIONS):  # fmt: skip
        self.store, self.info = store, info
        self.configs = list(configs)
        self.lrs = lrs
        self.reused: list[str] = []  # completed before this sweep
        self.started = False
        self.groups: dict[str, _Group] = {}
        self.head_lr: dict[
            str, float | None
        ] = {}  # task key -> the head lr every mode of the task trains with
        if not lrs:
            return
        by_group: dict[str, list[TrainConfig]] = {}
        for cfg in self.configs:
            by_group.setdefault(group_key(cfg), []).append(cfg)
        for cfg in self.configs:  # a fixed head lr (given in the configs), else a head_only grid per task
            task = _task_key(cfg)
            if task in self.head_lr or cfg.head_lr is None:
                continue
            self.head_lr[task] = cfg.head_lr
        for key, members in by_group.items():
            task = _task_key(members[0])
            if members[0].mode == "head_only" and task in self.head_lr:  # fixed: head_only trains at it
                fixed = self.head_lr[task]
                members = [c.replace(lr=fixed, head_lr=None) for c in members]
                self.groups[key] = _Group(LrGroup(members, [fixed], max_extensions=0), task)
                continue
            self.groups[key] = _Group(LrGroup(members, lrs, ratios, max_extensions), task)
        for task in {g.task for g in self.groups.values()} - set(self.head_lr):
            first = next(g.grid.first for g in self.groups.values() if g.task == task)
            if not _has_head(first):  # a causal LM trains no head: no head lr to choose, no control
                self.head_lr[task] = None
                continue
            if not any(g.task == task and g.grid.first.mode == "head_only" for g in self.groups.values()):
                control = first.replace(mode="head_only", lr_ratio=1.0, head_lr=None, a_init="orthogonal")
                self.groups[group_key(control)] = _Group(LrGroup([control], lrs, None, max_extensions), task,
                                                         counted=False)  # fmt: skip

    # ------------------------------------------------------------------------------------------------------
    def initial_grid(self) -> list[TrainConfig]:
        """Every group's grid runs before any extension (the head_only control's included), for an outline of
        the sweep; the LoRA groups' configs carry the head lr only where it is fixed (it is chosen later)."""
        return [c for g in self.groups.values() for c in g.grid.grid()] if self.lrs else []

    def all_configs(self) -> list[TrainConfig]:
        if not self.lrs:
            return self.configs
        out = []
        for g in self.groups.values():
            out += g.grid.grid()
            if g.choice is not None and g.choice.lr is not None and g.counted:
                out += g.grid.mains(g.choice)
        return list({c.run_id(): c for c in out}.values())

    def _jobs(self, configs, annotations) -> list[Job]:
        todo = pending(configs, self.store)
        ids = {c.run_id() for c in todo}
        self.reused += [
            c.run_id() for c in configs if c.run_id() not in ids and c.run_id() not in self.reused
        ]
        return [Job(c, {**annotations, "sweep": self.info}) for c in todo]

    def _head_decided(self, g: _Group) -> bool:
        return g.grid.first.mode == "head_only" or g.task in self.head_lr

    def ready(self, finished: set[str]) -> list[Job]:
        """The jobs that may start now, given the run ids `finished` in this sweep."""
        if not self.lrs:
            if self.started:
                return []
            self.started = True
            return self._jobs(self.configs, {})
        self.started = True
        jobs: list[Job] = []
        progress = True
        while progress:  # decisions cascade when runs were reused from an earlier sweep
            progress = False
            done = finished | set(self.reused)
            for g in self.groups.values():
                if g.released or not self._head_decided(g):
                    continue
                if not g.started:
                    g.started, progress = True, True
                    if g.grid.first.mode != "head_only":
                        g.grid.head_lr = self.head_lr[g.task]
                    jobs += self._jobs(g.grid.grid(), {"role": "lr_grid"})
                    continue
                if not all(c.run_id() in done for c in g.grid.grid()):
                    continue
                choice = g.grid.choose(self.store)
                if g.grid.extend(choice):
                    progress = True
                    jobs += self._jobs(g.grid.grid(), {"role": "lr_grid"})
                    continue
                g.choice, g.released, progress = choice, True, True
                self._annotate_grid(g)
                if g.grid.first.mode == "head_only" and g.task not in self.head_lr:
                    self.head_lr[g.task] = choice.lr  # None when no head run completed: the task stops here
                    if choice.lr is None:
                        for other in self.groups.values():
                            other.released = other.released or other.task == g.task
                if g.counted and choice.lr is not None:
                    jobs += self._jobs(g.grid.mains(choice), main_annotation(g.grid, choice))
        return jobs

    def _annotate_grid(self, g: _Group) -> None:
        for row in g.choice.rows:
            if row["run_id"] in self.store:
                annotate_run(
                    self.store.path(row["run_id"]), **grid_annotation(g.grid, g.choice, row, g.counted)
                )
        write_lr_selection(self.store.root, g.choice.rows)

    def finish(self) -> None:
        """Annotate the grid and main runs (also those reused from earlier sweeps) once everything has run,
        and mark the main runs of older choices lr_superseded."""
        if not self.lrs:
            return
        self._supersede()
        for g in self.groups.values():
            if g.choice is None:
                continue
            self._annotate_grid(g)
            for cfg in g.grid.mains(g.choice) if g.choice.lr is not None and g.counted else []:
                if cfg.run_id() in self.store:
                    annotate_run(
                        self.store.path(cfg.run_id()), **main_annotation(g.grid, g.choice, cfg.run_id())
                    )

    def _supersede(self) -> None:
        """Main runs of a decided group trained at another point (an earlier, narrower grid, another head lr,
        or a sweep without a grid: no role) become lr_superseded."""
        current = {c.run_id() for c in self.all_configs()}
        for record in self.store.records():
            if record.data.get("role") not in ("main", None) or record.run_id in current:
                continue
            try:
                cfg = TrainConfig.from_dict(record.config)
            except Exception:  # a run of another asymviz version: left as it is
                continue
            g = self.groups.get(group_key(cfg))
            if g is None or g.choice is None or g.choice.lr is None or not g.counted:
                continue
            chosen = g.grid.mains(g.choice)[0]
            if (cfg.lr, cfg.lr_ratio, cfg.effective_head_lr) != (
                chosen.lr,
                chosen.lr_ratio,
                chosen.effective_head_lr,
            ):
                annotate_run(record.path, role="lr_superseded", superseded_by_lr=g.choice.lr)
