"""Train K runs at once over one frozen base model: each base matmul runs once on the K runs' stacked batches.

    records = train_many([cfg_ab, cfg_b_only, cfg_a_only], "runs")    # three run folders, as `train` writes them

(pack.py cuts a sweep's configs into packs and trains them: `asymviz sweep --pack 12`.)

Why: a MiniLM step at batch 32 × 128 is ~1.5 ms of H200 compute but ~23 ms of a plain PEFT loop (launches and
Python), so one process that trains K adapters per step is close to K times faster than K processes.

How (stack.py holds the layers and the optimiser): every run is first set up exactly as `train` sets it up
(`lora.wrap` on its own copy of the base: the same init draws, the same frozen factors, the same head init), its
init/ is saved, and its values are copied into one (K, P) fp32 tensor. A second copy of the base, frozen, gets each
adapted linear replaced by a `LoraStack` and each head linear by a `LinearStack`. A step cuts run k's batch from
run k's own seeded order (`batch_order(n, b, steps, seed_k)`), stacks the K batches (padded to the widest;
padding is masked), computes each run's mean cross-entropy on its own rows, back-propagates their sum (the runs
share no trainable value, so each run's gradient is the one it would get alone), clips each run's gradient norm
on its own, and takes one AdamW step with a learning rate per run and per element (0 where a mode freezes a
factor). Every run then gets its own evaluation, adapter/ (PEFT format, via the loop's own save helper) and
run.json, with `pack` {size, index, run_ids, examples_per_s (the pack's summed rate)} added; a run's
metrics.examples_per_s is its own examples over the pack's training time, and on a GPU its peak_memory_mb is
the pack's (peak_memory_kind `cuda_max_allocated_pack`).

The head_only control packs too: its run is set up by `lora.wrap` as alone (the base itself, the head re-drawn
from its init seed, every other weight frozen); in the stack its LoRA slots hold zeros with a zero learning rate
and a zero gradient mask, so its adapted linears add exactly 0 to the base's output and its head trains on the
same logits a lone head_only run sees. A pack may be all head_only runs (the sweep's first wave: the head-lr grid).

What must be equal in a pack (PACK_FIELDS): model, task and data fields, max_length, batch size, steps (or
epochs), rank, targets, layers, head, lora_dropout, device, precision, eval settings. What may differ: mode,
a_init, seed, init_seed, alpha, lr, head_lr, weight_decay, warmup, max_grad_norm, save_dtype. Ranks must be
equal: a pack is one shape (`packs` groups by rank); padding smaller ranks with masked zero rows would be exact too,
but costs the widest rank's compute for every run and was not needed by any sweep so far.

Equality with `train` (tests/training/test_multi.py): with dropout off, each run's losses step by step and its
final factors and head equal the lone run's to float rounding (fp32 on CPU: ~1e-6 relative). Dropout (BERT's
hidden / attention dropout, lora_dropout) draws from the process's generator, seeded from the pack's first run:
a pack is reproducible, but a run's dropout masks differ from the ones it would draw alone. Not supported (a
ConfigError): causal LM and image tasks, cache_prefix, data parallelism.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import torch

from asymviz.base.batches import batch_order
from asymviz.base.models import default_head
from asymviz.errors import ConfigError
from asymviz.runs import RunRecord, RunStore, RunWriter
from asymviz.training import (
    lora,
    recipe,  # the single-run recipe's own helpers, in either layout
)
from asymviz.training.config import TrainConfig
from asymviz.training.stack import AdamWState, FlatParams, LinearStack, LoraStack, clip_per_run, step_adamw
from asymviz.training.workspace import Workspace

# fields every config of a pack shares (everything that shapes the model, the data or the step count)
PACK_FIELDS = (
    "model", "task", "rank", "targets", "top_layers", "head", "lora_dropout", "steps", "epochs", "batch_size",
    "max_length", "split_seed", "holdout", "max_train", "max_validation", "max_test", "eval_every", "eval_test",
    "device", "precision", "threads", "cache_prefix",
)  # fmt: skip
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, which `train` uses


def _check(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise ConfigError("configs: train_many needs at least one config")
    first = configs[0]
    for cfg in configs[1:]:
        for f in PACK_FIELDS:
            if getattr(cfg, f) != getattr(first, f):
                raise ConfigError(f"{f}: runs trained together must share it ({getattr(first, f)!r} vs "
                                  f"{getattr(cfg, f)!r}); see multi.PACK_FIELDS")  # fmt: skip
    if first.cache_prefix:
        raise ConfigError("cache_prefix: not supported by train_many (train the pack without it)")
    ids = [c.run_id() for c in configs]
    if len(set(ids)) != len(ids):
        raise ConfigError("configs: the same run twice in one pack")


def _aliased_copy(model, head: tuple[str, ...]):
    """A copy of `model` whose weights outside the head share the original's storage (new Parameter objects, so
    requires_grad stays per copy). The runs' own PeftModels only need the base to wrap it: its frozen weights are
    never written (they stay on the CPU, unused in training), so K runs cost no K copies of the base. The head's
    layers are real copies: lora.wrap re-draws them in place."""
    import copy

    def in_head(name: str) -> bool:
        parts = name.split(".")[:-1]
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(p == h or p.endswith("." + h) for p in prefixes for h in head)

    memo = {id(p): torch.nn.Parameter(p.data, requires_grad=p.requires_grad)
            for n, p in model.named_parameters() if not in_head(n)}  # fmt: skip
    return copy.deepcopy(model, memo)


# ----------------------------------------------------------------------------------------------------------
# the public entry point


def train_many(
    configs: Sequence[TrainConfig],
    store: str | Path | RunStore,
    progress: Callable | None = None,
    *,
    workspace: Workspace | None = None,
    overwrite: bool = False,
    annotations: Sequence[dict] | dict | None = None,
) -> list[RunRecord]:
    """Train every config in one process over one frozen base; write each run's folder `store/<run_id>` as
    `train` would. Returns the records in the order of `configs`.

    `annotations`: extra run.json fields, one dict for all runs or one per config. A failure marks every run of
    the pack failed (one-line error) and is re-raised; SIGTERM / SIGINT cancel the whole pack, a run's CANCEL
    file cancels that run only (the others go on). `progress` receives loop.ProgressEvent for the first run.
    """
    configs = list(configs)
    _check(configs)
    store = store if isinstance(store, RunStore) else RunStore(store)
    notes = annotations if isinstance(annotations, (list, tuple)) else [annotations or {}] * len(configs)
    if len(notes) != len(configs):
        raise ConfigError("annotations: give one dict, or one per config")
    paths = [store.path(c.run_id()) for c in configs]
    for p in paths:
        recipe.prepare_out_dir(p, overwrite)
    pack = {"size": len(configs), "run_ids": [c.run_id() for c in configs]}
    writers = [RunWriter(p) for p in paths]
    for k, (cfg, w) in enumerate(zip(configs, writers)):
        w.start(cfg.run_id(), cfg.to_dict(), world_size=1, pack={**pack, "index": k}, **notes[k])
    stop = threading.Event()
    restore = recipe.install_signal_handlers(stop)
    t0 = time.perf_counter()
    try:
        _Pack(configs, writers, workspace or Workspace(), progress, stop, t0).run()
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, (KeyboardInterrupt, recipe.Cancelled)) else "failed"
        for w in writers:
            if w.data.get("status") == "running":
                w.update(timings={"wall_s": time.perf_counter() - t0})
                w.finish(status, error=None if status == "cancelled" else recipe.one_line(exc))
        if status == "failed":
            raise
    finally:
        restore()
        torch.set_flush_denormal(False)
    return [RunRecord.load(p) for p in paths]


# ----------------------------------------------------------------------------------------------------------
# one pack


class _Pack:
    def __init__(self, configs, writers, ws, progress, stop, t0):
        self.configs, self.writers, self.ws, self.progress, self.stop, self.t0 = (
            configs, writers, ws, progress, stop, t0)  # fmt: skip
        self.K = len(configs)
        self.active = [True] * self.K

    # -- set-up: every run as `train` sets it up, then one stacked model ---------------------------------
    def setup(self) -> None:
        cfg = self.configs[0]
        device = recipe.resolve_device(cfg)
        if device.type == "cpu":
            torch.set_num_threads(recipe.cpu_threads(cfg))
            torch.set_flush_denormal(True)  # as `train` does (denormals in AdamW's state)
        else:
            if device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(device)
            import gc

            gc.collect()  # a previous pack's tensors must not count in this pack's peak (as session._place)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        self.device, self.precision = device, recipe.resolve_precision(cfg, device)
        self.autocast = recipe.autocast(self.precision, device)
        task = self.ws.task(cfg)
        if task.task_type != "classification":
            raise ConfigError(f"task: train_many trains classification tasks only, not {task.task_type}")
        weights = torch.bfloat16 if device.type == "cuda" and self.precision == "bf16" else torch.float32
        self.task = task
        self.runs = []  # per run: the PeftModel (on the CPU, used for init, saving and the frozen check), init
        cached, tokenizer, source = self.ws.model(cfg, task, weights, copy=False)
        for cfg_k, w in zip(self.configs, self.writers):
            head = cfg_k.head if cfg_k.head is not None else default_head(cached, task.task_type)
            model = lora.wrap(_aliased_copy(cached, head), cfg_k, task.task_type, head)
            for p in model.parameters():
                if p.requires_grad and p.dtype != torch.float32:
                    p.data = p.data.float()
            adapter = cfg_k.mode != "head_only"  # head_only: the base itself, no adapter/ nor init/
            if adapter:
                model.peft_config[lora.ADAPTER].base_model_name_or_path = source.name
            init = lora.lora_state(model) if adapter else None
            self.runs.append(SimpleNamespace(model=model, init=init, head=head, adapter=adapter))
            recipe.write_split(w.path, task)
            if adapter:
                recipe.save_adapter(model, recipe.init_dir(w.path), cfg_k.save_dtype)
        self.enc = {s: e.to(device) for s, e in self.ws.encoded(cfg, task, tokenizer, source).items()}
        self.total = recipe.total_steps(cfg, len(self.enc["train"]))
        for cfg_k, w, run in zip(self.configs, self.writers, self.runs):
            fields = recipe.setup_fields(cfg_k, run.model, run.head, run.init, source.name, task, device,
                                         self.precision, self.total)  # fmt: skip
            w.update(force=True, **fields)
        stacked, _, _ = self.ws.model(cfg, task, weights)
        self.model = self._stack(stacked.requires_grad_(False)).to(device)
        torch.manual_seed(cfg.seed)  # dropout (if any) draws from here: reproducible per pack, not per run

    def _stack(self, model):
        """Replace the adapted linears and the head linears of `model` (a plain base copy) by stacked ones."""
        params = FlatParams(self.K, self.device)
        self.params, self.slots = params, []  # slots: (name, kind, factor)
        prefix = "base_model.model."
        with_adapter = [r for r in self.runs if r.adapter]
        reference = with_adapter[0].model if with_adapter else self.runs[0].model
        lora_names = [n for n, _ in lora.lora_modules(reference)] if with_adapter else []
        for run in with_adapter[1:]:
            if [n for n, _ in lora.lora_modules(run.model)] != lora_names:
                raise ConfigError("targets: the runs of a pack adapt different modules")
        for name in lora_names:
            mods = [r.model.get_submodule(name) for r in with_adapter]
            A0, B0 = mods[0].lora_A[lora.ADAPTER].weight, mods[0].lora_B[lora.ADAPTER].weight
            a = params.add(f"{name}.A", tuple(A0.shape))
            b = params.add(f"{name}.B", tuple(B0.shape))
            self.slots += [(a, "lora", "A"), (b, "lora", "B")]
            # head_only runs: scaling 0 besides their zero factors (their adapted linears add exactly nothing)
            scaling = torch.tensor([float(r.model.get_submodule(name).scaling[lora.ADAPTER]) if r.adapter else 0.0
                                    for r in self.runs])  # fmt: skip
            base_linear = model.get_submodule(name.removeprefix(prefix))
            if not isinstance(base_linear, torch.nn.Linear):
                raise ConfigError(
                    f"targets: {name} is not a torch Linear; train_many stacks Linear layers only"
                )
            drop = torch.nn.Dropout(self.configs[0].lora_dropout) if self.configs[0].lora_dropout else None
            model.set_submodule(
                name.removeprefix(prefix), LoraStack(base_linear, params, a, b, scaling, drop)
            )
        for hname, trained in self._head_modules(reference):
            for sub, m in trained.named_modules():
                own = list(m.parameters(recurse=False))
                if not own:
                    continue
                if not isinstance(m, torch.nn.Linear):
                    raise ConfigError(f"head: {hname}.{sub} is a {type(m).__name__}; train_many stacks Linear "
                                      "head layers only")  # fmt: skip
                full = f"{hname}.{sub}" if sub else hname
                w = params.add(f"{full}.weight", tuple(m.weight.shape))
                b = params.add(f"{full}.bias", tuple(m.bias.shape)) if m.bias is not None else None
                self.slots += [(w, "head", None)] + ([(b, "head", None)] if b else [])
                model.set_submodule(full.removeprefix(prefix), LinearStack(params, w, b))
        params.finish()
        for k, run in enumerate(self.runs):
            for name, kind, factor in self.slots:
                value = self._peft_param(run.model, name, kind, factor)
                if value is not None:  # None: a head_only run's LoRA slot, left at the zeros `finish` made
                    params.set(k, name, value)
        model.add_module("asymviz_stack", params)
        return model

    def _head_modules(self, model) -> list[tuple[str, torch.nn.Module]]:
        """(name, trained module) of each head module: a PeftModel's modules_to_save copies, or (head_only) the
        base's own head modules."""
        from peft.utils import ModulesToSaveWrapper

        if any(isinstance(m, ModulesToSaveWrapper) for m in model.modules()):
            return [(n, m.modules_to_save[lora.ADAPTER]) for n, m in model.named_modules()
                    if isinstance(m, ModulesToSaveWrapper)]  # fmt: skip
        head = self.runs[0].head
        return [(n, m) for n, m in model.named_modules() if n and lora.is_head_module(n, head)]

    @staticmethod
    def _peft_param(model, slot: str, kind: str, factor: str | None) -> torch.Tensor | None:
        """The parameter of a run's model that slot `slot` mirrors (None: a LoRA slot of a head_only run)."""
        from peft import PeftModel

        if not isinstance(model, PeftModel):  # head_only: the base model itself
            if kind == "lora":
                return None
            path, attr = slot.removeprefix("base_model.model.").rsplit(".", 1)
            return getattr(model.get_submodule(path), attr)
        if kind == "lora":
            m = model.get_submodule(slot.rsplit(".", 1)[0])
            return (m.lora_A if factor == "A" else m.lora_B)[lora.ADAPTER].weight
        path, attr = slot.rsplit(".", 1)
        parts = path.split(".")
        for i in range(1, len(parts) + 1):  # the head's ModulesToSaveWrapper is the first prefix that is one
            wrapper = model.get_submodule(".".join(parts[:i]))
            if hasattr(wrapper, "modules_to_save"):
                trained = wrapper.modules_to_save[lora.ADAPTER]
                rest = ".".join(parts[i:])
                return getattr(trained.get_submodule(rest) if rest else trained, attr)
        raise KeyError(slot)

    def _lr_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, P) base learning rates and (K, P) gradient masks (1 trained, 0 frozen), read off each run's own
        PeftModel: a slot trains when its parameter requires grad, at the lr of its optimiser group in `train`."""
        lr = torch.zeros(self.K, sum(self.params.sizes))
        mask = torch.zeros_like(lr)
        for k, (cfg, run) in enumerate(zip(self.configs, self.runs)):
            group_lr = {id(p): g["lr"] for g in lora.param_groups(run.model, cfg) for p in g["params"]}
            for name, kind, factor in self.slots:
                p = self._peft_param(run.model, name, kind, factor)
                if p is not None and p.requires_grad:
                    cols = self.params.slot(name)
                    mask[k, cols] = 1.0
                    lr[k, cols] = group_lr[id(p)]
        return lr.to(self.device), mask.to(self.device)

    def _schedule(self) -> torch.Tensor:
        """(steps, K, 1) multipliers of each run's lr: `train`'s LambdaLR (linear warm-up, then linear decay)."""
        total, out = self.total, torch.zeros(self.total, self.K)
        for k, cfg in enumerate(self.configs):
            warm = int(round(cfg.warmup * total))
            for s in range(total):
                out[s, k] = (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
        return out.unsqueeze(-1).to(self.device)

    # -- forward ---------------------------------------------------------------------------------------------
    def logits(self, batch: dict) -> torch.Tensor:
        """Logits (K·n, C) of a stacked batch (rows k·n .. (k+1)·n - 1 are run k's)."""
        self.params.bind(torch.bfloat16 if self.precision == "bf16" else None)
        with self.autocast():
            return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def evaluate(self, split: str) -> list[dict[str, float]]:
        """Each run's `loop.evaluate` of `split`: one stacked forward per batch for all runs."""
        enc = self.enc[split]
        eval_batch = 4 * self.configs[0].batch_size
        order = torch.argsort(enc.lengths, descending=True, stable=True)  # as loop.evaluate orders rows
        chunks = []
        self.model.eval()
        with torch.no_grad():
            for idx in order.split(eval_batch):
                batch = enc.batch(idx, idx.to(self.device))
                stacked = {k: v.repeat(self.K, 1) for k, v in batch.items() if k != "labels"}
                chunks.append((idx, self.logits(stacked).view(self.K, len(idx), -1)))
        self.model.train()
        out = []
        for k in range(self.K):
            it = iter(chunks)

            def forward(idx, k=k, it=it):
                want, logits = next(it)
                if not torch.equal(want, idx):
                    raise RuntimeError("multi.evaluate: loop.evaluate changed its batch order")
                return SimpleNamespace(logits=logits[k])

            out.append(recipe.evaluate(forward, enc, self.task.task_type, eval_batch))
        return out

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> None:
        self.setup()
        K, b, total, device = self.K, self.configs[0].batch_size, self.total, self.device
        n = len(self.enc["train"])
        order = torch.cat([batch_order(n, b, total, c.seed) for c in self.configs], dim=1)  # (steps, K·b)
        order_dev = order.to(device)
        lr_base, mask = self._lr_table()
        active = torch.ones(K, 1, device=device)
        sched = self._schedule()
        flat = self.params.flat
        state = AdamWState.zeros(flat, [BETAS] * K, [EPS] * K, [c.weight_decay for c in self.configs],
                                 [c.max_grad_norm for c in self.configs])  # fmt: skip
        labels_all = self.enc["train"].labels
        self.model.train()
        pending: list[tuple[int, torch.Tensor]] = []
        for w in self.writers:
            w.update(force=True, progress={"phase": "train"})
        t_eval, t_train = 0.0, time.perf_counter()
        last = [None] * K
        for step in range(total):
            self._check_cancel(pending, step, active)
            rows = order_dev[step]
            # the mask chosen from the CPU lengths: no GPU read per step
            batch = self.enc["train"].batch(order[step], rows, for_model=self.model)
            logits = self.logits(batch).float()  # (K·b, C)
            losses = torch.nn.functional.cross_entropy(logits, labels_all[rows], reduction="none")
            losses = losses.view(K, b).mean(1)  # (K,) each run's mean loss, as its own HF model computes it
            losses.sum().backward()
            grad = flat.grad.mul_(mask)
            clip_per_run(grad, state.max_grad_norm)
            step_adamw(flat.data, grad, state, lr_base * sched[step] * active)
            flat.grad = None
            pending.append((step + 1, losses.detach()))
            if self.writers[0].due() or step + 1 == total:
                last = self._flush(pending, last)
                rate = b * (step + 1) / max(time.perf_counter() - t_train - t_eval, 1e-9)
                for _, w in self._live():
                    w.log(step + 1, "train", {"examples_per_s": rate})
                    w.update(force=True, progress={"step": step + 1})
            if self.progress is not None:
                self.progress(recipe.ProgressEvent(self.configs[0].run_id(), "train", step + 1, total, last[0],
                                                  K * b * (step + 1) / max(time.perf_counter() - t_train, 1e-9)))  # fmt: skip
            every = self.configs[0].eval_every
            if every and (step + 1) % every == 0 and step + 1 < total:
                t_eval += self._eval_log("validation", step + 1, pending, last)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_train = time.perf_counter() - t_train - t_eval
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        metrics = [{} for _ in range(K)]
        splits = [s for s in ("validation", "test", "heldout") if s in self.enc]
        for split in splits if self.configs[0].eval_test else ("validation",):
            t = time.perf_counter()
            values = self.evaluate(split)
            t_eval += time.perf_counter() - t
            for k, w in self._live():
                w.log(total, split, values[k])
                metrics[k].update({f"{split}_{m}": v for m, v in values[k].items()})
        self._save(metrics, last, t_train, t_eval, peak)

    def _live(self):
        return [(k, w) for k, w in enumerate(self.writers) if self.active[k]]

    def _check_cancel(self, pending, step, active) -> None:
        if self.stop.is_set():
            self._flush(pending, [None] * self.K)
            raise recipe.Cancelled()
        for k, w in self._live():
            if w.cancel_requested:  # this run stops here; the others go on
                self._flush(pending, [None] * self.K)
                self.active[k] = False
                active[k] = 0.0
                w.update(
                    progress={"step": step, "phase": "cancelled"},
                    timings={"wall_s": time.perf_counter() - self.t0},
                )
                w.finish("cancelled")

    def _flush(self, pending, last) -> list:
        if not pending:
            return last
        values = torch.stack([v for _, v in pending]).float().cpu()  # (chunk, K), one sync
        for k, w in self._live():
            for (step, _), v in zip(pending, values[:, k].tolist()):
                w.log(step, "train", {"loss": v})
        pending.clear()
        return values[-1].tolist()

    def _eval_log(self, split, step, pending, last) -> float:
        self._flush(pending, last)
        t = time.perf_counter()
        values = self.evaluate(split)
        for k, w in self._live():
            w.log(step, split, values[k])
        return time.perf_counter() - t

    def _save(self, metrics, last, t_train, t_eval, peak) -> None:
        """Copy each run's trained values back into its PeftModel, save adapter/ and finish run.json."""
        K, b, total = self.K, self.configs[0].batch_size, self.total
        for k, w in self._live():
            cfg, run = self.configs[k], self.runs[k]
            t = time.perf_counter()
            with torch.no_grad():
                for name, kind, factor in self.slots:
                    p = self._peft_param(run.model, name, kind, factor)
                    if p is not None:
                        p.copy_(self.params.get(k, name))
            check = lora.frozen_check(run.model, run.init, cfg.mode) if run.adapter else None
            if run.adapter:
                recipe.save_adapter(run.model, recipe.adapter_dir(w.path), cfg.save_dtype)
            t_save = time.perf_counter() - t
            mem, mem_kind = (peak, "cuda_max_allocated_pack") if peak is not None else recipe.peak_memory_mb(
                self.device)  # fmt: skip
            metrics[k].update(train_loss=last[k], examples_per_s=b * total / max(t_train, 1e-9),
                              peak_memory_mb=mem, peak_memory_kind=mem_kind)  # fmt: skip
            w.update(
                metrics=metrics[k],
                frozen_check=check,
                pack={"examples_per_s": K * b * total / max(t_train, 1e-9)},
                timings={
                    "prefix_s": 0.0,
                    "train_s": t_train,
                    "eval_s": t_eval,
                    "generate_s": 0.0,
                    "save_s": t_save,
                    "wall_s": time.perf_counter() - self.t0,
                },  # fmt: skip
                progress={"step": total, "phase": "done"},
            )
            w.finish("completed")
