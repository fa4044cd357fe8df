"""A run's one adapted module: its input and output-gradient second moments over the run's own training split.

    mom = run_moments(RunRecord.load("cached_runs/minilm_mechanism/<ab run>"))
    mom.inputs    # (d_in, d_in)  Σ x xᵀ over real tokens of the training split, float64
    mom.outputs   # (d_out, d_out) Σ g gᵀ, g = ∂loss/∂(module output), with the run's trained adapter and head

The run's base model, data split and tokenisation are built as the training engine builds them (asymviz.base;
the split is checked against the run's split.json), so the examples are those the run trained on; the moments
come through asymviz.probes.activations (hooks).
Used by the mechanism test (asymviz.mechanism).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import MechanismError

SPLIT_FIELDS = ("task", "split_seed", "holdout", "max_train", "max_validation", "max_test", "max_length")

if TYPE_CHECKING:
    from asymviz.probes.activations import ModuleMoments
    from asymviz.runs import RunRecord


def base_model_of(run: RunRecord, base: str | None = None) -> str:
    """The base model to load for a run: `base` if given; else the run's model when it is a name or a folder
    that exists here; else a folder `models/<its last path part>` next to the run or up to three folders above
    it (a GPU store names its own path, e.g. .gpu_store/models/vit-fmnist, shipped as cached_runs/models/).

    Raises MechanismError naming the missing folder when none is found.
    """
    if base:
        return base
    model = str(run.config.get("model") or run.data.get("model") or "")
    path = Path(model).expanduser()
    looks_like_folder = model.startswith(("/", ".", "~")) or model.count("/") > 1
    if not looks_like_folder or path.exists():
        return model
    for folder in [run.path, *list(run.path.parents)[:3]]:
        candidate = folder / "models" / path.name
        if (candidate / "config.json").exists():
            return str(candidate)
    raise MechanismError(f"{run.run_id}: its base model {model!r} is not here; give the base model (--base)")


def run_moments(run: RunRecord, max_examples: int | None = None, batch_size: int = 32, seed: int = 0,
                progress: Callable[[int, int], None] | None = None, base: str | None = None) -> ModuleMoments:  # fmt: skip
    """Input and output-gradient second moments of a run's one adapted module over its training split.

    The run's base model (`base_model_of`) with its trained adapter and head (PEFT), eval mode, CPU; the run's
    training split and tokenisation as the training engine builds them (load_task with the config's split
    fields, then encode / encode_images), checked against the run's split.json where it has one;
    `max_examples` draws a seeded subset.
    Returns asymviz.probes.activations.ModuleMoments (inputs Σ x xᵀ (d_in, d_in), outputs Σ g gᵀ (d_out, d_out)).
    """
    import torch
    from peft import PeftModel

    from asymviz import runs
    from asymviz.base.batches import encode, encode_images
    from asymviz.base.models import load_model, resolve_model
    from asymviz.base.tasks import load_task
    from asymviz.probes.activations import collect_moments

    adapter = run.load_adapter()
    if len(adapter) != 1:
        raise MechanismError(f"{run.run_id}: adapts {len(adapter)} modules; the mechanism test needs one")
    config = run.config
    missing = [k for k in SPLIT_FIELDS if k not in config]
    if missing:
        raise MechanismError(f"{run.run_id}: run.json's config lacks {', '.join(missing)}")
    task = load_task(
        config["task"], *(config[k] for k in SPLIT_FIELDS[1:-1])
    )  # as the training engine's Workspace
    if (run.path / runs.SPLIT_FILE).exists() and runs.read_split(run.path).get("train") != task.row_ids()[
        "train"
    ]:
        raise MechanismError(f"{run.run_id}: its training split is not the one {config['task']!r} gives here")
    base_model, tokenizer = load_model(resolve_model(base_model_of(run, base)), task.task_type,
                                       num_labels=max(task.num_labels, 2))  # fmt: skip
    if task.images is not None:
        enc = encode_images(task.images["train"], task.split("train")["y"])
    else:
        enc = encode(task.split("train"), tokenizer, task.task_type, config["max_length"])
    model = PeftModel.from_pretrained(base_model, str(run.adapter_path), is_trainable=False).eval()
    rows = torch.arange(len(enc))
    if max_examples is not None and max_examples < len(enc):
        rows = torch.randperm(len(enc), generator=torch.Generator().manual_seed(seed))[:max_examples]
    rows = rows[torch.argsort(enc.lengths[rows], stable=True)]  # similar lengths together: less padding
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    batches = (enc.batch(c) for c in chunks)
    report = (lambda i: progress(i, len(chunks))) if progress else None
    moments = collect_moments(model, adapter.names, batches, output="gradient", progress=report)
    if adapter.names[0] not in moments:
        raise MechanismError(f"{run.run_id}: no activations reached {adapter.names[0]}")
    return moments[adapter.names[0]]
