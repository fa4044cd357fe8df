"""What packed training (multi.py) shares with the single-run recipe, named in one place.

The single-run recipe is being split (branch `training`: loop.py -> runtime.py, session.py, evaluation.py, and
the folder layout into runs.py). multi.py calls the recipe's own helpers -- the same save, split, evaluation and
device code a lone run uses -- through this module only, which finds them in either layout. Once the split has
landed, the `except ImportError` branch can go.
"""

from __future__ import annotations

from pathlib import Path

from asymviz.training.loop import Cancelled, ProgressEvent  # noqa: F401  (re-exported for multi.py)
from asymviz.training.loop import _install_signal_handlers as install_signal_handlers  # noqa: F401
from asymviz.training.loop import _one_line as one_line  # noqa: F401
from asymviz.training.loop import _prepare_out_dir as prepare_out_dir  # noqa: F401

try:  # the split recipe
    from asymviz import runs as _runs
    from asymviz.training.evaluation import evaluate  # noqa: F401
    from asymviz.training.runtime import (  # noqa: F401  # noqa: F401
        autocast,
        cpu_threads,
        device_name,
        peak_memory_mb,
        resolve_device,  # noqa: F401
        resolve_precision,
        total_steps,
        versions,
    )
    from asymviz.training.session import save_adapter  # noqa: F401

    SPLIT = True

    def write_split(path: Path, task) -> None:
        _runs.write_split(path, task.row_ids())

    def init_dir(path: Path) -> Path:
        return _runs.init_dir(path)

    def adapter_dir(path: Path) -> Path:
        return _runs.adapter_dir(path)

except ImportError:  # loop.py holds everything
    from asymviz.training.loop import _autocast as autocast  # noqa: F401
    from asymviz.training.loop import _save_adapter as save_adapter  # noqa: F401
    from asymviz.training.loop import _total_steps as total_steps  # noqa: F401
    from asymviz.training.loop import _write_split as write_split  # noqa: F401
    from asymviz.training.loop import (  # noqa: F401
        cpu_threads,
        evaluate,
        peak_memory_mb,
        resolve_device,
        resolve_precision,
        versions,
    )

    SPLIT = False

    def device_name(device) -> str:
        import torch

        return str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"

    def init_dir(path: Path) -> Path:
        return Path(path) / "init"

    def adapter_dir(path: Path) -> Path:
        return Path(path) / "adapter"


def setup_fields(config, model, head: tuple[str, ...], init: dict, source_name: str, task, device, precision,
                 total: int) -> dict:  # fmt: skip
    """The run.json fields a lone run of `config` writes once it is set up (loop / session `setup`)."""
    import torch

    from asymviz.training import lora

    pc = model.peft_config[lora.ADAPTER]
    fields = dict(
        device=device_name(device),
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        precision=precision, versions=versions(), data=task.record(), base_model=source_name,
        targets=sorted(pc.target_modules), layers=pc.layers_to_transform, head_modules=list(head),
        head_trained=bool(head), init_seed=config.effective_init_seed,
        saved_dtype={"fp16": "float16", "fp32": "float32"}[config.save_dtype],
        trainable_params=lora.trainable_counts(model),
    )  # fmt: skip
    if SPLIT:  # fields the split recipe adds (session.setup)
        from asymviz.modes import frozen_factor

        factor = frozen_factor(config.mode)
        fields.update(
            has_adapter=True,
            learning_rates={
                "lora_A": config.lr,
                "lora_B": config.lr * config.lr_ratio,
                "head": config.effective_head_lr if head else None,
            },  # fmt: skip
            frozen_norms=lora.factor_norms(init, factor) if factor is not None else None,
        )
    fields["progress"] = {"step": 0, "total_steps": total, "phase": "load"}
    return fields
