"""A linear-probe baseline: logistic regression on a frozen base model's pooled features.

    frame = linear_probe("minilm", "fine_foods")    # one row: model, task, features, C, ..., test_macro_f1

What a LoRA fine-tune has to beat besides the majority class: how well a linear classifier reads the task off the
frozen model. Features (N, d) per split come from the base model without any head (`model.base_model`):

- ``mean`` (default): the last hidden state averaged over real tokens (the attention mask), the pooling that
  sentence-transformers' all-MiniLM-L6-v2 was trained for;
- ``pooler``: BERT's pooler output, tanh(W·h_[CLS] + b), exactly what a BertForSequenceClassification head
  (and so asymviz's fine-tunes of MiniLM) feeds its classifier. Models without a pooler refuse it.

The classifier is scikit-learn's ``StandardScaler`` (fit on train) + ``LogisticRegression`` (L2, lbfgs,
multinomial for more than two classes). Its inverse regularisation C is chosen on the VALIDATION split from
`C_GRID` (10^-3 … 10^2, a decade apart; the best validation accuracy wins, ties go to the smaller C, i.e. the
simpler model); the chosen classifier (fit on train only) is then scored once on test. The test split never
takes part in the choice (`select_c` is not given it).

Features are cached per (model, task, split rows, features, max_length) as .npz under
`$ASYMVIZ_CACHE/linear_probe/` (asymviz.base.models.cache_dir): the key hashes the model folder's config and
weight files (name, size, mtime), the data file (size, mtime), the split's row ids and the torch/transformers
versions, and files are written atomically, so a stale or half-written cache is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FEATURES = ("mean", "pooler")
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
COLUMNS = ("model", "task", "features", "C", "validation_accuracy", "test_accuracy", "test_macro_f1",
           "n_train", "n_validation", "n_test", "seconds", "cached")  # fmt: skip
SPLITS = ("train", "validation", "test")


def pooled_features(
    model,
    tokenizer,
    texts: Sequence[str],
    features: str = "mean",
    max_length: int = 128,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, d) float32 features of `texts` from the frozen `model` (a transformers model; its `base_model` is
    run, no head). Texts are batched by length (less padding); rows come back in the order given.

    Raises ConfigError for an unknown `features`, or ``pooler`` on a model without a pooler.
    """
    import numpy as np
    import torch

    if features not in FEATURES:
        raise ConfigError(f"features: choose one of {', '.join(FEATURES)}, got {features!r}")
    body = getattr(model, "base_model", model)
    if features == "pooler" and getattr(body, "pooler", None) is None:
        raise ConfigError("features: this model has no pooler; use --features mean")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.zeros((len(texts), body.config.hidden_size), dtype=np.float32)
    body.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = int(lengths[idx].max())
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for i, j in enumerate(idx):  # right padding
                ids[i, : lengths[j]] = torch.tensor(enc["input_ids"][j])
                mask[i, : lengths[j]] = 1
            result = body(input_ids=ids, attention_mask=mask)
            if features == "pooler":
                pooled = result.pooler_output  # (b, d)
            else:
                h = result.last_hidden_state  # (b, L, d)
                m = mask.unsqueeze(-1).to(h.dtype)  # (b, L, 1)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            out[idx] = pooled.float().numpy()
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
    return out


def classifier(C: float):
    """The probe: StandardScaler + L2 logistic regression with inverse regularisation C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def select_c(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    grid: Sequence[float] = C_GRID,
) -> tuple[float, pd.DataFrame]:
    """Choose C on the validation split: fit on train (x (N, d), y (N,)) for every C of `grid`, keep the best
    validation accuracy (ties: the smallest C). Returns (C, frame with columns C, validation_accuracy)."""
    import pandas as pd

    if not grid or any(c <= 0 for c in grid):
        raise ConfigError(f"grid: needs positive values of C, got {list(grid)}")
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1):  # small fits: BLAS threads only spin (50x slower on a loaded machine)
        for C in sorted(grid):
            fitted = classifier(C).fit(*train)
            rows.append({"C": float(C), "validation_accuracy": float(fitted.score(*validation))})
    table = pd.DataFrame(rows)
    best = table.loc[table["validation_accuracy"].idxmax()]  # idxmax: the first (smallest C) of ties
    return float(best["C"]), table


def fit_probe(data: dict[str, tuple[np.ndarray, np.ndarray]], grid: Sequence[float] = C_GRID) -> dict:
    """C chosen on data["validation"], the classifier fit on data["train"], scored once on data["test"]:
    {C, validation_accuracy, test_accuracy, test_macro_f1}. Macro-F1: sklearn's f1_score(average="macro")
    over the classes present in test or predicted."""
    from sklearn.metrics import f1_score
    from threadpoolctl import threadpool_limits

    C, table = select_c(data["train"], data["validation"], grid)
    x_test, y_test = data["test"]
    with threadpool_limits(1):
        pred = classifier(C).fit(*data["train"]).predict(x_test)
    return {
        "C": C,
        "validation_accuracy": float(table.loc[table["C"] == C, "validation_accuracy"].iloc[0]),
        "test_accuracy": float((pred == y_test).mean()),
        "test_macro_f1": float(f1_score(y_test, pred, average="macro")),
    }


def linear_probe(
    model: str,
    task: str,
    features: str = "mean",
    grid: Sequence[float] = C_GRID,
    max_length: int = 128,
    batch_size: int = 64,
    split_seed: int = 0,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Linear-probe baseline of a frozen base model on a classification task.

    Parameters
    ----------
    model : "minilm", "smollm2", a model folder or a hub id in the local cache (asymviz.base.models)
    task : a text classification task name or file (asymviz.base.tasks.load_task, split `split_seed`)
    features : "mean" (masked mean of the last hidden state) or "pooler" (BERT's pooler output)
    grid : values of C tried on validation
    cache : read / write the features under $ASYMVIZ_CACHE/linear_probe/
    progress : called (done, total) texts while features are computed

    Returns
    -------
    One row, columns `COLUMNS`: model, task, features, C (chosen on validation), validation_accuracy,
    test_accuracy, test_macro_f1 (fractions in [0, 1]), n_train, n_validation, n_test (examples), seconds (wall
    time of this call), cached (features read from the cache).

    Raises
    ------
    ConfigError for a task that is not text classification, an unknown `features`, or a model that cannot be
    loaded offline.
    """
    import numpy as np
    import pandas as pd

    from asymviz.base.tasks import load_task

    t0 = time.perf_counter()
    if features not in FEATURES:
        raise ConfigError(f"features: choose one of {', '.join(FEATURES)}, got {features!r}")
    data = load_task(task, split_seed=split_seed)
    if data.task_type != "classification":
        raise ConfigError(
            f"task: {data.name} is a {data.task_type} task; the linear probe needs text classification"
        )
    from asymviz.base.models import resolve_model

    source = resolve_model(model)
    path = _cache_path(source, data, features, max_length) if cache else None
    if path is not None and path.exists():
        with np.load(path) as f:
            x = {s: f[s] for s in SPLITS}
        cached = True
    else:
        from asymviz.base.models import load_model

        net, tokenizer = load_model(source, "classification", num_labels=max(data.num_labels, 2))
        total = sum(len(data.split(s)) for s in SPLITS)
        x, done = {}, 0
        for s in SPLITS:
            texts = data.split(s)["text"].tolist()
            step = None
            if progress:
                step = lambda n, _t, base=done: progress(base + n, total)  # noqa: E731
            x[s] = pooled_features(net, tokenizer, texts, features, max_length, batch_size, step)
            done += len(texts)
        if path is not None:
            _save_atomic(path, x)
        cached = False
    numbers = fit_probe({s: (x[s], data.split(s)["y"].to_numpy()) for s in SPLITS}, grid)
    row = {"model": source.name, "task": data.name, "features": features, **numbers,
           "n_train": len(data.train), "n_validation": len(data.validation), "n_test": len(data.test),
           "seconds": time.perf_counter() - t0, "cached": cached}  # fmt: skip
    return pd.DataFrame([row], columns=list(COLUMNS))


def _cache_path(source, data, features: str, max_length: int) -> Path:
    import torch
    import transformers

    from asymviz.base.models import cache_dir

    folder = Path(source.path)
    files = []
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.is_file() and (f.suffix in (".safetensors", ".bin", ".json", ".txt", ".model", ".gguf")):
                st = f.stat()
                files.append((f.name, st.st_size, st.st_mtime_ns))
    data_file = Path(data.source) if Path(data.source).is_absolute() else None
    if data_file is None:
        from asymviz.base.tasks import DATA_DIR

        data_file = DATA_DIR / Path(data.source).name
    st = data_file.stat()
    key = {
        "model": [source.name, str(folder.resolve()) if folder.exists() else source.path, files],
        "data": [data.name, str(data_file), st.st_size, st.st_mtime_ns, data.record()],
        "features": features,
        "max_length": max_length,
        "versions": [torch.__version__, transformers.__version__],
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return (
        cache_dir() / "linear_probe" / f"{source.name.replace('/', '_')}_{data.name}_{features}_{digest}.npz"
    )


def _save_atomic(path: Path, arrays: dict) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
