"""The training recipe: one config in, one run folder out.

    record = train(TrainConfig(mode="b_only", steps=200), "runs/b_only", progress=print)

`train` owns the run folder's life (running -> completed | failed | cancelled); `_run` reads as the recipe:
`setup` (data, model, the mode's wrapping, the init, the optional frozen prefix) -> `fit` (the steps) ->
`final_evaluation` -> `save`. The step is a plain PEFT step -- forward, loss.backward(), AdamW, LambdaLR -- plus
bookkeeping that never syncs the GPU more than once a second: per-step losses stay on the device and are written
to metrics.csv in chunks (`RunWriter.heartbeat_s`).

Stops early, with status `cancelled`, on SIGTERM / SIGINT (main thread only) or when `CANCEL` appears in the
run folder; it is checked before every step. Under `accelerate launch` (WORLD_SIZE > 1) the model is wrapped in
DDP, every process takes its own slice of each global batch (batch_size per process), and only the main
process writes the run folder.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from asymviz import runs
from asymviz.errors import ConfigError, first_line
from asymviz.runs import RunRecord, RunWriter
from asymviz.training import lora, runtime
from asymviz.training.config import TrainConfig
from asymviz.training.evaluation import evaluate, macro_f1, write_generations
from asymviz.training.runtime import Dist, cpu_threads, resolve_device, resolve_precision
from asymviz.training.session import Run, flush_losses, prepare, save_adapter, setup
from asymviz.training.workspace import Workspace

__all__ = ["prepare_out_dir", "install_signal_handlers", "one_line", "ProgressEvent", "Cancelled", "train", "prepare", "evaluate", "macro_f1", "resolve_device",
           "resolve_precision", "cpu_threads"]  # fmt: skip


@dataclass(frozen=True)
class ProgressEvent:
    """What a progress callback receives, at most once per step."""

    run_id: str
    phase: str  # "load" | "prefix" | "train" | "eval" | "save" | "done"
    step: int
    total_steps: int
    loss: float | None = None  # latest training loss written (lags the step by up to a second on GPU)
    examples_per_s: float | None = None


class Cancelled(Exception):
    """Raised inside the loop when a stop was asked for."""


# ----------------------------------------------------------------------------------------------------------
# the public entry point


def train(
    config: TrainConfig,
    out_dir: str | Path,
    progress: Callable[[ProgressEvent], None] | None = None,
    *,
    workspace: Workspace | None = None,
    overwrite: bool = False,
    annotations: dict | None = None,
) -> RunRecord:
    """Fine-tune one run and write its folder; returns the run's record (status completed or cancelled).

    `out_dir` must not hold a completed run unless `overwrite`; a folder left by a failed, cancelled or killed
    run is cleared and reused. A failure is recorded in run.json (status failed, one-line error) and re-raised.
    `annotations` are extra run.json fields written from the start (a sweep's `role`, `lr_selection`, `sweep`).
    """
    out = Path(out_dir)
    dist = Dist(config)
    if dist.is_main:
        prepare_out_dir(out, overwrite)
    dist.barrier()
    writer = RunWriter(out if dist.is_main else None)  # other processes under data parallelism write nothing
    writer.start(config.run_id(), config.to_dict(), world_size=dist.world, **(annotations or {}))
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    t0 = time.perf_counter()
    try:
        _run(config, writer, dist, workspace or Workspace(keep_models=False), progress, stop, t0)
    except Cancelled:
        writer.update(timings={"wall_s": time.perf_counter() - t0})
        writer.finish("cancelled")
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        writer.update(timings={"wall_s": time.perf_counter() - t0})
        writer.finish(status, error=one_line(exc))
        if status == "failed":
            raise
    finally:
        restore()
        torch.set_flush_denormal(False)
    dist.barrier()  # the main process has written everything
    dist.close()
    return RunRecord.load(out)


def _run(config, writer, dist, ws, progress, stop, t0) -> None:
    """The recipe: setup -> fit -> final evaluation -> save."""

    def report(phase, step, total, loss=None, rate=None):
        if progress is not None:
            progress(ProgressEvent(config.run_id(), phase, step, total, loss, rate))

    run = setup(config, writer, dist, ws, report)
    with run.swap():  # the frozen prefix's shortcut; undone before anything is saved
        fit(run, stop, report)
        metrics = final_evaluation(run, report)
    save(run, metrics, t0, report)


def one_line(exc: BaseException) -> str:
    """An exception as the one-line `error` of run.json: "TypeName: first line", at most 500 characters."""
    return f"{type(exc).__name__}: {first_line(exc)}"[:500]


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Make `out` ready for a new run: create it, or clear a failed / cancelled / killed run's folder there.
    ConfigError for a folder that is not a run, holds a live run, or a completed one (unless `overwrite`)."""
    if out.exists() and any(out.iterdir()):
        if not runs.is_run_folder(out):
            raise ConfigError(f"out: {out} is not empty and is not a run folder; choose another --out")
        if RunRecord.load(out).status == "running":
            raise ConfigError(f"out: {out} holds a run that is still running")
        if RunRecord.load(out).status == "completed" and not overwrite:
            raise ConfigError(f"out: {out} already holds a completed run (use overwrite / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM / SIGINT set `stop` (main thread only); returns the function that restores the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


# ----------------------------------------------------------------------------------------------------------
# setup


# ----------------------------------------------------------------------------------------------------------
# the steps


def optimizer_and_schedule(model, config: TrainConfig, total: int, device: torch.device):
    """AdamW over lora.param_groups (LoRA A, LoRA B at lr_ratio · lr, the head at head_lr) and its schedule:
    linear warm-up over `warmup · total` steps, then linear decay to 0 (as HF Trainer's linear schedule)."""
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel per step instead of one per tensor
    optimizer = torch.optim.AdamW(lora.param_groups(model, config), weight_decay=config.weight_decay, **fused)
    warm = int(round(config.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    return optimizer, scheduler


def fit(run: Run, stop: threading.Event, report) -> None:
    """The optimiser steps (with validation every `eval_every` steps); raises Cancelled on a stop request."""
    config, writer, dist, device, total = run.config, run.writer, run.dist, run.device, run.total
    optimizer, scheduler = optimizer_and_schedule(run.model, config, total, device)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    train_model = dist.wrap(run.model, device)  # DDP under data parallelism, else the model itself
    run.model.train()
    writer.update(force=True, progress={"phase": "train"})
    t_start = time.perf_counter()

    def rate() -> float:
        return run.seen / max(time.perf_counter() - t_start - run.t_eval, 1e-9)

    for step in range(total):
        if step % 16 == 0 or dist.world == 1:
            if dist.any(stop.is_set() or writer.cancel_requested, device):
                flush_losses(writer, run.pending)
                writer.update(progress={"step": step, "phase": "cancelled"})
                raise Cancelled()
        idx = run.order[step]
        out = run.forward(train_model, "train", idx, run.order_dev[step])
        out.loss.backward()
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.pending.append((step + 1, out.loss.detach()))
        run.seen += len(idx) * dist.world
        if run.task_type == "causal_lm":
            run.seen_tokens += int(run.enc["train"].lengths[idx].sum()) * dist.world
        if writer.due() or step + 1 == total:
            run.last_loss = flush_losses(writer, run.pending)
            writer.log(step + 1, "train", {"examples_per_s": rate()})
            writer.update(force=True, progress={"step": step + 1})
        report("train", step + 1, total, run.last_loss, rate())
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < total and dist.is_main:
            run.evaluate_split("validation", step + 1, report)
    run.t_train = time.perf_counter() - t_start - run.t_eval
    run.note_peak()


def final_evaluation(run: Run, report) -> dict[str, float]:
    """validation_* and (eval_test) test_* / heldout_* metrics at the end, on the main process."""
    metrics: dict[str, float] = {}
    if run.dist.is_main:
        splits = [s for s in ("validation", "test", "heldout") if s in run.enc]
        for split in splits if run.config.eval_test else ("validation",):
            values = run.evaluate_split(split, run.total, report)
            metrics.update({f"{split}_{k}": v for k, v in values.items()})
    return metrics


# ----------------------------------------------------------------------------------------------------------
# save


def save(run: Run, metrics: dict, t0: float, report) -> None:
    """The frozen check, generations (causal LMs), the trained adapter, and the run's final record."""
    config, writer, total = run.config, run.writer, run.total
    check = lora.frozen_check(run.model, run.init, config.mode) if run.init is not None else None
    t_gen = 0.0
    if run.task_type == "causal_lm" and config.generate and run.dist.is_main:
        t_gen = time.perf_counter()
        report("generate", total, total)
        writer.update(force=True, progress={"phase": "generate"})
        write_generations(runs.generations_file(writer.path), run.model, run.tokenizer, run.task, config,
                          run.device, run.autocast)  # fmt: skip
        t_gen = time.perf_counter() - t_gen
    t_save = time.perf_counter()
    report("save", total, total)
    if run.dist.is_main and run.init is not None:
        save_adapter(run.model, runs.adapter_dir(writer.path), config.save_dtype)
    t_save = time.perf_counter() - t_save
    peak, peak_kind = runtime.peak_memory_mb(run.device)
    if run.device.type == "cuda":
        peak, peak_kind = run.train_peak_mb, "cuda_max_allocated_training"
    metrics.update(train_loss=run.last_loss, examples_per_s=run.seen / max(run.t_train, 1e-9),
                   peak_memory_mb=peak, peak_memory_kind=peak_kind)  # fmt: skip
    if run.task_type == "causal_lm":
        metrics["tokens_per_s"] = run.seen_tokens / max(run.t_train, 1e-9)
    writer.update(
        metrics=metrics,
        frozen_check=check,
        timings={
            "prefix_s": run.t_prefix,
            "train_s": run.t_train,
            "eval_s": run.t_eval,
            "generate_s": t_gen,
            "save_s": t_save,
            "wall_s": time.perf_counter() - t0,
        },  # fmt: skip
        progress={"step": total, "phase": "done"},
    )
    writer.finish("completed")
    report("done", total, total, run.last_loss)
