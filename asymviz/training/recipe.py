"""What packed training (multi.py) shares with the single-run recipe, named in one place.

multi.py calls the recipe's own helpers -- the same save, split, evaluation and device code a lone run uses
(loop.py, runtime.py, session.py, evaluation.py, runs.py) -- through this module only, so a move in the recipe
is followed here, once. `setup_fields` mirrors the run.json fields session.setup writes (tests/training/
test_multi.py checks that a packed run.json has exactly a lone run's fields).
"""

from __future__ import annotations

from pathlib import Path

from asymviz import runs as _runs
from asymviz.training.evaluation import evaluate  # noqa: F401
from asymviz.training.loop import Cancelled, ProgressEvent, install_signal_handlers, one_line, prepare_out_dir  # noqa: F401  (re-exported for multi.py)  # noqa: F401
from asymviz.training.runtime import (  # noqa: F401
    autocast,
    cpu_threads,
    device_name,
    peak_memory_mb,
    resolve_device,
    resolve_precision,
    total_steps,
    versions,
)
from asymviz.training.session import save_adapter  # noqa: F401


def write_split(path: Path, task) -> None:
    _runs.write_split(path, task.row_ids())


def init_dir(path: Path) -> Path:
    return _runs.init_dir(path)


def adapter_dir(path: Path) -> Path:
    return _runs.adapter_dir(path)


def setup_fields(config, model, head: tuple[str, ...], init: dict, source_name: str, task, device, precision,
                 total: int) -> dict:  # fmt: skip
    """The run.json fields a lone run of `config` writes once it is set up (loop / session `setup`)."""
    import torch

    from asymviz.modes import frozen_factor
    from asymviz.training import lora

    factor = frozen_factor(config.mode)
    if config.mode == "head_only":  # as session.setup writes it: no adapter, the head alone at its lr
        return dict(
            device=device_name(device),
            threads=torch.get_num_threads() if device.type == "cpu" else None,
            precision=precision, versions=versions(), data=task.record(), split_summary=task.split_summary(),
            base_model=source_name, targets=[], layers=None, head_modules=list(head), head_trained=bool(head),
            has_adapter=False, init_seed=config.effective_init_seed,
            saved_dtype={"fp16": "float16", "fp32": "float32"}[config.save_dtype],
            trainable_params=lora.trainable_counts(model),
            learning_rates={"lora_A": None, "lora_B": None, "head": config.effective_head_lr if head else None},
            frozen_norms=None,
            progress={"step": 0, "total_steps": total, "phase": "load"},
        )  # fmt: skip
    pc = model.peft_config[lora.ADAPTER]
    return dict(
        device=device_name(device),
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        precision=precision, versions=versions(), data=task.record(), split_summary=task.split_summary(),
        base_model=source_name,
        targets=sorted(pc.target_modules), layers=pc.layers_to_transform, head_modules=list(head),
        head_trained=bool(head), has_adapter=True, init_seed=config.effective_init_seed,
        saved_dtype={"fp16": "float16", "fp32": "float32"}[config.save_dtype],
        trainable_params=lora.trainable_counts(model),
        learning_rates={"lora_A": config.lr, "lora_B": config.lr * config.lr_ratio,
                        "head": config.effective_head_lr if head else None},
        frozen_norms=lora.factor_norms(init, factor) if factor is not None else None,
        progress={"step": 0, "total_steps": total, "phase": "load"},
    )  # fmt: skip
