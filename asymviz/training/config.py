"""TrainConfig: every knob of one fine-tuning run, with its default and its check, in one place.

    cfg = TrainConfig(model="minilm", task="fine_foods", mode="b_only", rank=8, steps=200)
    cfgs = preset("demo")                 # the three modes of the CPU demo, each with its own tuned lr

Modes (the paper's notation, Zhu et al. 2024, in brackets); ΔW = (alpha / rank) · B @ A:
- `ab`     (A&B):     PEFT's default init (A Kaiming-uniform, B = 0), both trained.
- `b_only` (B̂ A_rand): A random and frozen (`a_init`), B = 0 and trained.
- `a_only` (B_rand Â): B random with orthonormal columns and frozen, A = 0 and trained.
- `head_only` (the control): no adapter at all; only the head trains (lr: `head_lr`, else `lr`).
In every mode the task head (`head`, e.g. BERT's pooler + classifier) is trained in full, as in the paper, at its
own learning rate `head_lr` (None: `lr`, the old behaviour); a sweep with an lr grid chooses it once per task on
the head_only control's grid and gives it to every mode (asymviz.training.plan). `lr_ratio` is LoRA+'s λ
(Hayou et al. 2024, PEFT's create_loraplus_optimizer): lr_B = λ · lr_A, mode ab only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from asymviz.errors import ConfigError
from asymviz.modes import LORA_MODES as MODES
from asymviz.modes import MODES as ALL_MODES
from asymviz.modes import Mode

A_INITS = ("orthogonal", "gaussian", "kaiming")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
SAVE_DTYPES = ("fp32", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """One run. Field comments are the help text; `__post_init__` names the field that is wrong."""

    # what to train
    model: str = "minilm"  # "minilm", "smollm2", a Hugging Face id or a local model folder
    task: str = "fine_foods"  # a task name (asymviz.base.tasks.TASKS) or a CSV/JSONL file (text,label|answer)
    mode: Mode = "ab"  # "ab" | "b_only" | "a_only" | "head_only" (see the module docstring)
    a_init: str = (
        "orthogonal"  # b_only: frozen A drawn as "orthogonal" (orthonormal rows), "gaussian", "kaiming"
    )
    # the adapter
    rank: int = 8  # r
    alpha: float = 16.0  # lora_alpha; scaling = alpha / r
    targets: tuple[str, ...] | None = None  # module names to adapt; None: PEFT's default for the model type
    top_layers: int | None = None  # adapt only the top N transformer layers (None: all layers)
    head: tuple[str, ...] | None = (
        None  # modules trained in full in every mode; None: the model's default head
    )
    lora_dropout: float = 0.0  # dropout on the LoRA input
    # the budget
    steps: int | None = None  # optimiser steps; exclusive with epochs (neither: one epoch)
    epochs: float | None = None  # passes over the training split
    batch_size: int = 8  # examples per step (per process under data parallelism)
    max_length: int = 64  # tokens per example (longer inputs are truncated)
    # the optimiser: AdamW, linear warm-up then linear decay to 0, gradient-norm clipping (as HF Trainer)
    lr: float = 1e-3  # learning rate of the LoRA factors
    head_lr: float | None = (
        None  # learning rate of the head (None: same as lr); equal across modes in a sweep
    )
    lr_ratio: float = 1.0  # LoRA+: lr of B = lr_ratio * lr (of A); mode ab only (1: plain LoRA)
    weight_decay: float = 0.0
    warmup: float = 0.06  # fraction of the steps spent warming up
    max_grad_norm: float | None = (
        1.0  # clip the gradient norm of all trainable parameters (None: no clipping)
    )
    # data
    seed: int = 0  # batch order and dropout, and the initialisation unless init_seed is set
    init_seed: int | None = None  # every parameter init (LoRA A / B, the new head); None: seed. Runs with
    # different seeds and one init_seed share their init ("5 seeds, one init"); init_seed == seed reads as None
    split_seed: int = 0  # the train/validation/test split (kept fixed across seeds)
    holdout: float = 0.1  # validation fraction (and test fraction when the data has no test split)
    max_train: int | None = None  # use a seeded subset of the training split
    max_validation: int | None = None  # evaluate on a seeded subset of the validation split
    max_test: int | None = None  # evaluate on a seeded subset of the test split (None: all of it)
    eval_every: int | None = None  # steps between validation evaluations (None: only at the end)
    eval_test: bool = True  # evaluate the test split at the end (tuning runs: False, only validation guides)
    # where and how
    device: str = "auto"  # "auto" (CUDA if present, else CPU), "cpu", "cuda" or "cuda:N"
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16" (autocast)
    threads: int | None = None  # CPU threads (None: all cores)
    cache_prefix: bool = False  # with top_layers: run the frozen layers below them once per example and reuse
    # their outputs (they run in eval mode, so without dropout); BERT-style encoders only
    # what is kept
    save_dtype: str = "fp32"  # "fp32" | "fp16": dtype of the saved adapter/ and init/ (fp16: half the size)
    generate: int = 5  # causal LM: greedy answers to this many fixed test questions (generations.jsonl)
    generate_tokens: int = 40  # causal LM: new tokens per generated answer

    def __post_init__(self) -> None:
        for name in ("targets", "head"):  # accept "query,value" and lists; store tuples (hashable, frozen)
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            elif value is not None:
                value = tuple(value)
            if value is not None and not value:
                raise ConfigError(f"{name}: give at least one module name (or leave it unset)")
            object.__setattr__(self, name, value)
        _choice("mode", self.mode, ALL_MODES)
        _choice("a_init", self.a_init, A_INITS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("save_dtype", self.save_dtype, SAVE_DTYPES)
        if not (self.device in DEVICES or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not self.model:
            raise ConfigError("model: must not be empty")
        if not self.task:
            raise ConfigError("task: must not be empty")
        _positive_int("rank", self.rank)
        _positive_int("batch_size", self.batch_size)
        if not isinstance(self.max_length, int) or self.max_length < 4:
            raise ConfigError(f"max_length: must be an integer >= 4, got {self.max_length!r}")
        for name in (
            "top_layers",
            "max_train",
            "max_validation",
            "max_test",
            "eval_every",
            "threads",
            "steps",
        ):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.init_seed is not None:
            if not isinstance(self.init_seed, int) or isinstance(self.init_seed, bool) or self.init_seed < 0:
                raise ConfigError(f"init_seed: must be an integer >= 0 (or unset), got {self.init_seed!r}")
            if self.init_seed == self.seed:  # the same run as without it: one run id for both
                object.__setattr__(self, "init_seed", None)
        for name in ("generate", "generate_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name}: must be a non-negative integer, got {value!r}")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("steps: give either steps or epochs, not both")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"epochs: must be > 0, got {self.epochs}")
        for name in ("alpha", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.head_lr is not None and not self.head_lr > 0:
            raise ConfigError(f"head_lr: must be > 0, got {self.head_lr}")
        if not (isinstance(self.lr_ratio, (int, float)) and self.lr_ratio > 0):
            raise ConfigError(f"lr_ratio: must be > 0, got {self.lr_ratio!r}")
        if self.lr_ratio != 1.0 and self.mode != "ab":
            raise ConfigError(f"lr_ratio: LoRA+ needs both factors trained (mode ab), got mode {self.mode}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"weight_decay: must be in [0, 1), got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm: must be > 0 (or unset), got {self.max_grad_norm}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup: must be a fraction in [0, 1), got {self.warmup}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if not 0 < self.holdout < 0.5:
            raise ConfigError(f"holdout: must be in (0, 0.5), got {self.holdout}")
        if self.cache_prefix and self.top_layers is None:
            raise ConfigError("cache_prefix: needs top_layers (the layers below them must be frozen)")

    # ------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys are an error that names them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a TrainConfig field")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def effective_head_lr(self) -> float:
        """The head's learning rate: head_lr, or lr when it is unset (in mode head_only lr is the head's)."""
        return self.lr if self.head_lr is None else self.head_lr

    @property
    def effective_init_seed(self) -> int:
        """The seed of every parameter init: init_seed, or seed when it is unset."""
        return self.seed if self.init_seed is None else self.init_seed

    def key(self) -> str:
        """A short stable hash of everything that changes the result (not device, threads, generations).

        Fields added after the first release count only when they differ from their default, so the run ids
        of older configs do not change."""
        data = self.to_dict()
        for k in ("device", "threads", "generate", "generate_tokens"):
            data.pop(k)
        for k, default in _LATER_FIELDS.items():
            if data[k] == default:
                data.pop(k)
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]

    def run_id(self) -> str:
        """Folder name for this run in a store: readable prefix + config hash, the same on every machine."""
        model = self.model.rstrip("/").split("/")[-1].replace(".", "-")[:24]
        task = self.task.rstrip("/").split("/")[-1].split(".")[0][:24]
        init = "" if self.init_seed is None else f"_i{self.init_seed}"
        return f"{task}_{model}_{self.mode}_r{self.rank}_s{self.seed}{init}_{self.key()}"


_LATER_FIELDS = {
    "init_seed": None,
    "save_dtype": "fp32",
    "lr_ratio": 1.0,
}  # left out of key() at these values


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16, where bf16 matrix products run about twice as fast as fp32
    (elsewhere bf16 is emulated and slower). Reads /proc/cpuinfo; False where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------------------------------------
# presets: small experiments, each a tuple of configs

# The CPU demo: minilm on fine_foods, the three modes, one seed, <= 60 s wall on 2 cores (bench/bench_train.py).
# LoRA (r=8) sits on every linear layer of the top 2 of MiniLM's 6 layers; the embeddings and the 4 layers below
# run once per example and their outputs are shared by the three runs (cache_prefix), and the last layer is
# computed for [CLS] only (all the classifier reads). 250 steps of 8 reviews (2000 of the 3602 training reviews,
# 64 tokens), gradient clipping at 1, bf16 autocast on CPUs that do bf16 natively (AVX512-BF16 / AMX; fp32
# elsewhere). Learning rates per mode were chosen on the validation split with bench/tune_demo.py: the best mean
# validation accuracy (398 reviews) over seeds 0 and 1 in the grid {1.5e-3, 2e-3, 3e-3} (see its docstring).
DEMO = TrainConfig(
    model="minilm",
    task="fine_foods",
    rank=8,
    alpha=16.0,
    targets=("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
    top_layers=2,
    head=("pooler", "classifier"),
    steps=250,
    batch_size=8,
    max_length=64,
    max_validation=200,
    cache_prefix=True,
    device="cpu",
)
DEMO_LR = {"ab": 2e-3, "b_only": 3e-3, "a_only": 3e-3}
# The head's lr, the same in every mode of the demo (and the lr of its head_only control): 2e-3, the lowest of the
# per-mode lrs above (bench/tune_demo.py tuned head and LoRA together; before the head had its own lr, b_only's
# and a_only's heads trained at 3e-3 and ab's at 2e-3).
DEMO_HEAD_LR = 2e-3


def preset(name: str, **overrides: Any) -> tuple[TrainConfig, ...]:
    """The configs of a named preset, with `overrides` applied to each (e.g. seed=1, model=...).

    - `demo`: the CPU demo, modes ab / b_only / a_only with per-mode LoRA learning rates (DEMO_LR), and the
      head_only control; the head trains at DEMO_HEAD_LR in every mode.
    - `equal_budget`: ab at rank r against b_only and a_only at rank 2r (the same number of trainable LoRA
      parameters when d_in = d_out), on the demo's setting; `rank` in overrides sets r.
    - `paper`: LoRA on every layer's query and value, 3 epochs, batch 32 x 128 (the GPU setting).
    """
    if name == "demo":
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
        configs = tuple(
            DEMO.replace(mode=m, lr=DEMO_LR[m], head_lr=DEMO_HEAD_LR, precision=precision) for m in MODES
        ) + (DEMO.replace(mode="head_only", lr=DEMO_HEAD_LR, precision=precision),)
    elif name == "equal_budget":
        r = overrides.pop("rank", DEMO.rank)
        configs = (
            DEMO.replace(mode="ab", rank=r, alpha=2.0 * r, lr=DEMO_LR["ab"], head_lr=DEMO_HEAD_LR),
            DEMO.replace(
                mode="b_only", rank=2 * r, alpha=4.0 * r, lr=DEMO_LR["b_only"], head_lr=DEMO_HEAD_LR
            ),
            DEMO.replace(
                mode="a_only", rank=2 * r, alpha=4.0 * r, lr=DEMO_LR["a_only"], head_lr=DEMO_HEAD_LR
            ),
        )
    elif name == "paper":
        base = TrainConfig(targets=("query", "value"), epochs=3.0, batch_size=32, max_length=128, lr=5e-4)
        configs = tuple(base.replace(mode=m) for m in (*MODES, "head_only"))
    else:
        raise ConfigError(f"preset: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return tuple(c.replace(**overrides) for c in configs) if overrides else configs


PRESETS = ("demo", "equal_budget", "paper")
