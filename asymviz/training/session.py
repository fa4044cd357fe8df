"""A run's setup: where it computes, its data and model wrapped for the mode, its init, its frozen prefix.

    run = setup(config, writer, dist, workspace, report)     # Run: what fit / evaluation / save share
    prepare(config, workspace)                                 # the same shared work, before forked runs

`Run` holds what the phases of the recipe (asymviz.training.loop) share; `Run.forward` and
`Run.evaluate_split` are the two things every phase does with the model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asymviz import runs
from asymviz.base.batches import batch_order
from asymviz.base.models import default_head, layer_count
from asymviz.base.tasks import is_classification
from asymviz.errors import ConfigError
from asymviz.runs import RunWriter
from asymviz.training import lora, prefix, runtime
from asymviz.training.config import TrainConfig
from asymviz.training.evaluation import evaluate
from asymviz.training.runtime import Dist, resolve_device, resolve_precision
from asymviz.training.workspace import Workspace


@dataclass
class Run:
    """Everything one run's phases share once `setup` has built it."""

    config: TrainConfig
    writer: RunWriter
    dist: Dist
    device: torch.device
    precision: str
    task: object  # asymviz.base.tasks.TaskData
    task_type: str  # "classification" | "causal_lm" | "image_classification"
    tokenizer: object
    model: torch.nn.Module  # a PeftModel, or the base model itself in mode head_only
    enc: dict  # split -> Encoded, on the device
    states: dict  # split -> (N, L, d) frozen-prefix outputs, or None
    order: torch.Tensor  # (steps, batch) row indices of every step, on the CPU
    order_dev: torch.Tensor  # the same on the device
    total: int  # optimiser steps
    n_prefix: int  # frozen layers run once (cache_prefix), else 0
    init: dict | None  # the adapter at step 0 (PEFT keys), None in mode head_only
    t_prefix: float
    # filled in by fit():
    pending: list = field(default_factory=list)  # (step, loss on the device) not yet written
    train_peak_mb: float = 0.0  # GPU: the peak of the training steps alone (evaluations reset the counter)
    t_train: float = 0.0
    t_eval: float = 0.0
    seen: int = 0
    seen_tokens: int = 0
    last_loss: float | None = None

    @property
    def autocast(self):
        return runtime.autocast(self.precision, self.device)

    def swap(self):
        """prefix.top_only with cache_prefix (the model starts from the cached states), else nothing."""
        if not self.config.cache_prefix:
            return contextlib.nullcontext()
        return prefix.top_only(self.model, self.n_prefix, prefix.cls_only_supported(self.model))

    def forward(self, m, split: str, idx: torch.Tensor, rows: torch.Tensor | None = None):
        """The model's output for rows `idx` of `split` (`rows`: the same indices already on the device)."""
        rows = idx.to(self.device) if rows is None else rows
        states = self.states[split]
        # the model gets a mask chosen from the CPU lengths (no GPU read per step); the cached-prefix path keeps
        # the 2-D mask, which prefix.top_only's attention reads
        batch = self.enc[split].batch(idx, rows, for_model=m if states is None else None)
        with self.autocast():
            if states is not None:
                h = states[rows, : batch["input_ids"].shape[1]]
                return m(inputs_embeds=h, attention_mask=batch["attention_mask"], labels=batch["labels"])
            return m(**batch)

    def note_peak(self) -> None:
        if self.device.type == "cuda":
            self.train_peak_mb = max(self.train_peak_mb, torch.cuda.max_memory_allocated(self.device) / 2**20)

    def evaluate_split(self, split: str, step: int, report) -> dict[str, float]:
        """Evaluate one split now, log it to metrics.csv, and add the time to t_eval."""
        flush_losses(self.writer, self.pending)  # keep metrics.csv in step order
        self.note_peak()
        t = time.perf_counter()
        report("eval", step, self.total)
        self.writer.update(force=True, progress={"step": step, "phase": f"eval {split}"})
        self.model.eval()
        eval_batch = (
            4 * self.config.batch_size if is_classification(self.task_type) else self.config.batch_size
        )
        values = evaluate(lambda idx: self.forward(self.model, split, idx), self.enc[split], self.task_type,
                          eval_batch)  # fmt: skip
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model.train()
        self.writer.log(step, split, values)
        self.writer.update(progress={"phase": "train"})
        self.t_eval += time.perf_counter() - t
        return values


def _place(config: TrainConfig, dist: Dist) -> tuple[torch.device, str]:
    """The run's device and precision, the device prepared (CPU threads; a GPU's peak counter reset)."""
    device = dist.device(resolve_device(config))
    precision = resolve_precision(config, device)
    if device.type == "cpu":
        runtime.use_cpu(config)
    else:
        import gc

        if device.index is None:  # "cuda" means the current device; set_device needs an index (torch 2.11)
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        gc.collect()  # a previous run's tensors (same process: sweeps, demo) must not count in this run's peak
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return device, precision


def setup(config: TrainConfig, writer: RunWriter, dist: Dist, ws: Workspace, report) -> Run:
    """Data, the base model wrapped for the mode, the init saved, and (cache_prefix) the frozen prefix run."""
    device, precision = _place(config, dist)
    task = ws.task(config)
    task_type = task.task_type
    base, tokenizer, source = ws.model(config, task, runtime.base_dtype(device, precision))
    enc = ws.encoded(config, task, tokenizer, source)
    head = config.head if config.head is not None else default_head(base, task_type)
    model = lora.wrap(base, config, task_type, head)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # the head copies (modules_to_save) of a bf16 base
    model.to(device)
    adapter = config.mode != "head_only"
    if adapter:
        model.peft_config[
            lora.ADAPTER
        ].base_model_name_or_path = source.name  # a stable name, not a local path
    n_train = len(enc["train"])
    total = runtime.total_steps(config, n_train, dist.world)
    init = lora.lora_state(model) if adapter else None
    writer.update(
        force=True,
        device=runtime.device_name(device),
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        precision=precision,
        versions=runtime.versions(),
        data=task.record(),
        split_summary=task.split_summary(),  # per split: rows, unique texts, classes, majority accuracy, ...
        base_model=source.name,
        targets=sorted(model.peft_config[lora.ADAPTER].target_modules) if adapter else [],
        layers=model.peft_config[lora.ADAPTER].layers_to_transform if adapter else None,
        head_modules=list(head),
        head_trained=bool(head),
        has_adapter=adapter,  # False in mode head_only: no adapter/ and init/ folders
        init_seed=config.effective_init_seed,
        saved_dtype={"fp16": "float16", "fp32": "float32"}[config.save_dtype],
        trainable_params=lora.trainable_counts(model),
        learning_rates={
            "lora_A": config.lr if adapter else None,
            "lora_B": config.lr * config.lr_ratio if adapter else None,
            "head": config.effective_head_lr if head else None,
        },  # fmt: skip
        frozen_norms=_frozen_norms(init, config.mode),
        progress={"step": 0, "total_steps": total, "phase": "load"},
    )
    if dist.is_main:
        runs.write_split(writer.path, task.row_ids())
        if adapter:
            save_adapter(model, runs.init_dir(writer.path), config.save_dtype)

    order = batch_order(n_train, config.batch_size, total, config.seed, dist.rank, dist.world)  # (steps, b)
    run = Run(config, writer, dist, device, precision, task, task_type, tokenizer, model,
              enc={split: e.to(device) for split, e in enc.items()},  # small: token ids live on the device
              states=dict.fromkeys(enc), order=order, order_dev=order.to(device), total=total, n_prefix=0,
              init=init, t_prefix=0.0)  # fmt: skip
    if config.cache_prefix:
        t = time.perf_counter()
        if dist.world > 1 or not prefix.supported(model) or task_type == "image_classification":
            raise ConfigError("cache_prefix: works for BERT-style encoders in a single process only")
        run.n_prefix = layer_count(model) - config.top_layers
        report("prefix", 0, total)
        writer.update(force=True, progress={"phase": "prefix"})
        run.states = _prefix_states(config, ws, source, model, enc, order, device, precision, run.n_prefix)
        run.t_prefix = time.perf_counter() - t
    return run


def _frozen_norms(init: dict | None, mode: str) -> dict | None:
    """Row / column norms of the frozen factor at init (lora.factor_norms); None when no factor is frozen."""
    from asymviz.modes import frozen_factor

    factor = frozen_factor(mode)
    return lora.factor_norms(init, factor) if init is not None and factor is not None else None


def _prefix_states(config, ws, source, model, enc, order, device, precision, n_prefix) -> dict:
    """The frozen prefix's outputs for validation, test and the training rows in `order` (cached in `ws`)."""
    key = (source.name, source.path, config.task, config.split_seed, config.max_train, config.max_validation,
           config.max_test, config.max_length, n_prefix, str(device), precision)  # fmt: skip
    autocast = runtime.autocast(precision, device)

    def compute(ids, mask):
        return prefix.prefix_states(model, ids, mask, n_prefix, batch_size=64, autocast=autocast())

    states = {}
    for split in ("validation", "test"):
        states[split] = ws.prefix_states(
            key, split, enc[split], torch.arange(len(enc[split])), compute, device
        )
    states["train"] = ws.prefix_states(key, "train", enc["train"], order.flatten(), compute, device)
    return states


def prepare(config: TrainConfig, ws: Workspace) -> None:
    """Fill `ws` with what `train(config, ..., workspace=ws)` will need (data, tokenised splits, the base model and,
    with cache_prefix, the frozen prefix's outputs), so that runs forked afterwards share it (sweep's CPU jobs)."""
    device = resolve_device(config)
    precision = resolve_precision(config, device)
    if device.type == "cpu":
        runtime.use_cpu(config)
    task = ws.task(config)
    base, tokenizer, source = ws.model(config, task, runtime.base_dtype(device, precision), copy=False)
    enc = ws.encoded(config, task, tokenizer, source)
    if config.cache_prefix and prefix.supported(base):
        n_train = len(enc["train"])
        order = batch_order(n_train, config.batch_size, runtime.total_steps(config, n_train), config.seed)
        n_prefix = layer_count(base) - config.top_layers
        base.to(device)
        _prefix_states(config, ws, source, base, enc, order, device, precision, n_prefix)
        base.to("cpu")


def flush_losses(writer: RunWriter, pending: list) -> float | None:
    if not pending:
        return None
    values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()  # one sync for the chunk
    for (step, _), v in zip(pending, values):
        writer.log(step, "train", {"loss": v})
    pending.clear()
    return values[-1]


def save_adapter(model, target: Path, dtype: str = "fp32") -> None:
    """PEFT save_pretrained into a temporary folder, then rename: the folder is complete or absent.

    dtype "fp16" rewrites the weights file in float16 (half the size); PEFT's from_pretrained casts them back to
    the model's float32 parameters on load, and asymviz.adapters.load_adapter reads them as they are.

    PEFT's README.md model card is not written: its template ("[More Information Needed]" sections) is compiled
    by jinja2 on every save, ~27 ms, half of a packed sweep's saving time for no content of the run's."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.create_or_update_model_card = lambda *args, **kwargs: None  # this instance only
    try:
        model.save_pretrained(
            tmp, save_embedding_layers=False
        )  # "auto" would look the base name up on the Hub
    finally:
        del model.create_or_update_model_card  # PEFT's own method again
    if dtype == "fp16":
        from safetensors.torch import load_file, save_file

        file = tmp / "adapter_model.safetensors"
        tensors = load_file(file)
        half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(half, file, metadata={"format": "pt"})
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
