"""Fine-tune with LoRA three ways (ab, b_only, a_only) and store every run.

    from asymviz.training import TrainConfig, train, sweep, expand, preset, demo
    record = train(TrainConfig(mode="b_only", steps=200), "runs/b_only")    # -> asymviz.runs.RunRecord
    frame = sweep(expand(TrainConfig(), seeds=[0, 1, 2], modes=MODES), "runs")

Modules, in reading order: config (TrainConfig, presets), data (tasks and splits), models (offline base models),
lora (PEFT wrapping, the three modes' init and freezing), batches (tokenised splits), prefix (the frozen-prefix
cache), workspace (what runs in one process share), loop (train), sweep (sweep, demo), commands (CLI).
Importing this package is cheap: names load their module (and torch) on first use.
"""

from importlib import import_module

_EXPORTS = {
    "TrainConfig": "asymviz.training.config",
    "MODES": "asymviz.training.config",
    "A_INITS": "asymviz.training.config",
    "preset": "asymviz.training.config",
    "PRESETS": "asymviz.training.config",
    "TASKS": "asymviz.base.tasks",
    "load_task": "asymviz.base.tasks",
    "resolve_model": "asymviz.base.models",
    "load_model": "asymviz.base.models",
    "train": "asymviz.training.loop",
    "evaluate": "asymviz.training.loop",
    "ProgressEvent": "asymviz.training.loop",
    "Workspace": "asymviz.training.workspace",
    "sweep": "asymviz.training.sweep",
    "expand": "asymviz.training.sweep",
    "demo": "asymviz.training.sweep",
    "comparison_table": "asymviz.training.sweep",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asymviz.training' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
