"""Run the frozen bottom of an encoder once and train only the top (the demo's main saving).

When LoRA sits only on the top k layers of a BERT-style encoder (`model.base_model.embeddings` +
`model.base_model.encoder.layer`), the embeddings and the layers below are frozen and their output for an
example never changes. `prefix_states` computes it once per example (in eval mode: no dropout there), and
`top_only(model, n_prefix)` makes the usual forward start from it:

    h = prefix_states(base, enc.ids, enc.mask, n_prefix)      # (N, L, d), before any LoRA wrapping
    with top_only(peft_model, n_prefix):
        out = peft_model(inputs_embeds=h[idx, :w], attention_mask=enc.mask[idx, :w], labels=y[idx])

Inside `top_only` the embeddings are a pass-through and the layer list holds only layers n_prefix..; the
modules are the same objects, so the optimiser, the LoRA weights and `save_pretrained` are unaffected (the
swap is undone on exit, before anything is saved). The result equals the full forward in eval mode up to
floating-point reassociation (tests check it).

With `cls_only=True` (BERT sequence classifiers, whose pooler reads only position 0) the last layer is computed
for the [CLS] position only: every position still supplies keys and values, but the query, the attention output,
the feed-forward block and their LoRA updates run on one position instead of all of them. The classifier gets
exactly the input the whole layer would give it, at about a quarter of the last layer's cost.
"""

from __future__ import annotations

import contextlib

import torch


def _encoder(model):
    """The BERT-style base (with .embeddings and .encoder.layer) inside an HF or PEFT model, or None."""
    m = model
    for _ in range(4):  # PeftModel -> LoraModel -> HF model -> base (bert)
        base = getattr(m, "base_model", None)
        enc = getattr(m, "encoder", None)
        if enc is not None and hasattr(enc, "layer") and hasattr(m, "embeddings"):
            return m
        if base is None or base is m:
            return None
        m = base
    return None


def supported(model) -> bool:
    return _encoder(model) is not None


class PassThrough(torch.nn.Module):
    """Stands in for the embeddings: returns inputs_embeds (the cached hidden states) unchanged."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


class ClsOnly(torch.nn.Module):
    """A BERT layer evaluated for position 0 only; returns (B, 1, d). Keys and values come from every position."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.train(layer.training)

    def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.bert.modeling_bert import eager_attention_forward

        sa = self.layer.attention.self
        b, t, _ = hidden_states.shape  # (B, T, d)
        cls = hidden_states[:, :1]  # (B, 1, d)
        hd = sa.attention_head_size
        q = sa.query(cls).view(b, 1, -1, hd).transpose(1, 2)  # (B, heads, 1, hd)
        k = sa.key(hidden_states).view(b, t, -1, hd).transpose(1, 2)  # (B, heads, T, hd)
        v = sa.value(hidden_states).view(b, t, -1, hd).transpose(1, 2)
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1, :]  # the [CLS] query's row
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(
            sa.config._attn_implementation, eager_attention_forward
        )
        out, _ = attend(
            sa, q, k, v, attention_mask, dropout=sa.dropout.p if sa.training else 0.0, scaling=sa.scaling
        )
        out = out.reshape(b, 1, -1)
        attn = self.layer.attention.output(out, cls)  # dense, dropout, LayerNorm(+ residual)
        return self.layer.output(self.layer.intermediate(attn), attn)


def cls_only_supported(model) -> bool:
    """True for BERT sequence classifiers: the head reads only the pooler, and the pooler only position 0."""
    enc = _encoder(model)
    if (
        enc is None
        or getattr(enc.config, "model_type", None) != "bert"
        or getattr(enc, "pooler", None) is None
    ):
        return False
    names = {type(m).__name__ for m in model.modules()}
    layer = enc.encoder.layer[-1]
    return (
        "BertForSequenceClassification" in names
        and hasattr(layer, "attention")
        and hasattr(layer, "intermediate")
    )


@contextlib.contextmanager
def top_only(model, n_prefix: int, cls_only: bool = False):
    """Within the block, `model(inputs_embeds=h, ...)` runs only layers n_prefix.. on h (the last one for
    [CLS] alone with cls_only)."""
    enc = _encoder(model)
    saved = (enc.embeddings, enc.encoder.layer)
    enc.embeddings = PassThrough()
    layers = list(saved[1])[n_prefix:]
    if cls_only:
        layers[-1] = ClsOnly(layers[-1])
    enc.encoder.layer = torch.nn.ModuleList(layers)
    try:
        yield model
    finally:
        enc.embeddings, enc.encoder.layer = saved


def prefix_states(
    model, ids: torch.Tensor, mask: torch.Tensor, n_prefix: int, batch_size: int = 64, autocast=None
) -> torch.Tensor:
    """Hidden states after the embeddings and the first n_prefix layers, (N, L, d), on ids' device."""
    enc = _encoder(model)
    if enc is None:
        raise ValueError("prefix caching needs a BERT-style encoder (embeddings + encoder.layer)")
    saved_layers, saved_pooler = enc.encoder.layer, getattr(enc, "pooler", None)
    was_training = enc.training
    enc.eval()
    enc.encoder.layer = torch.nn.ModuleList(list(saved_layers)[:n_prefix])
    if saved_pooler is not None:
        enc.pooler = None
    lengths = mask.sum(1)
    order = torch.argsort(lengths.cpu(), descending=True, stable=True).to(
        ids.device
    )  # similar lengths together
    out = None
    try:
        with torch.inference_mode(), autocast or contextlib.nullcontext():
            for chunk in order.split(batch_size):
                w = max(int(lengths[chunk].max()), 1)  # trim the padding columns of this chunk
                h = enc(input_ids=ids[chunk, :w], attention_mask=mask[chunk, :w]).last_hidden_state.float()
                if out is None:
                    out = torch.zeros((ids.shape[0], ids.shape[1], h.shape[-1]), device=h.device)
                out[chunk, :w] = h  # padding positions stay 0: keys there are masked, so never read
    finally:
        enc.encoder.layer = saved_layers
        if saved_pooler is not None:
            enc.pooler = saved_pooler
        enc.train(was_training)
    return out if out is not None else torch.empty(0)
