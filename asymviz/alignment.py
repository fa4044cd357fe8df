"""Where A and B point: A's row space against the module's input subspace, B's column space against its
output(-gradient) subspace, and both against the base weight's own singular subspaces.

    frame = align("runs/x", base="minilm", task="fine_foods", samples=256, k=8)   # loads model + data
    frame = alignment_table(adapter, moments, weights, k=8, init=init)             # from parts

The paper's mechanism (Zhu et al. 2024): A extracts features from the input, B maps them to the output. For
each adapted module, with the input second moment X = Σ x xᵀ and the output-gradient second moment
G = Σ g gᵀ (g = ∂loss/∂output; or Σ y yᵀ of the base layer's outputs without labels) over a data sample
(asymviz.activations):

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import AdapterError, AsymvizError
from asymviz.linalg import parallel_map
from asymviz.similarity import orthonormal_basis, random_baseline, subspace_similarity

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from asymviz.activations import ModuleMoments
    from asymviz.adapters import LoraAdapter, LoraModule

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
    tol = M.shape[0] * torch.finfo(torch.float32).eps * max(float(evals[0]), 0.0)
    keep = min(k, int((evals > tol).sum()))
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
    if not module.finite:
        return []
    Q_A = orthonormal_basis(module, "A")  # (d_in, r')
    Q_B = orthonormal_basis(module, "B")  # (d_out, r')
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
    moments : {module name: ModuleMoments} from asymviz.activations.collect_moments, or None (weight side only)
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
        from asymviz.diagnostics import weight_getter

        get = weight_getter(weights)
    if init is not None:
        missing = [n for n in adapter.names if n not in set(init.names)]
        if missing:
            raise AdapterError(f"{init.source}: the init lacks {len(missing)} module(s), e.g. {missing[0]!r}")

    def per_module(spec):
        from asymviz.base_weights import weight_svd

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
    from asymviz.adapters import load_adapter

    path = Path(path)
    if path.is_dir() and (path / "adapter").is_dir():
        init = load_adapter(path / "init") if (path / "init").is_dir() else None
        return load_adapter(path / "adapter"), init, path / "adapter"
    folder = path if path.is_dir() else None
    return load_adapter(path), None, folder


def align(
    adapter_path: str | Path,
    base: str,
    task: str,
    samples: int = 256,
    k: int = 8,
    batch_size: int = 16,
    max_length: int = 128,
    labels: bool = True,
    seed: int = 0,
    weight_side: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """Alignment table for an adapter (or a run folder, which adds its init) on a sample of a task.

    Parameters
    ----------
    adapter_path : a PEFT adapter folder or a run folder with ``adapter/`` and ``init/``
    base : the base model ("minilm", "smollm2", a folder)
    task : a task name (asymviz.training.data) or a .jsonl[.gz]/.csv file with a ``text`` column and,
        for gradients, a ``label`` column
    samples : examples drawn (seeded) from the task's training split
    k : dimension of the reference subspaces
    labels : False: compare B with the base layer's outputs instead of the loss gradients
    progress : called as progress(stage, done, total)

    Returns
    -------
    The frame of `alignment_table` (same columns).
    """
    from asymviz.activations import collect_moments

    adapter, init, folder = open_adapter(adapter_path)
    examples = load_examples(task, samples, seed)
    model, head, label_names = load_adapted_model(adapter, folder, base, examples)
    use_grad = labels and head != "base" and (head == "causal_lm" or examples.labels is not None)
    if labels and not use_grad:
        log.warning(
            "no loss available (no task head or no labels): B is compared with the base layer's outputs"
        )
    batches = list(
        make_batches(model, base, examples, label_names, head if use_grad else None, batch_size, max_length)
    )
    moments = collect_moments(
        model, adapter.names, batches, output="gradient" if use_grad else "activation",
        progress=(lambda i: progress("data", i, len(batches))) if progress else None,
    )  # fmt: skip
    skipped = [n for n in adapter.names if n not in moments]
    if skipped:
        adapter.problems.append(f"no activations reached {len(skipped)} module(s), e.g. {skipped[0]!r}")
    return alignment_table(
        adapter, moments, model if weight_side else None, k=k, init=init,
        progress=(lambda i: progress("subspaces", i, len(adapter))) if progress else None,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# model and data (the training engine's loaders when they exist)


class Examples:
    """A sample of a task: texts, labels (strings or None) and the label names in id order."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str] | None, label_names: Sequence[str] | None):
        self.texts = list(texts)
        self.labels = list(labels) if labels is not None else None
        self.label_names = list(label_names) if label_names is not None else None

    def __len__(self) -> int:
        return len(self.texts)


def load_examples(task: str, samples: int, seed: int = 0) -> Examples:
    """`samples` examples of a task, drawn with a seed: from asymviz.training.data when it knows the task,
    else from a file (.jsonl, .jsonl.gz, .csv with ``text`` and optional ``label``) or a data set named
    ``asymviz/data/<task>.jsonl.gz``."""
    import pandas as pd

    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    path = Path(task)
    if not path.is_file():
        from_engine = _engine_examples(task, samples, seed)
        if from_engine is not None:
            return from_engine
        path = _named_data(task)
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        frame = pd.read_json(path, lines=True, compression="infer")
    if "text" not in frame.columns:
        raise AsymvizError(f"{path}: needs a 'text' column (has {', '.join(map(str, frame.columns))})")
    names = sorted(frame["label"].astype(str).unique()) if "label" in frame.columns else None  # id order
    if "split" in frame.columns and (frame["split"] == "train").any():
        frame = frame[frame["split"] == "train"]
    frame = frame.sample(n=min(samples, len(frame)), random_state=seed)
    labels = frame["label"].astype(str) if names is not None else None
    return Examples(frame["text"].astype(str), labels, names)


def _named_data(task: str) -> Path:
    here = Path(__file__).resolve().parent / "data"
    for folder in (here, Path("/work/shared/data")):
        candidate = folder / f"{task}.jsonl.gz"
        if candidate.is_file():
            return candidate
    raise AsymvizError(f"unknown task {task!r}: give a task name or a .jsonl/.jsonl.gz/.csv file")


def _engine_examples(task: str, samples: int, seed: int) -> Examples | None:
    try:
        from asymviz.training import data
    except ImportError:
        return None
    fn = getattr(data, "analysis_examples", None)
    return fn(task, samples, seed) if fn is not None else None


def _head_for(adapter: LoraAdapter) -> tuple[str, int | None]:
    """("classification", num_labels) / ("causal_lm", None) / ("base", None) from the adapter's config and
    its saved head (modules_to_save)."""
    task_type = (adapter.config.task_type if adapter.config is not None else None) or ""
    heads = {
        k: v
        for k, v in adapter.extras.items()
        if k.endswith(("classifier.weight", "score.weight", "out_proj.weight"))
    }
    if task_type == "SEQ_CLS" or heads:
        shape = next(iter(heads.values()), None)
        return "classification", (shape[0] if shape else None)
    if task_type == "CAUSAL_LM":
        return "causal_lm", None
    return "base", None


def load_adapted_model(adapter: LoraAdapter, folder: Path | None, base: str, examples: Examples):
    """The base model with its head and the adapter applied through PEFT (eval mode): (model, head,
    label names)."""
    from asymviz.base_weights import load_base_model

    if folder is None:
        raise AdapterError(
            "alignment needs a PEFT adapter folder (adapter_config.json + weights) or a run folder"
        )
    head, num_labels = _head_for(adapter)
    label_names = examples.label_names
    if head == "classification":
        num_labels = num_labels or (len(label_names) if label_names else None)
        if num_labels is None:
            raise AsymvizError("a classification adapter needs a task with labels")
        if label_names and len(label_names) != num_labels:
            raise AsymvizError(
                f"the adapter's head has {num_labels} labels but the task has {len(label_names)}"
            )
    from peft import PeftModel

    model = load_base_model(base, head=head, num_labels=num_labels)
    try:
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise AdapterError(f"cannot apply {folder} to {base!r}: {str(exc).splitlines()[0]}") from None
    return model.eval(), head, label_names


def make_batches(
    model, base: str, examples: Examples, label_names, head: str | None, batch_size: int, max_length: int
):
    """Tokenised batches; with head "classification" they carry label ids, with "causal_lm" the input ids
    as labels (padding -100), with None no labels."""
    import torch

    tokenizer = load_tokenizer(base)
    ids = {name: i for i, name in enumerate(label_names or [])}
    accepted = _forward_args(model)
    for start in range(0, len(examples), batch_size):
        texts = examples.texts[start : start + batch_size]
        batch = dict(
            tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        )
        if "token_type_ids" in batch and "token_type_ids" not in accepted:
            del batch["token_type_ids"]
        if head == "classification":
            batch["labels"] = torch.tensor(
                [ids[label] for label in examples.labels[start : start + batch_size]]
            )
        elif head == "causal_lm":
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        yield batch


def _forward_args(model) -> set[str]:
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(inner.forward).parameters)


def load_tokenizer(base: str):
    """The base model's tokenizer (the training engine's when it exists); pads on the right, with EOS as the
    pad token when it has none."""
    try:
        from asymviz.training import models

        fn = getattr(models, "load_tokenizer", None)
    except ImportError:
        fn = None
    if fn is not None:
        tokenizer = fn(base)
    else:
        from transformers import AutoTokenizer

        from asymviz.base_weights import _dequantised_copy, model_source

        folder, gguf = model_source(base)
        if gguf is not None:
            folder, gguf = _dequantised_copy(folder, gguf)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer
