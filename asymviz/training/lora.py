"""Wrap a base model with PEFT LoRA and set up one of the modes (init + freezing), and the optimiser's groups.

    model = wrap(base, config, task_type, head)   # PeftModel (head_only: the base), init and freezing per mode
    init = lora_state(model)                  # {PEFT key: tensor} at step 0 (cloned)
    ... train ...
    frozen_check(model, init, config.mode)    # {"factor": "A", "modules": 12, "bit_identical": True}

Per module, with ΔW = s · B @ A, A: (r, d_in), B: (d_out, r), s = alpha / r:
- `ab`:     PEFT's own init (A ~ Kaiming-uniform, B = 0); both trained.
- `b_only`: A drawn by `a_init` and frozen; B = 0, trained.
    orthogonal: orthonormal rows (A Aᵀ = I_r), a Haar-random r-frame, as in Zhu et al.
    gaussian:   i.i.d. N(0, 1/d_in) (rows of about unit norm, like orthogonal but not exactly orthogonal)
    kaiming:    PEFT's default, U(-1/√d_in, 1/√d_in) (rows of norm about 1/√3)
- `a_only`: B with orthonormal columns (Bᵀ B = I_r), frozen; A = 0, trained (B = 0 would give A no gradient).
- `head_only`: no adapter (the base model, not a PeftModel): every base weight frozen, only the head trains.
Freezing is `requires_grad_(False)` on PEFT's lora_A / lora_B weights, so the optimiser never sees them.
The head modules (`config.head` or the model's default, see models.default_head) are trained in every mode.
Every init (the LoRA factors and the new head layers) draws from `config.effective_init_seed` (init_seed, else
seed), so runs with different seeds can share one init.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError, first_line

if TYPE_CHECKING:
    import torch

    from asymviz.training.config import TrainConfig

ADAPTER = "default"


def orthonormal_rows(r: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """(r, d) with orthonormal rows, uniformly (Haar) distributed for r <= d."""
    import torch

    if r > d:
        raise ConfigError(f"rank: r = {r} is larger than the dimension {d}; no orthonormal r-frame exists")
    g = torch.randn(d, r, generator=generator, dtype=torch.float64)
    q, upper = torch.linalg.qr(g)  # (d, r)
    q = q * torch.sign(torch.diagonal(upper)).unsqueeze(0)  # fix the signs: makes the draw Haar
    return q.T.contiguous().float()


def draw_A(r: int, d_in: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """A frozen A (r, d_in) for mode b_only."""
    import torch

    if init == "orthogonal":
        return orthonormal_rows(r, d_in, generator)
    if init == "gaussian":
        return torch.randn(r, d_in, generator=generator) / math.sqrt(d_in)
    if init == "kaiming":
        bound = 1.0 / math.sqrt(d_in)
        return (torch.rand(r, d_in, generator=generator) * 2 - 1) * bound
    raise ConfigError(f"a_init: unknown {init!r}")


def lora_modules(model) -> list[tuple[str, object]]:
    """(name, module) of every LoRA layer in a PeftModel, in model order."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and ADAPTER in getattr(m, "lora_A", {})
    ]


def _init_head(model, head: tuple[str, ...], seed: int) -> None:
    """Re-draw the new (not pretrained) head layers from the seed: normal(0, initializer_range), bias 0."""
    import torch

    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    gen = torch.Generator().manual_seed(10_000 + seed)
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("classifier", "score") and isinstance(module, torch.nn.Linear):
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.zero_()


# the same projections under the names of other model families / transformers versions (ViT's attention is
# query / key / value in transformers 4 and q_proj / k_proj / v_proj in recent 5.x)
_TARGET_ALIASES = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "q_proj": "query", "k_proj": "key",
                   "v_proj": "value"}  # fmt: skip


def resolve_targets(model, targets: tuple[str, ...] | None) -> list[str] | None:
    """The target module names as this model spells them: a name no module ends with is replaced by its alias
    (query <-> q_proj, key <-> k_proj, value <-> v_proj) when the model has that one. None stays None."""
    if not targets:
        return None
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    out = []
    for t in targets:
        alias = _TARGET_ALIASES.get(t)
        out.append(alias if "." not in t and t not in names and alias in names else t)
    return out


def is_head_module(name: str, head: tuple[str, ...]) -> bool:
    """True for a module named by `head` ("classifier" matches "classifier" and "bert.classifier")."""
    return any(name == h or name.endswith("." + h) for h in head)


def wrap(base, config: TrainConfig, task_type: str, head: tuple[str, ...]):
    """PeftModel around `base` (modified in place) with config's rank, alpha, targets, layers and mode.

    Mode head_only returns `base` itself with every weight frozen but the head's (ConfigError when the model
    has no head, e.g. a causal LM): the same head init and trainable head as in the LoRA modes, no adapter."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from asymviz.base.models import layer_count

    if config.mode == "head_only":
        if not head:
            raise ConfigError("mode: head_only needs a head to train; this model has none (a causal LM)")
        if task_type in ("classification", "image_classification"):
            _init_head(base, head, config.effective_init_seed)
        base.requires_grad_(False)
        found = [m for n, m in base.named_modules() if n and is_head_module(n, head)]
        if not found:
            raise ConfigError(f"head: no module of the model is named {', '.join(head)}")
        for module in found:
            module.requires_grad_(True)
        torch.manual_seed(config.seed)  # dropout follows the run's seed, as in the LoRA modes
        return base

    layers = None
    if config.top_layers is not None:
        n = layer_count(base)
        if config.top_layers > n:
            raise ConfigError(f"top_layers: the model has {n} layers, asked for the top {config.top_layers}")
        layers = list(range(n - config.top_layers, n))
    init_seed = config.effective_init_seed  # every init below draws from it (batch order, dropout: seed)
    if task_type in ("classification", "image_classification"):
        _init_head(base, head, init_seed)
    peft_task = {"classification": TaskType.SEQ_CLS, "causal_lm": TaskType.CAUSAL_LM}.get(
        task_type
    )  # image: None
    peft_config = LoraConfig(
        task_type=peft_task,
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.lora_dropout,
        target_modules=resolve_targets(base, config.targets),
        layers_to_transform=layers,
        modules_to_save=list(head) or None,
        bias="none",
    )
    torch.manual_seed(init_seed)  # PEFT's own init (mode ab) draws from the global generator
    try:
        model = get_peft_model(base, peft_config)
    except ValueError as exc:  # e.g. target modules not found
        raise ConfigError(f"targets: {first_line(exc)}") from None
    modules = lora_modules(model)
    if not modules:
        raise ConfigError("targets: no module of the model was adapted")
    if config.init_seed is not None:
        torch.manual_seed(config.seed)  # dropout follows the run's seed, not the shared init's
    gen = torch.Generator().manual_seed(init_seed)
    for _, m in modules:
        A = m.lora_A[ADAPTER].weight  # (r, d_in)
        B = m.lora_B[ADAPTER].weight  # (d_out, r)
        with torch.no_grad():
            if config.mode == "b_only":
                A.copy_(draw_A(A.shape[0], A.shape[1], config.a_init, gen))
                B.zero_()
                A.requires_grad_(False)
            elif config.mode == "a_only":
                B.copy_(orthonormal_rows(B.shape[1], B.shape[0], gen).T)
                A.zero_()
                B.requires_grad_(False)
    return model


def lora_state(model) -> dict[str, torch.Tensor]:
    """The adapter's weights (LoRA factors + head) in PEFT's saved key format, cloned to CPU."""
    from peft import get_peft_model_state_dict

    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()
    }


def trainable_counts(model) -> dict[str, int]:
    """Trainable parameters: LoRA factors, head (everything else trainable), total."""
    lora = head = 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            if ".lora_" in name:
                lora += p.numel()
            else:
                head += p.numel()
    return {"lora": lora, "head": head, "total": lora + head}


def param_groups(model, config: TrainConfig) -> list[dict]:
    """AdamW's parameter groups: the LoRA factors and the head, each at its own learning rate.

    LoRA+ (Hayou et al. 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models"): lr_B = lr_ratio · lr_A.
    The factors are split as PEFT's `create_loraplus_optimizer` splits them (peft/optimizers/loraplus.py: a
    parameter whose name holds "lora_B" gets lr · ratio, other LoRA parameters lr); PEFT's rule would also put
    the head's biases (1-D) at lr · ratio and its weights at lr, whereas here the whole head trains at
    `config.effective_head_lr`, the same in every mode. Groups without parameters are left out.
    """
    lora_a, lora_b, head = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if ".lora_" not in name:
            head.append(p)
        elif "lora_B" in name:
            lora_b.append(p)
        else:
            lora_a.append(p)
    groups = [
        {"params": lora_a, "lr": config.lr, "name": "lora_A"},
        {"params": lora_b, "lr": config.lr * config.lr_ratio, "name": "lora_B"},
        {"params": head, "lr": config.effective_head_lr, "name": "head"},
    ]
    return [g for g in groups if g["params"]]


def factor_norms(state: dict[str, torch.Tensor], factor: str) -> dict | None:
    """Row and column norms of one factor over every module of an adapter state (PEFT keys), or None.

    For A (r, d_in) a row is one rank direction in input space; for B (d_out, r) a column is one. Returns
    {"factor", "modules", "row": {mean, min, max}, "col": {mean, min, max}}, the statistics over the rows
    (columns) of all modules together. PEFT's Kaiming-uniform A has rows of norm about sqrt(d_in / 3) /
    sqrt(d_in) = 0.577; the orthogonal A of b_only exactly 1.
    """
    import torch

    keys = [k for k in state if f".lora_{factor}." in k]
    if not keys:
        return None
    rows = torch.cat([torch.linalg.vector_norm(state[k].double(), dim=1) for k in keys])
    cols = torch.cat([torch.linalg.vector_norm(state[k].double(), dim=0) for k in keys])

    def stats(x):
        return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max())}

    return {"factor": factor, "modules": len(keys), "row": stats(rows), "col": stats(cols)}


def frozen_check(model, init: dict[str, torch.Tensor], mode: str) -> dict | None:
    """Compare the frozen factor of every module with its step-0 value, bit for bit (None in modes ab and
    head_only, which freeze no factor)."""
    import torch

    from asymviz.modes import frozen_factor

    factor = frozen_factor(mode)
    if factor is None:
        return None
    now = lora_state(model)
    keys = [k for k in init if f".lora_{factor}." in k]
    same = all(torch.equal(init[k], now[k]) for k in keys)
    return {"factor": factor, "modules": len(keys), "bit_identical": bool(same and keys)}
