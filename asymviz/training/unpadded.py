"""A packed BERT classifier's forward over its real tokens only: no padding through the network.

    route = Route.of(lengths, w, K, device)          # CPU index work, copied to the device without a sync
    logits = unpadded_logits(model, ids, route)      # (N, C), the same as model(ids, mask).logits

Why: a pack's training step is bound by the GPU (bench/gpu_multi.py --parts gputime: 99 % busy), and on
fine_foods at 128 tokens 41 % of the tokens a padded batch computes are padding (22 % of rows reach 128, so
every batch is 128 wide). Here every linear layer, LayerNorm and activation runs on the T real tokens of the
N rows (one (T, d) stream), and attention runs per row through PyTorch's jagged nested tensors
(`torch.nested.nested_tensor_from_jagged` + scaled_dot_product_attention, its flash / memory-efficient
kernels on the GPU). The adapted linears (`stack.LoraStack`) add each run's LoRA update to that run's tokens
through `Route`: the tokens of run k are contiguous (rows are run-major), gathered into a (K, T_max, d) block
for the batched matmul and taken back.

The computation is transformers' BertForSequenceClassification (embeddings: word + token type 0 + absolute
position, LayerNorm; per layer: self-attention with scaling 1/√d_head, output dense + dropout + LayerNorm of the
residual, intermediate dense + activation, output dense + dropout + LayerNorm of the residual; pooler on the
first token; dropout; classifier), with the padded rows' padding left out: the same numbers up to float
rounding (tests/training/test_unpadded.py against the model's own padded forward). Only BERT encoders with
absolute positions on SDPA attention qualify (`unpadded_ok`); `multi.train_many` uses it on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def unpadded_ok(model) -> bool:
    """Whether `unpadded_logits` computes `model`'s forward: a BertForSequenceClassification-shaped encoder
    (bert.embeddings / encoder.layer / pooler, dropout, classifier) with absolute positions on SDPA."""
    config = getattr(model, "config", None)
    bert = getattr(model, "bert", None)
    return (
        config is not None
        and bert is not None
        and getattr(config, "model_type", None) == "bert"
        and not getattr(config, "is_decoder", False)
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and getattr(config, "_attn_implementation", None) == "sdpa"
        and getattr(bert, "pooler", None) is not None
        and all(hasattr(model, a) for a in ("dropout", "classifier"))
        and getattr(bert.embeddings, "token_type_embeddings", None) is not None
    )


@dataclass
class Route:
    """Where the real tokens of a batch of N rows (width w, run-major: rows k·b .. (k+1)·b - 1 are run k's) are.

    flat (T,): each real token's index in the flattened (N, w) batch; pos (T,): its position in its row;
    offsets (N + 1,): row starts in the token stream; gather (K, T_max): for run k, the stream indices of its
    tokens (padded with its last token); take (T,): each token's index in the flattened (K, T_max) block.
    All on the device; built on the CPU from the lengths and copied without waiting for the GPU."""

    flat: torch.Tensor
    pos: torch.Tensor
    offsets: torch.Tensor
    gather: torch.Tensor
    take: torch.Tensor
    n_tokens: int
    max_len: int
    min_len: int

    @classmethod
    def of(cls, lengths: torch.Tensor, width: int, K: int, device) -> Route:
        """lengths: (N,) real tokens per row, on the CPU, each in 1..width; N a multiple of K."""
        lengths = lengths.to(torch.long).cpu()
        N = lengths.numel()
        if N % K or int(lengths.min()) < 1 or int(lengths.max()) > width:
            raise ValueError(f"Route: {N} rows of lengths in [{int(lengths.min())}, {int(lengths.max())}] do not "
                             f"fit {K} runs of width {width}")  # fmt: skip
        offsets = torch.zeros(N + 1, dtype=torch.long)
        offsets[1:] = lengths.cumsum(0)
        T = int(offsets[-1])
        starts = offsets[:-1].repeat_interleave(lengths)
        pos = torch.arange(T) - starts
        flat = torch.arange(N).repeat_interleave(lengths) * width + pos
        b = N // K
        run_start, run_end = offsets[0:N:b], offsets[b : N + 1 : b]  # (K,) each run's token segment
        run_len = run_end - run_start
        t_max = int(run_len.max())
        grid = run_start[:, None] + torch.arange(t_max)[None, :]
        gather = torch.minimum(grid, (run_end - 1)[:, None])  # (K, t_max), past a run's end: its last token
        run_of = torch.arange(K).repeat_interleave(run_len)
        take = run_of * t_max + (torch.arange(T) - run_start.repeat_interleave(run_len))
        dev = torch.device(device)

        def put(t: torch.Tensor) -> torch.Tensor:  # pinned + non_blocking: no wait for the GPU's queue
            if dev.type == "cuda":
                return t.pin_memory().to(dev, non_blocking=True)
            return t.to(dev)

        return cls(put(flat), put(pos), put(offsets), put(gather), put(take), T, int(lengths.max()),
                   int(lengths.min()))  # fmt: skip


def _jagged(x: torch.Tensor, route: Route) -> torch.Tensor:
    """(T, H, D) token stream -> (N, H, j, D) jagged nested tensor, one row per sequence."""
    nt = torch.nested.nested_tensor_from_jagged(
        x, route.offsets, min_seqlen=route.min_len, max_seqlen=route.max_len
    )
    return nt.transpose(1, 2)


def _self_attention(sa, h: torch.Tensor, route: Route) -> torch.Tensor:
    """BertSelfAttention over each row's own tokens: (T, d) -> (T, all_head_size)."""
    shape = (h.shape[0], sa.num_attention_heads, sa.attention_head_size)
    q, k, v = (_jagged(proj(h).view(shape), route) for proj in (sa.query, sa.key, sa.value))
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=sa.dropout.p if sa.training else 0.0, scale=sa.scaling
    )
    return out.transpose(1, 2).values().reshape(h.shape[0], -1)


def unpadded_logits(model, ids: torch.Tensor, route: Route) -> torch.Tensor:
    """Logits (N, C) of rows `ids` (N, w) whose real tokens `route` gives (`Route.of(lengths, w, K, ...)`);
    `model` passes `unpadded_ok`. The stacked linears (stack.LoraStack) read `route` from their FlatParams."""
    bert = model.bert
    emb = bert.embeddings
    tok = ids.reshape(-1)[route.flat]  # (T,)
    h = emb.word_embeddings(tok) + emb.token_type_embeddings(torch.zeros_like(tok))
    h = emb.LayerNorm(h + emb.position_embeddings(route.pos))
    h = emb.dropout(h)
    for layer in bert.encoder.layer:
        attn = layer.attention
        a = attn.output(_self_attention(attn.self, h, route), h)
        h = layer.output(layer.intermediate(a), a)
    first = h[route.offsets[:-1]]  # (N, d): each row's first token ([CLS])
    pooled = bert.pooler(first[:, None, :])
    return model.classifier(model.dropout(pooled))
