"""The base model's weights under an adapter: find them by the adapter's module names, orient them
(d_out, d_in) like ΔW, and cache their SVDs.

    model = load_base_model("minilm")                    # a transformers model, eval mode, float32
    W0 = base_weight(model, adapter.spec(name))          # (d_out, d_in), the matrix ΔW is added to
    U, S, V = weight_svd(W0)                             # thin SVD: U (d_out, m), S (m,), V (d_in, m)

Orientation: nn.Linear stores (d_out, d_in) already; GPT-2's Conv1D (fan_in_fan_out) stores (d_in, d_out);
an embedding stores (vocab, hidden) while its LoRA has A (r, vocab), B (hidden, r) and PEFT adds (B·A)ᵀ, so
in ΔW's orientation W0 is the transposed table (hidden, vocab). Shapes are checked against the adapter.

`weight_svd` keys its cache by the weight's content (a BLAKE2 digest of its bytes): an in-process LRU bounded
in bytes, and a disk cache under ``$ASYMVIZ_CACHE`` (default ``~/.cache/asymviz``)/svd; set
``ASYMVIZ_SVD_CACHE=0`` to keep it off the disk. A key by content can never go stale.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import AdapterError, AsymvizError, first_line

if TYPE_CHECKING:
    import torch

    from asymviz.adapters import LoraModule, ModuleSpec

HEADS = ("base", "classification", "causal_lm")
SVD_CACHE_BYTES = 1 << 30  # in-process LRU budget for cached SVDs


def cache_dir() -> Path:
    """The project's cache folder ($ASYMVIZ_CACHE, default ~/.cache/asymviz), shared with the training engine."""
    from asymviz.base.models import cache_dir as engine_cache_dir

    return engine_cache_dir()


# ------------------------------------------------------------------------------------------------------------
# loading


def load_base_model(name: str, head: str = "base", num_labels: int = 2):
    """A transformers model for `name` in eval mode, float32, loaded as the training engine loads it
    (asymviz.base.models: "minilm", "smollm2" from its dequantised cached copy, a folder, or a hub id
    already in the local cache; nothing is downloaded).

    Parameters
    ----------
    head : "base" (AutoModel, no head: enough for weights), "classification" (a fresh head with num_labels
        outputs) or "causal_lm"
    """
    from asymviz.base.models import dequantise_gguf, load_model, resolve_model

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    source = resolve_model(name)
    if head != "base":
        return load_model(source, head, num_labels=num_labels)[0].eval()
    import torch
    from transformers import AutoModel

    if source.gguf_file:
        source = dequantise_gguf(source)
    try:
        model = AutoModel.from_pretrained(source.path, dtype=torch.float32)
    except OSError as exc:
        raise AsymvizError(f"cannot load base model {name!r} offline: {first_line(exc)}") from None
    return model.eval()


# ------------------------------------------------------------------------------------------------------------
# finding and orienting the weights


def find_module(model, name: str):
    """The submodule for an adapter module name (PEFT key without `base_model.model.`), tolerating a model
    loaded with or without its task head (`bert.encoder...` vs `encoder...`) and a PeftModel wrapper."""
    if hasattr(model, "peft_config") and hasattr(model, "base_model"):
        model = model.base_model.model  # PeftModel -> the wrapped transformers model
    prefix = getattr(model, "base_model_prefix", "") or ""
    candidates = [name]
    if prefix and name.startswith(prefix + "."):
        candidates.append(name[len(prefix) + 1 :])
    elif prefix:
        candidates.append(f"{prefix}.{name}")
    for candidate in candidates:
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    raise AdapterError(
        f"the base model has no module {name!r}: is it the model the adapter was trained on? "
        f"({type(model).__name__})"
    )


def base_layer(module):
    """The frozen layer inside a PEFT LoRA wrapper, or the module itself."""
    return getattr(module, "base_layer", module)


def base_weight(model, spec: ModuleSpec | LoraModule) -> torch.Tensor:
    """W0 of an adapted module, oriented like ΔW: (d_out, d_in), float32, detached."""
    import torch

    layer = base_layer(find_module(model, spec.name))
    W = getattr(layer, "weight", None)
    if W is None:
        raise AdapterError(f"{spec.name}: the base layer {type(layer).__name__} has no weight")
    W = W.detach().to(torch.float32)
    if isinstance(layer, torch.nn.Embedding) or getattr(spec, "embedding", False):
        W = W.T  # (vocab, hidden) -> (hidden, vocab)
    elif _is_conv1d(layer) or getattr(spec, "fan_in_fan_out", False):
        W = W.T  # Conv1D stores (d_in, d_out)
    elif W.dim() > 2:
        W = W.reshape(W.shape[0], -1)  # conv kernel: (out, in·kh·kw)
    if tuple(W.shape) != (spec.d_out, spec.d_in):
        raise AdapterError(
            f"{spec.name}: the base weight is {tuple(W.shape)} (d_out, d_in) but the adapter expects "
            f"({spec.d_out}, {spec.d_in}): a different base model?"
        )
    return W.contiguous()


def _is_conv1d(layer) -> bool:
    return type(layer).__name__ == "Conv1D" and type(layer).__module__.startswith("transformers")


# ------------------------------------------------------------------------------------------------------------
# SVD cache


class _SvdCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.items: OrderedDict[str, tuple] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
                self.hits += 1
            return value

    def put(self, key, value, size):
        with self.lock:
            if key in self.items or size > self.max_bytes:
                return
            self.items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, old) = self.items.popitem(last=False)
                self.bytes -= old

    def clear(self):
        with self.lock:
            self.items.clear()
            self.bytes = 0
            self.hits = self.misses = 0


_svd_cache = _SvdCache(SVD_CACHE_BYTES)


def weight_digest(W: torch.Tensor) -> str:
    """BLAKE2 digest of a float32 matrix's bytes and shape: the cache key of its SVD."""
    import torch

    arr = W.detach().to(torch.float32).contiguous().numpy()
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(arr.shape)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def weight_svd(W: torch.Tensor, disk: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of a base weight W (d_out, d_in) = U diag(S) Vᵀ: U (d_out, m), S (m,), V (d_in, m),
    m = min(d_out, d_in), float32; computed once per distinct W (in memory, and on disk unless disk=False
    or ASYMVIZ_SVD_CACHE=0)."""
    import torch

    key = weight_digest(W)
    hit = _svd_cache.get(key)
    if hit is not None:
        return hit[0]
    if disk is None:
        disk = os.environ.get("ASYMVIZ_SVD_CACHE", "1") != "0"
    path = cache_dir() / "svd" / f"{key}.safetensors"
    usv = _read_svd(path) if disk else None
    if usv is None:
        _svd_cache.misses += 1
        U, S, Vh = torch.linalg.svd(W.to(torch.float32), full_matrices=False)
        usv = (U.contiguous(), S, Vh.T.contiguous())
        if disk:
            _write_svd(path, usv)
    size = sum(t.numel() * t.element_size() for t in usv)
    _svd_cache.put(key, usv, size)
    return usv


def clear_svd_cache() -> None:
    """Empty the in-process SVD cache (the disk cache stays)."""
    _svd_cache.clear()


def _read_svd(path: Path):
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        t = load_file(path)
        return t["U"], t["S"], t["V"]
    except (SafetensorError, OSError, KeyError):
        return None  # a damaged cache entry is recomputed


def _write_svd(path: Path, usv) -> None:
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        save_file(dict(zip("USV", usv, strict=True)), tmp)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs recomputation
