"""Fine-tune with LoRA three ways (ab, b_only, a_only) against the head_only control, and store every run.

    from asymviz.training import TrainConfig, train, sweep, expand, preset, demo
    record = train(TrainConfig(mode="b_only", steps=200), "runs/b_only")    # -> asymviz.runs.RunRecord
    frame = sweep(expand(TrainConfig(), seeds=[0, 1, 2], modes=MODES), "runs")

Modules, in reading order: config (TrainConfig, presets), lora (the modes: wrapping, init, freezing, optimiser
groups), runtime (device, precision, processes), workspace (what runs in one process share), prefix (the
frozen-prefix cache), session (a run's setup), evaluation, loop (the recipe: train), lr_grid and plan (what a
sweep runs), sweep and workers (how it runs), vit. Tasks and base models live in asymviz.base; the CLI in
asymviz.cli.training.
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
    "expand": "asymviz.training.plan",
    "demo": "asymviz.training.sweep",
    "comparison_table": "asymviz.training.sweep",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asymviz.training' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
