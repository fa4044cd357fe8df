"""Where a run computes: device, precision, CPU threads, data-parallel processes, and what it reports about them.

    device = resolve_device(config)                 # torch.device; "auto": CUDA when present
    precision = resolve_precision(config, device)   # "bf16" (autocast) or "fp32"
    dist = Dist(config)                             # one process, or one of WORLD_SIZE under accelerate/torchrun

Nothing here changes what a run learns; it decides where and in which float format the same steps run.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource

import torch

from asymviz.errors import ConfigError
from asymviz.training.config import TrainConfig


def resolve_device(config: TrainConfig) -> torch.device:
    """The configured device; "auto" is CUDA when torch sees one, else the CPU. ConfigError: CUDA asked, none."""
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {config.device} asked for, but this torch sees no CUDA device")
    return torch.device(config.device)


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    """ "bf16" (autocast) or "fp32"; "auto" is bf16 on CUDA and fp32 on a CPU."""
    if config.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return config.precision


def base_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype of the frozen base weights: bf16 on a GPU under bf16 autocast (half the memory), else fp32."""
    return torch.bfloat16 if device.type == "cuda" and precision == "bf16" else torch.float32


def autocast(precision: str, device: torch.device):
    """A factory of autocast contexts: bf16 autocast, or a null context for fp32."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def cpu_threads(config: TrainConfig) -> int:
    """config.threads, else the cores this process may run on."""
    if config.threads:
        return config.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_cpu(config: TrainConfig) -> None:
    """CPU threads, and denormal floats flushed to zero: x86 computes with them (|x| < 1.2e-38) 10-100x slower;
    they appear in AdamW's state and made mode ab 6x slower. Flushing changes nothing measurable (train()
    restores the default)."""
    torch.set_num_threads(cpu_threads(config))
    torch.set_flush_denormal(True)


def total_steps(config: TrainConfig, n_train: int, world: int = 1) -> int:
    """config.steps, else ceil(epochs (default 1) · n_train / (batch_size · world))."""
    if config.steps:
        return config.steps
    return max(1, math.ceil((config.epochs or 1.0) * n_train / (config.batch_size * world)))


class Dist:
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
        """DDP around the model under data parallelism, else the model itself."""
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


def versions() -> dict[str, str]:
    """The versions that make a run reproducible: python, torch, transformers, peft, asymviz."""
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
    """(MiB, kind): the CUDA allocator's peak on a GPU, the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if platform.system() == "Darwin" else rss / 2**10), "process_max_rss"


def device_name(device: torch.device) -> str:
    return str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
