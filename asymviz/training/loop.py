"""The training loop: one config in, one run folder out.

    record = train(TrainConfig(mode="b_only", steps=200), "runs/b_only", progress=print)

Reading order: `train` (run folder lifecycle: running -> completed | failed | cancelled) calls `_run` (load,
wrap, save the init, train, evaluate, save). The step itself is a plain PEFT step -- forward, loss.backward(),
AdamW, LambdaLR -- plus bookkeeping that never syncs the GPU more than once a second: per-step losses stay on the
device and are written to metrics.csv in chunks (`RunWriter.heartbeat_s`).

Stops early, with status `cancelled`, on SIGTERM / SIGINT (main thread only) or when `CANCEL` appears in the
run folder; it is checked before every step. Under `accelerate launch` (WORLD_SIZE > 1) the model is wrapped in
DDP, every process takes its own slice of each global batch (batch_size per process), and only the main
process writes the run folder.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from asymviz.base.batches import IGNORE, Encoded, batch_order
from asymviz.base.models import default_head, layer_count
from asymviz.base.tasks import is_classification
from asymviz.errors import ConfigError
from asymviz.runs import RUN_FILE, RunRecord, RunWriter
from asymviz.training import lora, prefix
from asymviz.training.config import TrainConfig
from asymviz.training.workspace import Workspace


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
# device, precision, processes


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {config.device} asked for, but this torch sees no CUDA device")
    return torch.device(config.device)


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return config.precision


def cpu_threads(config: TrainConfig) -> int:
    if config.threads:
        return config.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Dist:
    """Single process, or one of WORLD_SIZE processes started by `accelerate launch` or torchrun (they set RANK,
    LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT): torch.distributed with NCCL on GPUs, gloo on CPUs, and DDP."""

    def __init__(self, config: TrainConfig) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        if self.world > 1 and not torch.distributed.is_initialized():
            cuda = resolve_device(config).type == "cuda"
            if cuda:
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group("nccl" if cuda else "gloo")
            self.owns_group = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, fallback: torch.device) -> torch.device:
        return (
            torch.device("cuda", self.local_rank) if self.world > 1 and fallback.type == "cuda" else fallback
        )

    def wrap(self, model, device: torch.device):
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when it is True on one."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owns_group:
            torch.distributed.destroy_process_group()


class _NullWriter(RunWriter):
    """Non-main processes under data parallelism write nothing."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

    def start(self, *a, **k) -> None:
        pass

    def write(self) -> None:
        pass

    def log(self, *a, **k) -> None:
        pass

    def finish(self, *a, **k) -> None:
        pass

    def due(self) -> bool:
        return False

    @property
    def cancel_requested(self) -> bool:
        return False


def versions() -> dict[str, str]:
    import peft
    import transformers

    from asymviz import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "asymviz": __version__,
    }


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if platform.system() == "Darwin" else rss / 2**10), "process_max_rss"


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
    dist = _Dist(config)
    if dist.is_main:
        _prepare_out_dir(out, overwrite)
    dist.barrier()
    writer: RunWriter = RunWriter(out) if dist.is_main else _NullWriter()
    writer.start(config.run_id(), config.to_dict(), world_size=dist.world, **(annotations or {}))
    stop = threading.Event()
    restore = _install_signal_handlers(stop)
    t0 = time.perf_counter()
    try:
        _run(config, writer, dist, workspace or Workspace(keep_models=False), progress, stop, t0)
    except Cancelled:
        writer.update(timings={"wall_s": time.perf_counter() - t0})
        writer.finish("cancelled")
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        writer.update(timings={"wall_s": time.perf_counter() - t0})
        writer.finish(status, error=_one_line(exc))
        if status == "failed":
            raise
    finally:
        restore()
        torch.set_flush_denormal(False)
    dist.barrier()  # the main process has written everything
    dist.close()
    return RunRecord.load(out)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / RUN_FILE).exists():
            raise ConfigError(f"out: {out} is not empty and is not a run folder; choose another --out")
        if RunRecord.load(out).status == "running":
            raise ConfigError(f"out: {out} holds a run that is still running")
        if RunRecord.load(out).status == "completed" and not overwrite:
            raise ConfigError(f"out: {out} already holds a completed run (use overwrite / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
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
# one run


def _run(config, writer, dist, ws, progress, stop, t0) -> None:
    run_id = config.run_id()
    device = dist.device(resolve_device(config))
    precision = resolve_precision(config, device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config))
        # x86 computes with denormal floats (|x| < 1.2e-38) 10-100x slower; they appear in AdamW's state and
        # made mode ab 6x slower. Flushing them to zero changes nothing measurable (train() restores the default).
        torch.set_flush_denormal(True)
    else:
        import gc

        if device.index is None:  # "cuda" means the current device; set_device needs an index (torch 2.11)
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        gc.collect()  # a previous run's tensors (same process: sweeps, demo) must not count in this run's peak
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    autocast = _autocast(precision, device)

    def report(phase, step, total, loss=None, rate=None):
        if progress is not None:
            progress(ProgressEvent(run_id, phase, step, total, loss, rate))

    # -- data and model ----------------------------------------------------------------------------------
    task = ws.task(config)
    # frozen base weights in bf16 on a GPU under bf16 autocast (half the memory); trainable ones stay fp32
    weights = torch.bfloat16 if device.type == "cuda" and precision == "bf16" else torch.float32
    base, tokenizer, source = ws.model(config, task, weights)
    enc = ws.encoded(config, task, tokenizer, source)
    head = config.head if config.head is not None else default_head(base, task.kind)
    model = lora.wrap(base, config, task.kind, head)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # the head copies (modules_to_save) of a bf16 base
    model.to(device)
    model.peft_config[lora.ADAPTER].base_model_name_or_path = source.name  # a stable name, not a local path
    counts = lora.trainable_counts(model)
    n_train = len(enc["train"])
    total = _total_steps(config, n_train, dist.world)
    writer.update(
        force=True,
        device=str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        precision=precision,
        versions=versions(),
        data=task.record(),
        base_model=source.name,
        targets=sorted(model.peft_config[lora.ADAPTER].target_modules),
        layers=model.peft_config[lora.ADAPTER].layers_to_transform,
        head_modules=list(head),
        head_trained=bool(head),
        init_seed=config.effective_init_seed,
        saved_dtype={"fp16": "float16", "fp32": "float32"}[config.save_dtype],
        trainable_params=counts,
        progress={"step": 0, "total_steps": total, "phase": "load"},
    )
    if dist.is_main:
        _write_split(writer.path, task)
        init = lora.lora_state(model)
        _save_adapter(model, writer.path / "init", config.save_dtype)
    else:
        init = lora.lora_state(model)

    # -- the frozen prefix (optional) --------------------------------------------------------------------
    order = batch_order(n_train, config.batch_size, total, config.seed, dist.rank, dist.world)  # (steps, b)
    order_dev = order.to(device)  # one copy now instead of one per step
    enc_cpu, enc = (
        enc,
        {split: e.to(device) for split, e in enc.items()},
    )  # small: token ids live on the device
    states: dict[str, torch.Tensor | None] = dict.fromkeys(enc)
    n_prefix = 0
    t_prefix = time.perf_counter()
    if config.cache_prefix:
        if dist.world > 1 or not prefix.supported(model) or task.kind == "image_classification":
            raise ConfigError("cache_prefix: works for BERT-style encoders in a single process only")
        n_prefix = layer_count(model) - config.top_layers
        report("prefix", 0, total)
        writer.update(force=True, progress={"phase": "prefix"})
        states = _prefix_states(config, ws, source, model, enc_cpu, order, device, precision, n_prefix)
    t_prefix = time.perf_counter() - t_prefix

    # -- optimiser -----------------------------------------------------------------------------------------
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n]
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n]
    trainable = lora_params + head_params
    groups = [{"params": lora_params, "lr": config.lr}]
    if head_params:
        groups.append({"params": head_params, "lr": config.head_lr or config.lr})
    fused = {"fused": True} if device.type == "cuda" else {}  # one kernel per step instead of one per tensor
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, **fused)
    warm = int(round(config.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    train_model = dist.wrap(model, device)  # DDP under data parallelism, else the model itself

    pending: list[tuple[int, torch.Tensor]] = []  # (step, loss on the device) not yet written
    cls_only = config.cache_prefix and prefix.cls_only_supported(model)
    swap = prefix.top_only(model, n_prefix, cls_only) if config.cache_prefix else contextlib.nullcontext()
    with swap:

        def forward(m, split, idx, rows=None):
            rows = idx.to(device) if rows is None else rows
            batch = enc[split].batch(idx, rows)
            with autocast():
                if states[split] is not None:
                    h = states[split][rows, : batch["input_ids"].shape[1]]
                    return m(inputs_embeds=h, attention_mask=batch["attention_mask"], labels=batch["labels"])
                return m(**batch)

        train_peak = [0.0]  # GPU: the peak of the training steps alone (evaluations reset the counter)

        def eval_split(split, step):
            _flush_losses(writer, pending)  # keep metrics.csv in step order
            if device.type == "cuda":
                train_peak[0] = max(train_peak[0], torch.cuda.max_memory_allocated(device) / 2**20)
            t = time.perf_counter()
            report("eval", step, total)
            writer.update(force=True, progress={"step": step, "phase": f"eval {split}"})
            model.eval()
            eval_batch = 4 * config.batch_size if is_classification(task.kind) else config.batch_size
            values = evaluate(lambda idx: forward(model, split, idx), enc[split], task.kind, eval_batch)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            model.train()
            writer.log(step, split, values)
            writer.update(progress={"phase": "train"})
            return values, time.perf_counter() - t

        # -- the loop ------------------------------------------------------------------------------------
        model.train()
        t_eval = 0.0
        last_loss, seen, seen_tokens = None, 0, 0
        writer.update(force=True, progress={"phase": "train"})
        t_train = time.perf_counter()
        for step in range(total):
            if step % 16 == 0 or dist.world == 1:
                if dist.any(stop.is_set() or writer.cancel_requested, device):
                    _flush_losses(writer, pending)
                    writer.update(progress={"step": step, "phase": "cancelled"})
                    raise Cancelled()
            idx = order[step]
            out = forward(train_model, "train", idx, order_dev[step])
            out.loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pending.append((step + 1, out.loss.detach()))
            seen += len(idx) * dist.world
            if task.kind == "causal_lm":
                seen_tokens += int(enc["train"].lengths[idx].sum()) * dist.world
            if writer.due() or step + 1 == total:
                last_loss = _flush_losses(writer, pending)
                rate = seen / max(time.perf_counter() - t_train - t_eval, 1e-9)
                writer.log(step + 1, "train", {"examples_per_s": rate})
                writer.update(force=True, progress={"step": step + 1})
            report(
                "train", step + 1, total, last_loss, seen / max(time.perf_counter() - t_train - t_eval, 1e-9)
            )
            if (
                config.eval_every
                and (step + 1) % config.eval_every == 0
                and step + 1 < total
                and dist.is_main
            ):
                t_eval += eval_split("validation", step + 1)[1]
        t_train = time.perf_counter() - t_train - t_eval
        if device.type == "cuda":
            train_peak[0] = max(train_peak[0], torch.cuda.max_memory_allocated(device) / 2**20)

        # -- final evaluation ------------------------------------------------------------------------------
        metrics: dict[str, float] = {}
        if dist.is_main:
            splits = [s for s in ("validation", "test", "heldout") if s in enc]
            for split in splits if config.eval_test else ("validation",):
                values, dt = eval_split(split, total)
                t_eval += dt
                metrics.update({f"{split}_{k}": v for k, v in values.items()})
    # (swap undone here: the model is whole again before anything is saved)

    check = lora.frozen_check(model, init, config.mode)
    t_gen = 0.0
    if task.kind == "causal_lm" and config.generate and dist.is_main:
        t_gen = time.perf_counter()
        report("generate", total, total)
        writer.update(force=True, progress={"phase": "generate"})
        _write_generations(writer.path, model, tokenizer, task, config, device, autocast)
        t_gen = time.perf_counter() - t_gen
    t_save = time.perf_counter()
    report("save", total, total)
    if dist.is_main:
        _save_adapter(model, writer.path / "adapter", config.save_dtype)
    t_save = time.perf_counter() - t_save
    peak, peak_kind = peak_memory_mb(device)
    if device.type == "cuda":
        peak, peak_kind = train_peak[0], "cuda_max_allocated_training"
    metrics.update(
        train_loss=last_loss,
        examples_per_s=seen / max(t_train, 1e-9),
        peak_memory_mb=peak,
        peak_memory_kind=peak_kind,
    )
    if task.kind == "causal_lm":
        metrics["tokens_per_s"] = seen_tokens / max(t_train, 1e-9)
    wall = time.perf_counter() - t0
    writer.update(
        metrics=metrics,
        frozen_check=check,
        timings={
            "prefix_s": t_prefix,
            "train_s": t_train,
            "eval_s": t_eval,
            "generate_s": t_gen,
            "save_s": t_save,
            "wall_s": wall,
        },
        progress={"step": total, "phase": "done"},
    )
    writer.finish("completed")
    report("done", total, total, last_loss)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _total_steps(config: TrainConfig, n_train: int, world: int = 1) -> int:
    if config.steps:
        return config.steps
    return max(1, math.ceil((config.epochs or 1.0) * n_train / (config.batch_size * world)))


def _prefix_states(config, ws, source, model, enc, order, device, precision, n_prefix) -> dict:
    """The frozen prefix's outputs for validation, test and the training rows in `order` (cached in `ws`)."""
    key = (source.name, source.path, config.task, config.split_seed, config.max_train, config.max_validation,
           config.max_test, config.max_length, n_prefix, str(device), precision)  # fmt: skip
    autocast = _autocast(precision, device)

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
        torch.set_num_threads(cpu_threads(config))
        torch.set_flush_denormal(True)
    task = ws.task(config)
    weights = torch.bfloat16 if device.type == "cuda" and precision == "bf16" else torch.float32
    base, tokenizer, source = ws.model(config, task, weights, copy=False)
    enc = ws.encoded(config, task, tokenizer, source)
    if config.cache_prefix and prefix.supported(base):
        n_train = len(enc["train"])
        order = batch_order(n_train, config.batch_size, _total_steps(config, n_train), config.seed)
        n_prefix = layer_count(base) - config.top_layers
        base.to(device)
        _prefix_states(config, ws, source, base, enc, order, device, precision, n_prefix)
        base.to("cpu")


def _flush_losses(writer: RunWriter, pending: list) -> float | None:
    if not pending:
        return None
    values = torch.stack([loss for _, loss in pending]).float().cpu().tolist()  # one sync for the chunk
    for (step, _), v in zip(pending, values):
        writer.log(step, "train", {"loss": v})
    pending.clear()
    return values[-1]


def _write_split(path: Path, task) -> None:
    from asymviz.runs import write_json_atomic

    write_json_atomic(path / "split.json", task.row_ids())


def _save_adapter(model, target: Path, dtype: str = "fp32") -> None:
    """PEFT save_pretrained into a temporary folder, then rename: the folder is complete or absent.

    dtype "fp16" rewrites the weights file in float16 (half the size); PEFT's from_pretrained casts them back to
    the model's float32 parameters on load, and asymviz.adapters.load_adapter reads them as they are."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, save_embedding_layers=False)  # "auto" would look the base name up on the Hub
    if dtype == "fp16":
        from safetensors.torch import load_file, save_file

        file = tmp / "adapter_model.safetensors"
        tensors = load_file(file)
        half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
        save_file(half, file, metadata={"format": "pt"})
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


@torch.no_grad()
def _write_generations(path: Path, model, tokenizer, task, config: TrainConfig, device, autocast) -> None:
    """Greedy answers to the first `config.generate` test questions (in file order), one JSON line each:
    row, question, reference, generated. Written to generations.jsonl (atomically)."""
    import json

    from asymviz.base.batches import _prompt

    model.eval()
    rows = task.test.sort_values("row").head(config.generate)
    lines = []
    for row in rows.itertuples():
        prompt = tokenizer(_prompt(tokenizer, row.text), add_special_tokens=False, return_tensors="pt")
        ids = prompt["input_ids"][:, -(config.max_length - 1) :].to(device)
        with autocast():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=config.generate_tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        lines.append({"row": int(row.row), "question": row.text, "reference": row.answer, "generated": text})
    tmp = path / f".generations.jsonl.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    os.replace(tmp, path / "generations.jsonl")
    model.train()


# ----------------------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(forward: Callable, enc: Encoded, kind: str, batch_size: int = 64) -> dict[str, float]:
    """Metrics of one split. `forward(idx)` returns the model output for those rows.

    Classification: accuracy, macro_f1 (mean F1 over the classes present in labels or predictions), loss
    (mean cross-entropy). Causal LM: loss (mean over answer tokens), perplexity = exp(loss).
    """
    import torch.nn.functional as F

    n = len(enc)
    loss_sum, count = 0.0, 0
    pred = torch.zeros(n, dtype=torch.long)
    order = torch.argsort(enc.lengths, descending=True, stable=True)  # similar lengths: less padding
    for idx in order.split(batch_size):
        out = forward(idx)
        logits = out.logits.float()
        if is_classification(kind):
            y = enc.labels[idx.to(enc.labels.device)].to(logits.device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            count += len(idx)
            pred[idx] = logits.argmax(-1).cpu()
        else:
            w = logits.shape[1]
            target = enc.labels[idx.to(enc.labels.device), :w].to(logits.device)[:, 1:]  # next-token targets
            loss_sum += float(
                F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=IGNORE, reduction="sum")
            )
            count += int((target != IGNORE).sum())
    loss = loss_sum / max(count, 1)
    if not is_classification(kind):
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    y = enc.labels.cpu()
    return {"accuracy": int((pred == y).sum()) / len(y), "macro_f1": macro_f1(y, pred), "loss": loss}


def macro_f1(y: torch.Tensor, pred: torch.Tensor) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y or pred (sklearn's 'macro')."""
    classes = torch.unique(torch.cat([y, pred]))
    f1s = []
    for c in classes:
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(sum(f1s) / len(f1s))
