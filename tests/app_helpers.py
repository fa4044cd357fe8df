"""Helpers for the app tests (tests/test_app_*.py, tests/test_browser.py): AppTest set-up and tiny adapters."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the pages import `app.*` and `asymviz.*` from the repository root
    sys.path.insert(0, str(REPO))

PAGES = REPO / "app" / "pages"
os.environ.setdefault("ASYMVIZ_WARM_UP", "0")  # AppTests: no background import thread (see app.components)


_SHARED: dict[str, Path] = {}


def shared_tiny_store(tmp_path_factory) -> Path:
    """A run store with real tiny runs (A&B, B only and A only at seed 0, B only at seed 1), trained once per
    test session and shared by the app tests (a few seconds; tests must not write to it)."""
    if "store" not in _SHARED:
        root = tmp_path_factory.mktemp("tiny")
        train_tiny_store(root / "store", root)
        _SHARED["store"] = root / "store"
    return _SHARED["store"]


def app_test(page: str, store: Path | str | None = None, timeout: float = 60):
    """An AppTest of the whole app (the router, its sidebar) opened on one page (e.g. "theory"), reading the
    run store `store`. Call .run() on it."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=timeout)
    if store is not None:
        at.session_state["store"] = str(store)
    at.switch_page(f"app/pages/{page}.py")
    return at


def no_errors(at) -> None:
    """Fail with what the page showed when it raised or reported an error."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def write_bert_like_adapter(folder: Path, seed: int = 0, layers: int = 3, r: int = 4, d: int = 32) -> Path:
    """A PEFT-format adapter folder with random A and B for query/value of a `layers`-layer BERT-shaped model."""
    from conftest import random_factors, write_adapter

    modules = {
        f"bert.encoder.layer.{layer}.attention.self.{kind}": random_factors(
            r, d, d, seed=seed * 100 + 2 * layer + i
        )
        for layer in range(layers)
        for i, kind in enumerate(("query", "value"))
    }
    return write_adapter(folder, modules, {"lora_alpha": 2 * r, "target_modules": ["query", "value"]})


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    return out


def write_tiny_model_and_task(root: Path) -> tuple[Path, Path]:
    """A 2-layer BERT classifier with a word-level tokenizer, and a small labelled .jsonl.gz task (no downloads)."""
    from tiny_task import write_tiny_bert, write_tiny_task

    return write_tiny_bert(root), write_tiny_task(root, n=60)


def train_tiny_store(store: Path, root: Path, runs=(("ab", 0), ("b_only", 0), ("a_only", 0), ("b_only", 1))):
    """Really train a few tiny runs (2 steps each) into `store` with the training engine, one process."""
    from asymviz.training.config import TrainConfig
    from asymviz.training.sweep import sweep

    model, task = write_tiny_model_and_task(root)
    configs = [
        TrainConfig(model=str(model), task=str(task), mode=mode, seed=seed, rank=4, steps=2, eval_every=1,
                    device="cpu", threads=1)
        for mode, seed in runs
    ]  # fmt: skip
    frame = sweep(configs, store)
    assert (frame["status"] == "completed").all(), frame[["run_id", "status", "error"]]
    return frame


def write_fake_run(store: Path, group: str, task: str, mode: str, seed: int, value: float, rank: int = 8,
                   model: str = "minilm", init_seed: int | None = None, adapter: dict | None = None,
                   **config) -> Path:  # fmt: skip
    """One completed run folder with a hand-written run.json (the documented schema, asymviz.runs): test
    accuracy `value`, counted (role main); weights only when `adapter` ({module: (A (r, d_in), B (d_out, r))})
    is given, as adapter/ in PEFT's format. `config` adds TrainConfig fields (head, top_layers...)."""
    from asymviz.runs import write_json_atomic

    init_seed = seed if init_seed is None else init_seed
    run_id = f"{task}_{model}_{mode}_r{rank}_s{seed}_i{init_seed}"
    folder = store / group / run_id
    folder.mkdir(parents=True)
    lora = 0 if mode == "head_only" else rank * {"ab": 2 * 384, "b_only": 384, "a_only": 384}[mode] * 12
    data = {"schema": 1, "run_id": run_id, "status": "completed", "model": model, "task": task, "mode": mode,
            "rank": rank, "seed": seed, "init_seed": init_seed, "role": "main",
            "config": {"lr": 1e-3, "a_init": "orthogonal", "head_lr": 2e-3, "targets": ["query", "value"], **config},
            "trainable_params": {"lora": lora, "head": 148_000, "total": lora + 148_000},
            "metrics": {"test_accuracy": value, "test_macro_f1": value - 0.05, "test_loss": 1 - value}}  # fmt: skip
    write_json_atomic(folder / "run.json", data)
    if adapter is not None:
        from conftest import write_adapter

        write_adapter(folder / "adapter", adapter, {"lora_alpha": rank, "target_modules": ["query", "value"]})
    return folder
