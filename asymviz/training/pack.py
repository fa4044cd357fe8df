"""Sweeps in packs: cut a sweep's configs into groups that `multi.train_many` can train together, and train them.

    for group in packs(configs, 12): train_many(group, store)
    records = train_jobs_packed(jobs, store, 12, progress, on_run, workspace=ws)   # sweep's in-process hook

Configs pack together when they agree on multi.PACK_FIELDS (model, data, shape, step count); a config train_many
cannot take (cache_prefix) is a pack of one, trained by `loop.train` as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from asymviz.errors import ConfigError
from asymviz.runs import RunRecord, RunStore
from asymviz.training import loop as _loop
from asymviz.training.config import TrainConfig
from asymviz.training.multi import PACK_FIELDS, train_many
from asymviz.training.workspace import Workspace


def pack_key(config: TrainConfig) -> tuple:
    """Configs with equal keys can be trained together by `train_many`."""
    return tuple(getattr(config, f) for f in PACK_FIELDS)


def packable(config: TrainConfig) -> bool:
    """False for what `train_many` cannot do: cache_prefix (the head_only control packs: zero LoRA slots). A
    task's kind is only known once it is loaded (train_many checks it)."""
    return not config.cache_prefix


def packs(configs: Sequence[TrainConfig], size: int) -> list[list[TrainConfig]]:
    """Cut `configs` into packs of at most `size` compatible configs, in their order (a config that cannot be
    packed is a pack of its own). Packs of a group are as even as possible: 14 runs with size 12 give 7 + 7."""
    if size < 1:
        raise ConfigError(f"pack: must be >= 1, got {size}")
    groups: dict[tuple, list[TrainConfig]] = {}
    out: list[list[TrainConfig]] = []
    for cfg in configs:
        if packable(cfg):
            groups.setdefault(pack_key(cfg), []).append(cfg)
        else:
            out.append([cfg])
    for group in groups.values():
        n = math.ceil(len(group) / size)
        per = math.ceil(len(group) / n)
        out.extend(group[i : i + per] for i in range(0, len(group), per))
    return out


def train_jobs_packed(
    jobs: Sequence,
    store: RunStore,
    size: int,
    progress: Callable | None = None,
    on_run: Callable | None = None,
    *,
    workspace: Workspace | None = None,
) -> list[RunRecord]:
    """What a sweep calls to train its ready jobs (objects with `.config` and `.annotations`, sweep.Job) `size`
    at a time: each pack by `train_many`, a pack of one by `train`. A failed pack is recorded in its runs'
    folders and the sweep goes on; a cancelled run ends the sweep, as in sweep._sweep_here. Returns the records
    (folders already cleared as sweep._fresh_folder does: `overwrite=True`), calling `on_run(record)` on each."""
    by_id = {job.config.run_id(): job for job in jobs}
    ws = workspace or Workspace()
    out: list[RunRecord] = []
    for group in packs([job.config for job in jobs], size):
        notes = [by_id[c.run_id()].annotations for c in group]
        try:
            if len(group) == 1:
                records = [_loop.train(group[0], store.path(group[0].run_id()), progress, workspace=ws,
                                       overwrite=True, annotations=notes[0])]  # fmt: skip
            else:
                records = train_many(group, store, progress, workspace=ws, overwrite=True, annotations=notes)
        except Exception:  # recorded in run.json (status failed); the sweep goes on
            records = [store.get(c.run_id()) for c in group if c.run_id() in store]
        for record in records:
            out.append(record)
            if on_run is not None:
                on_run(record)
        if any(r.status == "cancelled" for r in records):
            break  # a cancel (or Ctrl-C) stops the sweep, as in sweep._sweep_here
    return out
