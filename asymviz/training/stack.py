"""K runs' trainable parameters stacked along a leading run axis, the layers that use them, and the per-run AdamW.

    params = FlatParams(K, device)                      # every run's LoRA factors and head in one (K, P) tensor
    layer = LoraStack(base_linear, params.add("l0.q.A", (r, d_in)), params.add("l0.q.B", (d_out, r)), scaling)
    params.finish(); params.bind()                      # before each forward: fresh views of the (K, P) leaf
    step_adamw(params, state, lr)                       # one AdamW step = K independent AdamW steps

The batch of the stacked model is K runs' batches one after the other: row k·b + i is row i of run k, so a layer's
input x (K·b, ..., d_in) reshapes to (K, n, d_in) with run k's rows in slice k. A frozen base linear runs once on
all of them; `LoraStack` adds run k's own update s_k · (x_k A_kᵀ) B_kᵀ (a batched matmul, as multi-LoRA serving
does it: Punica's BGMV / S-LoRA, here with one adapter per contiguous slice), `LinearStack` is run k's own copy
of a head linear. All trainable values live in one fp32 leaf tensor (K, P); each layer reads views of it, so
autograd leaves one (K, P) gradient and AdamW, clipping and masks are a handful of kernels for all K runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


class FlatParams(nn.Module):
    """Named slots (K, *shape) cut from one (K, P) fp32 parameter. `add` slots, `finish`, then `bind` before every
    forward (the views must be taken inside the autograd graph of that step)."""

    def __init__(self, K: int, device: torch.device) -> None:
        super().__init__()
        self.K = K
        self.device = device
        self.names: list[str] = []
        self.shapes: list[tuple[int, ...]] = []
        self.views: dict[str, torch.Tensor] = {}
        self.flat: nn.Parameter | None = None

    def add(self, name: str, shape: tuple[int, ...]) -> str:
        if self.flat is not None:
            raise RuntimeError("FlatParams: add() after finish()")
        self.names.append(name)
        self.shapes.append(tuple(shape))
        return name

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    def finish(self) -> None:
        self.flat = nn.Parameter(torch.zeros(self.K, sum(self.sizes), device=self.device))  # (K, P)

    def slot(self, name: str) -> slice:
        """Columns of `flat` that hold slot `name`."""
        i = self.names.index(name)
        start = sum(self.sizes[:i])
        return slice(start, start + self.sizes[i])

    def set(self, k: int, name: str, value: torch.Tensor) -> None:
        """Write run k's value of a slot (any device / dtype; cast to fp32)."""
        with torch.no_grad():
            self.flat[k, self.slot(name)] = value.reshape(-1).to(self.flat.device, torch.float32)

    def get(self, k: int, name: str) -> torch.Tensor:
        """Run k's value of a slot, (*shape), a detached CPU copy."""
        i = self.names.index(name)
        return self.flat[k, self.slot(name)].detach().to("cpu", copy=True).view(self.shapes[i])

    def bind(self, dtype: torch.dtype | None = None) -> None:
        """Fresh (K, *shape) views of `flat` for this step's forward (one split: one backward kernel); with
        `dtype` (bf16 under autocast) the views are of one cast copy, instead of one cast per layer."""
        src = self.flat if dtype is None or dtype == self.flat.dtype else self.flat.to(dtype)
        chunks = src.split(self.sizes, dim=1)
        self.views = {n: c.view(self.K, *s) for n, c, s in zip(self.names, chunks, self.shapes)}


class LoraStack(nn.Module):
    """A frozen base linear plus K LoRA updates, run k's on rows [k·n, (k+1)·n): y = W x + s_k B_k A_k x.

    A_k: (r, d_in), B_k: (d_out, r), s_k = alpha_k / r (PEFT's LoRA forward, `lora_B(lora_A(dropout(x))) *
    scaling`, batched over runs). `dropout` (optional) is applied to the LoRA input only, as PEFT does."""

    def __init__(
        self, base: nn.Linear, params: FlatParams, a: str, b: str, scaling: torch.Tensor, dropout=None
    ):
        super().__init__()
        self.base = base
        self.params = [params]  # a list: not a submodule (the stack owns it once)
        self.a, self.b = a, b
        self.register_buffer("scaling", scaling.view(-1, 1, 1).float(), persistent=False)  # (K, 1, 1)
        self._cast: dict[torch.dtype, torch.Tensor] = {}
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (K·b, ..., d_out)
        p = self.params[0]
        A, B = p.views[self.a], p.views[self.b]  # (K, r, d_in), (K, d_out, r)
        xs = x.reshape(p.K, -1, x.shape[-1])  # (K, n, d_in)
        if self.dropout is not None:
            xs = self.dropout(xs)
        if torch.is_autocast_enabled(x.device.type):
            dt = torch.get_autocast_dtype(x.device.type)
            A, B = A.to(dt), B.to(dt)
        else:
            xs = xs.to(A.dtype)
        delta = torch.bmm(torch.bmm(xs, A.transpose(1, 2)), B.transpose(1, 2))  # (K, n, d_out)
        delta = delta * self._scaling(delta.dtype)  # as PEFT: (B (A x)) * scaling, in the product's dtype
        return y + delta.reshape(y.shape).to(y.dtype)

    def _scaling(self, dtype: torch.dtype) -> torch.Tensor:
        """The (K, 1, 1) scalings in `dtype`, cast once (not one cast kernel per forward)."""
        cached = self._cast.get(dtype)
        if cached is None or cached.device != self.scaling.device:
            cached = self._cast[dtype] = self.scaling.to(dtype)
        return cached


class LinearStack(nn.Module):
    """K copies of a linear layer (a head layer trained in full), run k's on its own rows: y_k = x_k W_kᵀ + b_k."""

    def __init__(self, params: FlatParams, w: str, b: str | None):
        super().__init__()
        self.params = [params]
        self.w, self.b = w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params[0]
        W = p.views[self.w]  # (K, out, in)
        xs = x.reshape(p.K, -1, x.shape[-1])  # (K, n, in)
        if self.b is None:
            y = torch.bmm(xs, W.transpose(1, 2))
        else:
            y = torch.baddbmm(p.views[self.b].unsqueeze(1), xs, W.transpose(1, 2))  # (K, n, out)
        return y.reshape(*x.shape[:-1], W.shape[1])


# ----------------------------------------------------------------------------------------------------------
# the optimiser


@dataclass
class AdamWState:
    """AdamW moments of a (K, P) parameter and the hyper-parameters of each run (lr comes per step)."""

    exp_avg: torch.Tensor  # (K, P)
    exp_avg_sq: torch.Tensor  # (K, P)
    beta1: torch.Tensor  # (K, 1)
    beta2: torch.Tensor  # (K, 1)
    eps: torch.Tensor  # (K, 1)
    weight_decay: torch.Tensor  # (K, 1)
    max_grad_norm: torch.Tensor  # (K, 1); inf: no clipping
    step: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def zeros(cls, flat: torch.Tensor, betas, eps, weight_decay, max_grad_norm) -> AdamWState:
        def col(values) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=flat.device).view(-1, 1)

        return cls(
            torch.zeros_like(flat),
            torch.zeros_like(flat),
            col([b[0] for b in betas]),
            col([b[1] for b in betas]),
            col(eps),
            col(weight_decay),
            col([math.inf if g is None else g for g in max_grad_norm]),
        )


@torch.no_grad()
def clip_per_run(grad: torch.Tensor, max_norm: torch.Tensor) -> torch.Tensor:
    """Scale each run's gradient (row k of grad, (K, P)) as torch.nn.utils.clip_grad_norm_ does for that run
    alone: coef = min(1, max_norm / (‖g_k‖₂ + 1e-6)). Returns the norms before clipping, (K,)."""
    norms = torch.linalg.vector_norm(grad, dim=1, keepdim=True)  # (K, 1)
    grad.mul_(torch.clamp(max_norm / (norms + 1e-6), max=1.0))
    return norms.view(-1)


@torch.no_grad()
def step_adamw(param: torch.Tensor, grad: torch.Tensor, state: AdamWState, lr: torch.Tensor) -> None:
    """One AdamW step (Loshchilov & Hutter; torch.optim.AdamW's update, amsgrad off) with a learning rate per
    element: lr (K, P) or (K, 1). An element with lr 0 does not move at all (its moments still update, from a
    zero gradient when it is masked), which is how frozen factors stay bit-identical.

        p ← p (1 − lr·wd);  m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²
        p ← p − lr / (1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
    """
    state.step += 1
    t = state.step
    param.mul_(1 - lr * state.weight_decay)
    state.exp_avg.lerp_(grad, 1 - state.beta1)
    state.exp_avg_sq.mul_(state.beta2).addcmul_(grad, grad * (1 - state.beta2))
    bias1 = 1 - state.beta1**t  # (K, 1)
    bias2_sqrt = torch.sqrt(1 - state.beta2**t)
    denom = (state.exp_avg_sq.sqrt() / bias2_sqrt).add_(state.eps)
    param.sub_(state.exp_avg / denom * (lr / bias1))
