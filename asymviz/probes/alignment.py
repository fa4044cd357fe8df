"""Where A and B point: A's row space against the module's input subspace, B's column space against its
output(-gradient) subspace, and both against the base weight's own singular subspaces.

    frame = align("runs/x", base="minilm", task="fine_foods", samples=256, k=8)   # loads model + data
    frame = alignment_table(adapter, moments, weights, k=8, init=init)             # from parts

The paper's mechanism (Zhu et al. 2024): A extracts features from the input, B maps them to the output. For
each adapted module, with the input second moment X = Σ x xᵀ and the output-gradient second moment
G = Σ g gᵀ (g = ∂loss/∂output; or Σ y yᵀ of the base layer's outputs without labels) over a data sample
(asymviz.probes.activations):

    side "input":  sim(row space of A, top-k eigenvectors of X)            in R^{d_in}
    side "output": sim(column space of B, top-k eigenvectors of G)         in R^{d_out}
    side "weight": sim(row space of A, W0's top-k right singular vectors)  in R^{d_in}
                   sim(column space of B, W0's top-k left singular vectors) in R^{d_out}

with sim(U1, U2) = ‖U1ᵀU2‖²_F / min(k1, k2) and its random baseline max(k1, k2)/d (asymviz.similarity).
Because that value depends on k, each row also gives a k-free measure: the share of the reference's energy
inside the factor's subspace, tr(QᵀMQ)/tr(M) (M = X, G, W0ᵀW0 or W0W0ᵀ), against k_factor/d for a random
subspace. For a stored run the init's A and B are measured against the same subspaces (source "init"), which
separates what training did from what the init already had; B = 0 at init gives NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import AdapterError, AsymvizError, first_line
from asymviz.linalg import numerical_rank, parallel_map
from asymviz.similarity import orthonormal_basis, random_baseline, subspace_similarity

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from asymviz.adapters import LoraAdapter, LoraModule
    from asymviz.probes.activations import ModuleMoments

log = logging.getLogger(__name__)

ALIGN_COLUMNS = [
    "module", "layer", "kind", "source", "which", "side", "reference", "dim", "k_factor", "k_reference",
    "similarity", "random_baseline", "energy_share", "energy_baseline",
]  # fmt: skip
REFERENCES = {  # (which, side) -> what the factor is compared with
    ("A", "input"): "input second moment",
    ("A", "weight"): "W0 right singular vectors",
    ("B", "weight"): "W0 left singular vectors",
}


# ------------------------------------------------------------------------------------------------------------
# subspace math


def principal_subspace(M: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k eigenvectors (d, k') of a symmetric PSD matrix M (d, d), descending, k' ≤ its numerical rank;
    for a 1-D M (a diagonal, e.g. token counts) the unit vectors of its k largest entries."""
    import torch

    if M.dim() == 1:
        order = torch.argsort(M, descending=True)[:k]
        order = order[M[order] > 0]
        basis = torch.zeros(M.numel(), order.numel(), dtype=torch.float64)
        basis[order, torch.arange(order.numel())] = 1.0
        return basis
    evals, evecs = torch.linalg.eigh(M.double())  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    # moments are sums of float32 products: eigenvalues below d·eps32·λ_max are rounding noise
    keep = min(k, numerical_rank(evals, tuple(M.shape), torch.float32))
    return evecs[:, :keep]


def energy_share(Q: torch.Tensor, M: torch.Tensor) -> float:
    """tr(QᵀMQ) / tr(M): the share of M's energy (Σ of its quadratic form) inside span(Q), Q orthonormal."""
    Q = Q.double()
    if M.dim() == 1:
        total = float(M.sum())
        return float((Q.square().sum(dim=1) * M).sum()) / total if total > 0 else math.nan
    total = float(M.diagonal().sum())
    return float((Q * (M.double() @ Q)).sum()) / total if total > 0 else math.nan


def _row(module, source, which, side, reference, Q, R, energy) -> dict:
    d, k1, k2 = Q.shape[0], Q.shape[1], R.shape[1]
    sim = subspace_similarity(Q.double(), R.double()) if k1 and k2 else math.nan
    return {
        "module": module.name, "layer": module.layer, "kind": module.kind, "source": source, "which": which,
        "side": side, "reference": reference, "dim": d, "k_factor": k1, "k_reference": k2, "similarity": sim,
        "random_baseline": random_baseline(k1, k2, d), "energy_share": energy if k1 else math.nan,
        "energy_baseline": k1 / d if k1 else math.nan,
    }  # fmt: skip


def module_alignment(
    module: LoraModule,
    moments: ModuleMoments | None,
    usv0: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    k: int,
    source: str = "trained",
) -> list[dict]:
    """Rows of the alignment table for one module (see `alignment_table`)."""
    import torch

    if not module.finite:
        return []
    Q_A = torch.from_numpy(orthonormal_basis(module, "A"))  # (d_in, r')
    Q_B = torch.from_numpy(orthonormal_basis(module, "B"))  # (d_out, r')
    rows = []
    if moments is not None:
        X, G = moments.inputs, moments.outputs
        rows.append(_row(module, source, "A", "input", REFERENCES["A", "input"], Q_A, principal_subspace(X, k),
                         energy_share(Q_A, X)))  # fmt: skip
        if G is not None:
            ref = (
                "output gradient second moment"
                if moments.output_kind == "gradient"
                else "output second moment"
            )
            rows.append(
                _row(module, source, "B", "output", ref, Q_B, principal_subspace(G, k), energy_share(Q_B, G))
            )
    if usv0 is not None:
        U0, S0, V0 = (t.double() for t in usv0)
        total = float(S0.square().sum())
        e_A = (
            float(((V0.T @ Q_A.double()).square().sum(dim=1) * S0.square()).sum()) / total
        )  # ‖W0 Q_A‖²/‖W0‖²
        e_B = (
            float(((U0.T @ Q_B.double()).square().sum(dim=1) * S0.square()).sum()) / total
        )  # ‖Q_Bᵀ W0‖²/‖W0‖²
        rows.append(_row(module, source, "A", "weight", REFERENCES["A", "weight"], Q_A, V0[:, :k], e_A))
        rows.append(_row(module, source, "B", "weight", REFERENCES["B", "weight"], Q_B, U0[:, :k], e_B))
    return rows


def alignment_table(
    adapter: LoraAdapter,
    moments: Mapping[str, ModuleMoments] | None,
    weights: Callable | Mapping | None = None,
    k: int = 8,
    init: LoraAdapter | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Alignment of every module's A and B with the data's and the base weight's subspaces.

    Parameters
    ----------
    adapter : the (trained) adapter
    moments : {module name: ModuleMoments} from asymviz.probes.activations.collect_moments, or None (weight side only)
    weights : the base weights (a model name, a loaded model, or {module name: W0 (d_out, d_in)}), or None
        (data sides only)
    k : dimension of the reference subspaces (top-k eigenvectors / singular vectors)
    init : the same adapter at step 0 (a run's ``init/``): adds rows with source "init"

    Returns
    -------
    DataFrame, one row per (source, module, which, side), columns
        module, layer, kind : the module
        source : "trained" or "init"
        which : "A" (row space of A, in R^d_in) or "B" (column space of B, in R^d_out)
        side : "input" (A vs inputs), "output" (B vs output gradients, or outputs without labels) or
            "weight" (A vs W0's right, B vs W0's left singular vectors)
        reference : what the factor is compared with, in words
        dim : the ambient dimension d
        k_factor, k_reference : the two subspaces' dimensions (numerical ranks, at most r and k)
        similarity : ‖Q_factorᵀ Q_referenceᵀ‖²_F / min(k_factor, k_reference) ∈ [0, 1] (NaN if either is empty)
        random_baseline : max(k_factor, k_reference)/d, its value for a random subspace
        energy_share : tr(QᵀMQ)/tr(M), the share of the reference's energy (X, G, W0ᵀW0, W0W0ᵀ) inside the
            factor's subspace
        energy_baseline : k_factor/d, that share for a random subspace
    """
    import pandas as pd

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    get = None
    if weights is not None:
        from asymviz.probes.diagnostics import weight_getter

        get = weight_getter(weights)
    if init is not None:
        missing = [n for n in adapter.names if n not in set(init.names)]
        if missing:
            raise AdapterError(f"{init.source}: the init lacks {len(missing)} module(s), e.g. {missing[0]!r}")

    def per_module(spec):
        from asymviz.probes.base_weights import weight_svd

        mom = moments.get(spec.name) if moments else None
        usv0 = weight_svd(get(spec)) if get is not None else None
        rows = module_alignment(adapter._load(spec), mom, usv0, k, "trained")
        if init is not None:
            rows += module_alignment(init.module(spec.name), mom, usv0, k, "init")
        return rows

    results = parallel_map(per_module, adapter.modules, progress=progress, workers=workers)
    frame = pd.DataFrame([row for rows in results for row in rows], columns=ALIGN_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def alignment_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean over modules of an alignment table, per (source, which, side).

    Returns
    -------
    DataFrame with columns ``source, which, side, modules, similarity, random_baseline, ratio, energy_share,
    energy_baseline`` (ratio = similarity / random_baseline, mean over modules).
    """
    f = frame.assign(ratio=frame["similarity"] / frame["random_baseline"])
    out = (
        f.groupby(["source", "which", "side"], sort=False)
        .agg(
            modules=("module", "nunique"),
            similarity=("similarity", "mean"),
            random_baseline=("random_baseline", "mean"),
            ratio=("ratio", "mean"),
            energy_share=("energy_share", "mean"),
            energy_baseline=("energy_baseline", "mean"),
        )  # fmt: skip
        .reset_index()
    )
    return out


# ------------------------------------------------------------------------------------------------------------
# end to end: adapter + base model + task -> table


def open_adapter(path: str | Path) -> tuple[LoraAdapter, LoraAdapter | None, Path | None]:
    """(adapter, init or None, PEFT folder or None) for an adapter path or a run folder (``adapter/`` +
    ``init/``)."""
    from asymviz import runs
    from asymviz.adapters import load_adapter

    path = Path(path)
    if path.is_dir() and runs.adapter_dir(path).is_dir():
        init = load_adapter(runs.init_dir(path)) if runs.init_dir(path).is_dir() else None
        return load_adapter(runs.adapter_dir(path)), init, runs.adapter_dir(path)
    folder = path if path.is_dir() else None
    return load_adapter(path), None, folder


def run_settings(path: str | Path) -> dict:
    """model, task and max_length of a run folder's run.json (empty for a bare adapter)."""
    from asymviz import runs

    try:
        data = runs.read_run_json(path)
    except runs.RunError:
        return {}
    config = data.get("config") or {}
    return {
        key: config.get(key, data.get(key))
        for key in ("model", "task", "max_length")
        if config.get(key, data.get(key))
    }


def align(
    adapter_path: str | Path,
    base: str | None = None,
    task: str | None = None,
    samples: int = 256,
    k: int = 8,
    batch_size: int = 16,
    max_length: int | None = None,
    labels: bool = True,
    seed: int = 0,
    weight_side: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Alignment table for an adapter (or a run folder, which adds its init) on a sample of a task.

    Parameters
    ----------
    adapter_path : a PEFT adapter folder or a run folder with ``adapter/`` and ``init/``
    base : the base model ("minilm", "smollm2", a folder, a hub id in the local cache); None: the run's
        model, else the adapter config's base_model_name_or_path
    task : a task name (asymviz.base.tasks.TASKS) or a CSV/JSONL file (text + label, or text + answer);
        None: the run's task
    samples : examples drawn (seeded) from the task's training split
    k : dimension of the reference subspaces
    max_length : tokens per example; None: the run's, else 128
    labels : False: compare B with the base layer's outputs instead of the loss gradients
    progress : called as progress(stage, done, total), stage "data" (batches) or "subspaces" (modules)

    Returns
    -------
    The frame of `alignment_table` (same columns).
    """
    from asymviz.probes.activations import collect_moments

    adapter, init, folder = open_adapter(adapter_path)
    settings = run_settings(adapter_path)
    base = base or settings.get("model") or adapter.base_model
    task = task or settings.get("task")
    if not base:
        raise AsymvizError(f"{adapter.source}: no base model named by a run or the adapter config; give one")
    if not task:
        raise AsymvizError(f"{adapter.source}: no task named by a run; give a task name or file")
    max_length = max_length or settings.get("max_length") or 128
    sample = load_sample(task, samples, seed)
    model, tokenizer = load_adapted_model(adapter, folder, base, sample)
    batches = sample_batches(sample, tokenizer, model, batch_size, max_length, with_labels=labels)
    moments = collect_moments(
        model, adapter.names, batches, output="gradient" if labels else "activation",
        progress=(lambda i: progress("data", i, len(batches))) if progress else None,
    )  # fmt: skip
    skipped = [n for n in adapter.names if n not in moments]
    if skipped:
        log.warning("no activations reached %d module(s), e.g. %r", len(skipped), skipped[0])
    for line in adapter.problems:
        log.warning("%s", line)
    return alignment_table(
        adapter, moments, model if weight_side else None, k=k, init=init,
        progress=(lambda i: progress("subspaces", i, len(adapter))) if progress else None,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# model and data, through the training engine's loaders (the same tokenisation and label order as training)


@dataclass(frozen=True)
class TaskSample:
    """A seeded sample of a task's training split."""

    name: str
    task_type: str  # "classification" | "causal_lm"
    labels: tuple[str, ...]  # class names in id order (the training engine's); () for causal LM
    frame: pd.DataFrame  # columns text + y (classification) or text + answer (causal LM)

    def __len__(self) -> int:
        return len(self.frame)


def load_sample(task: str, samples: int, seed: int = 0) -> TaskSample:
    """`samples` examples of the task's training split, drawn with `seed` (asymviz.base.tasks.load_task)."""
    from asymviz.base.tasks import load_task

    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    data = load_task(task)
    frame = data.train.sample(n=min(samples, len(data.train)), random_state=seed).reset_index(drop=True)
    return TaskSample(data.name, data.task_type, data.labels, frame)


def _saved_head(adapter: LoraAdapter) -> tuple[int, ...] | None:
    """Shape of the classifier saved with the adapter (modules_to_save), or None."""
    for key, shape in adapter.extras.items():
        if key.endswith(("classifier.weight", "score.weight", "classifier.out_proj.weight")):
            return shape
    return None


def load_adapted_model(adapter: LoraAdapter, folder: Path | None, base: str, sample: TaskSample):
    """The base model with the task's head and the adapter applied through PEFT, in eval mode, and its
    tokenizer: (model, tokenizer)."""
    from asymviz.base.models import load_model, resolve_model

    if folder is None:
        raise AdapterError(
            "alignment needs a PEFT adapter folder (adapter_config.json + weights) or a run folder"
        )
    num_labels = max(len(sample.labels), 2)
    if sample.task_type == "classification":
        head = _saved_head(adapter)
        if head is None:
            log.warning("the adapter carries no trained classifier: output gradients come from a random head")
        elif head[0] != len(sample.labels):
            raise AdapterError(
                f"{adapter.source}: its classifier has {head[0]} outputs but task {sample.name!r} has "
                f"{len(sample.labels)} labels"
            )
    from peft import PeftModel

    model, tokenizer = load_model(resolve_model(base), sample.task_type, num_labels=num_labels)
    try:
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise AdapterError(f"cannot apply {folder} to {base!r}: {first_line(exc)}") from None
    return model.eval(), tokenizer


def sample_batches(
    sample: TaskSample, tokenizer, model, batch_size: int, max_length: int, with_labels: bool = True
):
    """Batches tokenised as in training (asymviz.base.batches.encode: classification labels, or the
    causal-LM prompt + answer with the loss on the answer), examples of similar length together (sums over
    tokens do not depend on the order; less padding is less compute)."""
    import torch

    from asymviz.base.batches import encode

    enc = encode(sample.frame, tokenizer, sample.task_type, max_length)
    order = torch.argsort(enc.mask.sum(1), stable=True)
    batches = []
    for start in range(0, len(enc), batch_size):
        batch = enc.batch(order[start : start + batch_size])
        if not with_labels:
            batch.pop("labels")
        batches.append(batch)
    return batches
