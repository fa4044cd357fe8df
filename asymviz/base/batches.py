"""Tokenised splits as padded tensors, and batches cut from them.

    enc = encode(task.train, tokenizer, "classification", max_length=64)   # Encoded
    batch = enc.batch(index)      # {"input_ids", "attention_mask", "labels"}, trimmed to the longest in the batch

Classification: `labels` = class index (N,). Causal LM (chatterbot_qa): each example is the question as a user
turn (the tokenizer's chat template when it has one, else "Question: ...\\nAnswer:") followed by the answer and
EOS; `labels` = token ids on the answer tokens and -100 elsewhere, so the loss is on the answer only.
Rows are right-padded to `max_length` once; a batch keeps only the columns up to its longest row.
Images (kind image_classification): `encode_images` keeps normalised pixel values, a batch is
{"pixel_values" (b, 1, H, W), "labels" (b,)}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch

IGNORE = -100
PIXEL_MEAN, PIXEL_STD = 0.5, 0.5  # images: pixel_values = (x / 255 - mean) / std, in [-1, 1]


@dataclass
class Encoded:
    """One split, tokenised. N examples, L = max_length. The tensors may live on the GPU; `lengths` stays on the
    CPU so that cutting a batch never waits for the GPU."""

    ids: torch.Tensor  # (N, L) int64, right-padded with the pad id; images: (N, 1, H, W) float pixel values
    mask: torch.Tensor  # (N, L) int64, 1 on real tokens; images: (N, 1) ones
    labels: torch.Tensor  # (N,) class index, or (N, L) token targets with -100 (causal LM)
    task_type: str  # "classification" | "causal_lm" | "image_classification"
    lengths: torch.Tensor | None = None  # (N,) real tokens per row, on the CPU

    def __post_init__(self) -> None:
        if self.lengths is None:
            import torch

            self.lengths = self.mask.sum(1).cpu()
            # batch() trims to the longest row and tells padded rows by their lengths: both need each row's
            # real tokens first (right padding), which `encode` makes whatever the tokenizer's padding_side
            width = torch.arange(self.mask.shape[1], device=self.mask.device)
            if not torch.equal(self.mask.bool(), width < self.lengths.to(self.mask.device)[:, None]):
                raise ValueError("Encoded: attention mask rows must be right-padded (ones, then zeros)")

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device) -> Encoded:
        """The same split with its tensors on `device` (lengths stay on the CPU)."""
        return Encoded(
            self.ids.to(device), self.mask.to(device), self.labels.to(device), self.task_type, self.lengths
        )

    def width(self, index: torch.Tensor) -> int:
        """Columns needed by these rows (their longest real length); index on the CPU."""
        return max(int(self.lengths[index].max()), 1)

    def batch(
        self, index: torch.Tensor, rows: torch.Tensor | None = None, for_model=None
    ) -> dict[str, torch.Tensor]:
        """The rows `index` (CPU), trimmed to their longest; `rows` is the same index already on the tensors'
        device (saves a host-to-device copy per step).

        for_model: the model these rows will feed. Its attention mask is then chosen from the CPU lengths, so
        that the model never has to read the mask back from the GPU (see `encoder_mask_ok`): None when no row
        is padded (for every model: Hugging Face models read a missing mask as all ones, and on SDPA they drop
        an all-ones mask themselves); for padded rows the boolean (b, 1, 1, w) mask on a BERT-family encoder
        on SDPA, else the 2-D mask as without for_model.
        """
        r = index if rows is None else rows
        if self.task_type == "image_classification":
            return {"pixel_values": self.ids[r], "labels": self.labels[r]}
        w = self.width(index)
        mask = self.mask[r, :w]
        if for_model is not None:
            if int(self.lengths[index].min()) >= w:
                mask = None
            elif encoder_mask_ok(for_model):
                mask = mask[:, None, None, :].bool()
        return {
            "input_ids": self.ids[r, :w],
            "attention_mask": mask,
            "labels": self.labels[r] if self.task_type == "classification" else self.labels[r, :w],
        }


# Encoder models whose transformers code builds its mask with masking_utils.create_bidirectional_mask, which
# passes a 4-D mask on unchanged (tests/base/test_batches.py pins the logits against the 2-D mask's).
ENCODER_MASK_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})


def encoder_mask_ok(model) -> bool:
    """Whether padded rows may feed `model` a boolean (b, 1, 1, w) mask (`Encoded.batch(..., for_model=model)`):
    a BERT-family encoder (not a decoder) on PyTorch's SDPA attention.

    Why: transformers decides whether a 2-D padding mask can be dropped with `mask.all()` on the GPU
    (masking_utils._ignore_bidirectional_mask_sdpa), which waits for the GPU on every forward, so the CPU
    cannot queue the next step's kernels while the GPU runs this one. The lengths are on the CPU: without
    padding the mask is None (what transformers makes of an all-ones mask), with padding it is the boolean
    mask transformers builds for SDPA (True = attend, broadcast over heads and queries), which it passes on
    as it is. Same logits, no wait.
    """
    config = getattr(model, "config", None)
    return (
        config is not None
        and getattr(config, "model_type", None) in ENCODER_MASK_TYPES
        and not getattr(config, "is_decoder", False)
        and getattr(config, "_attn_implementation", None) == "sdpa"
    )


def encode(frame: pd.DataFrame, tokenizer, kind: str, max_length: int) -> Encoded:
    """Tokenise a split (columns text + y, or text + answer) into an Encoded."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if kind == "classification":
        # padding_side: Encoded wants right padding; some decoders' tokenizers pad on the left by default
        enc = tokenizer(
            list(frame["text"]),
            truncation=True,
            max_length=max_length,
            padding="max_length",
            padding_side="right",
        )
        ids = torch.tensor(enc["input_ids"], dtype=torch.long)
        mask = torch.tensor(enc["attention_mask"], dtype=torch.long)
        return Encoded(ids, mask, torch.tensor(frame["y"].to_numpy(), dtype=torch.long), kind)

    eos = tokenizer.eos_token or ""
    prompts = [prompt_text(tokenizer, q) for q in frame["text"]]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer([" " + a.strip() + eos for a in frame["answer"]], add_special_tokens=False)["input_ids"]
    n = len(prompts)
    ids = torch.full((n, max_length), pad, dtype=torch.long)
    mask = torch.zeros((n, max_length), dtype=torch.long)
    labels = torch.full((n, max_length), IGNORE, dtype=torch.long)
    for i, (p, a) in enumerate(zip(p_ids, a_ids)):
        p = p[: max_length - 1]  # keep at least one answer token
        a = a[: max_length - len(p)]
        row = p + a
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, len(p) : len(row)] = torch.tensor(a)
    return Encoded(ids, mask, labels, kind)


def encode_images(images, y) -> Encoded:
    """(N, H, W) uint8 images and their class indices (N,) -> an Encoded of normalised 1-channel pixel values."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).sub_(PIXEL_MEAN).div_(PIXEL_STD)
    n = x.shape[0]
    labels = torch.as_tensor(np.array(y, dtype=np.int64))  # a copy: pandas hands out read-only views
    ones = torch.ones((n, 1), dtype=torch.long)
    return Encoded(x.unsqueeze(1), ones, labels, "image_classification", torch.ones(n, dtype=torch.long))


def prompt_text(tokenizer, question: str) -> str:
    """The prompt a causal LM answers: the chat template's user turn, or "Question: ...\\nAnswer:"."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
            )
        except Exception:  # a template that needs more than a user turn: fall back to plain text
            pass
    return f"Question: {question}\nAnswer:"


def batch_order(n: int, batch_size: int, steps: int, seed: int, rank: int = 0, world: int = 1):
    """Row indices of every step: a stream of seeded epoch permutations cut into global batches of
    batch_size × world; process `rank` takes its slice. Returns (steps, batch_size) int64."""
    import torch

    g = torch.Generator().manual_seed(seed)
    need = steps * batch_size * world
    chunks, have = [], 0
    while have < need:
        chunks.append(torch.randperm(n, generator=g))
        have += n
    stream = torch.cat(chunks)[:need].view(steps, world, batch_size)
    return stream[:, rank, :].contiguous()
