"""What several runs in one process share: the split data, the tokenised splits, the pristine base model, and
the frozen prefix's outputs (see prefix.py). A sweep or the demo passes one Workspace to every `train` call;
a lone `train` makes its own. Nothing here changes a result: every run still gets a fresh copy of the base
model, its own seeded head and LoRA init, and the same data it would get alone.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field

import torch

from asymviz.base.batches import Encoded, encode, encode_images
from asymviz.base.models import ModelSource, load_model, resolve_model
from asymviz.base.tasks import TaskData, load_task
from asymviz.training.config import TrainConfig

SPLITS = ("train", "validation", "test")


@dataclass
class _Prefix:
    """Hidden states after the frozen prefix for one split, filled in lazily row by row."""

    states: torch.Tensor  # (N, L, d)
    done: torch.Tensor  # (N,) bool


@dataclass
class Workspace:
    """Caches keyed by everything that changes their content."""

    keep_models: bool = True  # False: hand the loaded model to the first run instead of copying it
    _tasks: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)
    _encoded: dict = field(default_factory=dict)
    _prefix: dict = field(default_factory=dict)

    def task(self, config: TrainConfig) -> TaskData:
        key = (
            config.task,
            config.split_seed,
            config.holdout,
            config.max_train,
            config.max_validation,
            config.max_test,
        )
        if key not in self._tasks:
            self._tasks[key] = load_task(*key)  # the key is load_task's positional arguments
        return self._tasks[key]

    def model(
        self, config: TrainConfig, task: TaskData, dtype: torch.dtype = torch.float32, copy: bool = True
    ):
        """(fresh base model on CPU, tokenizer, ModelSource) for this config's model and task; copy=False hands
        out the cached model itself (read-only use)."""
        source = resolve_model(config.model)
        key = (source.name, source.path, task.task_type, task.num_labels, dtype)
        if key not in self._models:
            model, tokenizer = load_model(
                source, task.task_type, num_labels=max(task.num_labels, 2), dtype=dtype
            )
            if not self.keep_models:
                return model, tokenizer, source
            self._models[key] = (model, tokenizer)
        model, tokenizer = self._models[key]
        return (deepcopy(model) if copy else model), tokenizer, source

    def encoded(
        self, config: TrainConfig, task: TaskData, tokenizer, source: ModelSource
    ) -> dict[str, Encoded]:
        key = (source.name, source.path, id(task), config.max_length)
        if key not in self._encoded:
            if task.images is not None:
                self._encoded[key] = {
                    s: encode_images(task.images[s], task.split(s)["y"]) for s in task.splits
                }
            else:
                self._encoded[key] = {
                    s: encode(task.split(s), tokenizer, task.task_type, config.max_length)
                    for s in task.splits
                }
        return self._encoded[key]

    def prefix_states(
        self, key: tuple, split: str, enc: Encoded, rows: torch.Tensor, compute, device: torch.device
    ) -> torch.Tensor:
        """(N, L, d) states of `split` with at least `rows` filled; `compute(ids, mask) -> (n, L, d)`."""
        entry = self._prefix.get((key, split))
        missing = rows.unique()
        if entry is not None:
            missing = missing[~entry.done[missing]]
        if len(missing):
            rows_dev = missing.to(enc.ids.device)
            new = compute(enc.ids[rows_dev].to(device), enc.mask[rows_dev].to(device))  # (n, L, d)
            if entry is None:
                entry = _Prefix(torch.empty((len(enc), *new.shape[1:]), dtype=new.dtype, device=device),
                                torch.zeros(len(enc), dtype=torch.bool))  # fmt: skip
                self._prefix[(key, split)] = entry
            entry.states[missing.to(device)] = new
            entry.done[missing] = True
        return entry.states
