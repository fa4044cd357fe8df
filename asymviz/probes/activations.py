"""Second moments of what flows through adapted modules over a data sample, by hooks, streaming.

    moments = collect_moments(model, adapter.names, batches, output="gradient")
    moments[name].inputs     # (d_in, d_in)  Σ_t x_t x_tᵀ over real (non-padding) tokens, float64
    moments[name].outputs    # (d_out, d_out) Σ_t g_t g_tᵀ, g_t = ∂(summed loss)/∂(module output at t)

- inputs X: a forward pre-hook on each adapted module (for a PEFT layer, its input is its base layer's input);
- output="gradient": a tensor hook on the module's output collects ∂loss/∂output (the batches carry labels,
  the model returns `.loss`; the loss is rescaled from a batch mean to a batch sum). Parameters are frozen
  for the pass and each adapted module's input is made a leaf that requires grad when nothing upstream does,
  so no weight gradient is computed and backward stops at the lowest adapted modules;
- output="activation" (no labels): the frozen base layer's outputs y = W0 x (+ bias), forward only.

Per batch, xᵀx is formed in float32 and added to a float64 accumulator: memory is d² per module, never the
activations. An embedding module's inputs are one-hot token ids, whose second moment is diagonal: `inputs`
then holds token counts (vocab,) and `diagonal_inputs` is True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asymviz.probes.base_weights import base_layer, find_module

if TYPE_CHECKING:
    import torch

OUTPUTS = ("gradient", "activation")


@dataclass
class ModuleMoments:
    """Uncentred second moments (sums over tokens) of one module's inputs and outputs."""

    name: str
    inputs: torch.Tensor  # (d_in, d_in) Σ x xᵀ, or (vocab,) token counts when diagonal_inputs
    outputs: torch.Tensor  # (d_out, d_out) Σ g gᵀ (output="gradient") or Σ y yᵀ (output="activation")
    n_tokens: int
    output_kind: str  # "gradient" or "activation"
    diagonal_inputs: bool = False  # an embedding: inputs are one-hot ids


def collect_moments(
    model,
    names: Sequence[str],
    batches: Iterable[Mapping[str, torch.Tensor]],
    output: str = "gradient",
    progress: Callable[[int], None] | None = None,
) -> dict[str, ModuleMoments]:
    """Accumulate input and output second moments of the named modules over batches.

    Parameters
    ----------
    model : a transformers or PEFT model (eval mode); names are the adapter's module names
    names : adapted module names (PEFT keys without ``base_model.model.``)
    batches : dicts of tensors for ``model(**batch)``; ``attention_mask`` (batch, seq) selects real tokens;
        with output="gradient" they carry ``labels`` and the model returns a loss
    output : "gradient" (∂loss/∂output, needs labels) or "activation" (the base layer's outputs)
    progress : called with the number of batches done

    Returns
    -------
    {name: ModuleMoments}
    """
    import torch

    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    state = {"mask": None}
    acc: dict[str, dict] = {}
    handles = []
    for name in names:
        module = find_module(model, name)
        layer = base_layer(module)
        slot = acc[name] = {
            "inputs": None,
            "outputs": None,
            "n": 0,
            "diag": isinstance(layer, torch.nn.Embedding),
        }
        handles.append(
            module.register_forward_pre_hook(_input_hook(slot, state, layer, output == "gradient"))
        )
        if output == "gradient":
            handles.append(module.register_forward_hook(_gradient_hook(slot, state)))
        else:
            handles.append(layer.register_forward_hook(_activation_hook(slot, state)))

    frozen = [(p, p.requires_grad) for p in model.parameters()]
    if output == "gradient":
        for p, _ in frozen:
            p.requires_grad_(False)
    try:
        for i, batch in enumerate(batches, 1):
            mask = batch.get("attention_mask")
            state["mask"] = mask.bool() if mask is not None else None
            if output == "gradient":
                result = model(**batch)
                if getattr(result, "loss", None) is None:
                    raise ValueError(
                        "the model returned no loss: output='gradient' needs batches with labels"
                    )
                n = next(iter(batch.values())).shape[0]
                (result.loss * n).backward()  # a sum over examples, not a batch mean
            else:
                with torch.no_grad():
                    model(**batch)
            if progress:
                progress(i)
    finally:
        for h in handles:
            h.remove()
        for p, flag in frozen:
            p.requires_grad_(flag)
    return {
        name: ModuleMoments(name, s["inputs"], s["outputs"], s["n"], output, s["diag"])
        for name, s in acc.items()
        if s["inputs"] is not None
    }


# ------------------------------------------------------------------------------------------------------------
# hooks


def _tokens(t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, seq, d) -> (real tokens, d); anything else -> (rows, d)."""
    if mask is not None and t.dim() == 3 and tuple(t.shape[:2]) == tuple(mask.shape):
        return t[mask]
    return t.reshape(-1, t.shape[-1])


def _add_gram(slot: dict, key: str, rows: torch.Tensor) -> None:
    import torch

    rows = rows.detach().to(torch.float32)
    gram = (rows.T @ rows).double()  # (d, d)
    slot[key] = gram if slot[key] is None else slot[key].add_(gram)


def _input_hook(slot, state, layer, need_grad: bool):
    import torch

    def hook(module, args):
        x = args[0]
        if need_grad and x.is_floating_point() and not x.requires_grad:
            # a leaf that requires grad: the output gradient exists, backward stops here
            args = (x.detach().requires_grad_(True), *args[1:])
        if slot["diag"]:  # token ids -> counts
            mask = state["mask"]
            ids = x[mask] if mask is not None and tuple(x.shape) == tuple(mask.shape) else x.reshape(-1)
            counts = torch.bincount(ids.reshape(-1), minlength=layer.num_embeddings).double()
            slot["inputs"] = counts if slot["inputs"] is None else slot["inputs"].add_(counts)
            slot["n"] += int(ids.numel())
            return None
        rows = _tokens(x, state["mask"])
        _add_gram(slot, "inputs", rows)
        slot["n"] += rows.shape[0]
        return args

    return hook


def _gradient_hook(slot, state):
    def hook(module, args, out):
        out_t = out[0] if isinstance(out, tuple) else out
        if (
            not out_t.requires_grad
        ):  # an embedding (integer input): its output becomes a leaf that requires grad
            out_t.requires_grad_(True)
        mask = state["mask"]
        out_t.register_hook(lambda g: _add_gram(slot, "outputs", _tokens(g, mask)))

    return hook


def _activation_hook(slot, state):
    def hook(module, args, out):
        out_t = out[0] if isinstance(out, tuple) else out
        _add_gram(slot, "outputs", _tokens(out_t, state["mask"]))

    return hook
