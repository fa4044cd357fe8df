"""Shared fixtures: tiny synthetic adapters and tiny PEFT models built from configs (no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("ASYMVIZ_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ---- core: synthetic adapters ----------------------------------------------------------------------------


def write_adapter(folder: Path, modules: dict, config: dict | None = None, dtype=None) -> Path:
    """Write a PEFT-format adapter folder from {module_name: (A (r, d_in), B (d_out, r))}.

    `config` entries override a minimal LoRA config (r from the first module, lora_alpha = r)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (A, B) in modules.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = A.to(dtype or A.dtype).contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = B.to(dtype or B.dtype).contiguous()
    save_file(tensors, folder / "adapter_model.safetensors")
    if config is not False:
        r = next(iter(modules.values()))[0].shape[0]
        cfg = {"peft_type": "LORA", "r": r, "lora_alpha": r, "target_modules": ["q_proj"]}
        cfg.update(config or {})
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def random_factors(r: int, d_in: int, d_out: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)


def write_run_store(root: Path, runs) -> Path:
    """A run store from a run frame (one row per run: task, mode, rank, seed, init_seed, a metric column such as
    test_accuracy, and optionally group, head, run_id): one finished run folder per row, run.json in the
    documented schema (asymviz.runs), the metrics-only runs a slimmed store ships."""
    root = Path(root)
    metrics = [c for c in ("test_accuracy", "test_loss") if c in runs]
    for i, row in enumerate(runs.to_dict("records")):
        run_id = str(row.get("run_id") or f"{row['task']}_{row['mode']}_r{row['rank']}_s{row['seed']}_{i}")
        folder = root / str(row.get("group") or "") / run_id
        folder.mkdir(parents=True)
        data = {"schema": 1, "run_id": run_id, "status": "completed", "model": row.get("model", "tiny"),
                "task": row["task"], "mode": row["mode"], "rank": int(row["rank"]), "seed": int(row["seed"]),
                "init_seed": int(row["init_seed"]), "role": "main", "config": {"lr": 1e-3},
                "metrics": {m: float(row[m]) for m in metrics}}  # fmt: skip
        if row.get("head"):
            data["head_modules"] = str(row["head"]).split(",")
        (folder / "run.json").write_text(json.dumps(data))
    return root


@pytest.fixture
def make_adapter(tmp_path):
    """make_adapter(modules, config=None, name="adapter") -> folder path."""
    counter = iter(range(10**6))

    def make(modules: dict, config: dict | None = None, name: str | None = None, dtype=None) -> Path:
        return write_adapter(tmp_path / (name or f"adapter{next(counter)}"), modules, config, dtype)

    return make


@pytest.fixture
def llama_like(make_adapter):
    """A 2-layer LLaMA-shaped adapter (q, v, down) at r=4 with random A and B."""
    modules = {}
    for layer in range(2):
        for i, (kind, d_in, d_out) in enumerate(
            (("q_proj", 32, 32), ("v_proj", 32, 16), ("down_proj", 48, 32))
        ):
            part = "mlp" if kind == "down_proj" else "self_attn"
            modules[f"model.layers.{layer}.{part}.{kind}"] = random_factors(
                4, d_in, d_out, seed=10 * layer + i
            )
    return make_adapter(modules, {"lora_alpha": 8})


# ---- core: tiny PEFT models from configs -----------------------------------------------------------------


def tiny_model(arch: str):
    """A tiny randomly initialised transformers model: 'bert' (classification), 'llama', 'gpt2' (Conv1D)."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if arch == "bert":
        cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                         vocab_size=64, num_labels=3, max_position_embeddings=64)  # fmt: skip
        return BertForSequenceClassification(cfg)
    if arch == "llama":
        cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=48, vocab_size=64, max_position_embeddings=64)  # fmt: skip
        return LlamaForCausalLM(cfg)
    if arch == "gpt2":
        cfg = GPT2Config(
            n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=64, bos_token_id=0, eos_token_id=0
        )
        return GPT2LMHeadModel(cfg)
    raise ValueError(arch)


@pytest.fixture
def peft_adapter(tmp_path):
    """peft_adapter(arch, **lora_kwargs) -> (saved folder, PeftModel) with random (non-zero) A and B."""

    def make(arch: str, name: str = "peft", **lora_kwargs):
        import torch
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(tiny_model(arch), LoraConfig(init_lora_weights=False, **lora_kwargs))
        torch.manual_seed(1)
        with torch.no_grad():  # also make DoRA magnitudes differ from the base norms
            for n, p in model.named_parameters():
                if "lora_magnitude_vector" in n:
                    p.mul_(1 + 0.1 * torch.rand_like(p))
        folder = tmp_path / name
        model.save_pretrained(folder)
        return folder, model

    return make


# ---- training engine (issue 3): tiny base models and task files, built once per session -------------------


@pytest.fixture(scope="session")
def train_assets(tmp_path_factory):
    """{'bert': tiny BERT folder (2 layers), 'task': text/label .jsonl.gz (60 rows), 'llama': tiny LLaMA folder,
    'qa': text/answer .jsonl.gz} for the training tests."""
    from tiny_task import write_tiny_bert, write_tiny_llama_lm, write_tiny_task

    root = tmp_path_factory.mktemp("train_assets")
    llama, _ = write_tiny_llama_lm(root / "lm")
    return {
        "bert": write_tiny_bert(root / "cls"),
        "task": write_tiny_task(root / "cls", n=60),
        "llama": llama,
        "qa": write_tiny_task(root / "lm", n=60, answers=True),
    }


@pytest.fixture
def tiny_config(train_assets):
    """tiny_config(**changes) -> a TrainConfig on the tiny BERT and task: 3 steps, batch 4, rank 2, CPU."""
    from asymviz.training.config import TrainConfig

    def make(**changes):
        base = dict(model=str(train_assets["bert"]), task=str(train_assets["task"]), steps=3, batch_size=4,
                    rank=2, alpha=4.0, device="cpu", threads=1)  # fmt: skip
        base.update(changes)
        return TrainConfig(**base)

    return make


@pytest.fixture(scope="session")
def mechanism_store(tmp_path_factory, train_assets):
    """A store of mechanism-test runs on the tiny BERT: LoRA on the top layer's value only, classifier head,
    modes head_only, ab, b_only, a_only, seeds 0-2, 4 steps each (adapters kept)."""
    from asymviz.training.config import TrainConfig
    from asymviz.training.loop import train

    store = tmp_path_factory.mktemp("mechanism_store")
    for mode in ("head_only", "ab", "b_only", "a_only"):
        for seed in (0, 1, 2):
            cfg = TrainConfig(model=str(train_assets["bert"]), task=str(train_assets["task"]), mode=mode, rank=2,
                              alpha=4.0, targets=("value",), top_layers=1, head=("classifier",), steps=4,
                              batch_size=4, lr=5e-2, seed=seed, device="cpu", threads=1)  # fmt: skip
            train(cfg, store / cfg.run_id())
    return store
