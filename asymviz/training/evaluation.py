"""How a run is scored: metrics of one split, and a causal LM's greedy answers.

values = evaluate(lambda idx: model(**enc.batch(idx)), enc, "classification")   # accuracy, macro_f1, loss
write_generations(run_dir / GENERATIONS_FILE, model, tokenizer, task, config, device, autocast)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from asymviz.base.batches import IGNORE, Encoded, prompt_text
from asymviz.base.tasks import is_classification
from asymviz.training.config import TrainConfig


@torch.no_grad()
def evaluate(forward: Callable, enc: Encoded, task_type: str, batch_size: int = 64) -> dict[str, float]:
    """Metrics of one split. `forward(idx)` returns the model output for those rows.

    Classification: accuracy, macro_f1 (mean F1 over the classes present in labels or predictions), loss
    (mean cross-entropy). Causal LM: loss (mean over answer tokens), perplexity = exp(loss).
    """
    import torch.nn.functional as F

    n = len(enc)
    loss_sum, count = 0.0, 0
    pred = torch.zeros(n, dtype=torch.long)
    order = torch.argsort(enc.lengths, descending=True, stable=True)  # similar lengths: less padding
    for idx in order.split(batch_size):
        out = forward(idx)
        logits = out.logits.float()
        if is_classification(task_type):
            y = enc.labels[idx.to(enc.labels.device)].to(logits.device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            count += len(idx)
            pred[idx] = logits.argmax(-1).cpu()
        else:
            w = logits.shape[1]
            target = enc.labels[idx.to(enc.labels.device), :w].to(logits.device)[:, 1:]  # next-token targets
            loss_sum += float(
                F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=IGNORE, reduction="sum")
            )
            count += int((target != IGNORE).sum())
    loss = loss_sum / max(count, 1)
    if not is_classification(task_type):
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    y = enc.labels.cpu()
    return {"accuracy": int((pred == y).sum()) / len(y), "macro_f1": macro_f1(y, pred), "loss": loss}


def macro_f1(y: torch.Tensor, pred: torch.Tensor) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y or pred (sklearn's 'macro')."""
    classes = torch.unique(torch.cat([y, pred]))
    f1s = []
    for c in classes:
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(sum(f1s) / len(f1s))


@torch.no_grad()
def write_generations(path: Path, model, tokenizer, task, config: TrainConfig, device, autocast) -> None:
    """Greedy answers to the first `config.generate` test questions (in file order), one JSON line each:
    row, question, reference, generated. Written to `path` atomically."""
    import json

    from asymviz.runs import write_text_atomic

    model.eval()
    rows = task.test.sort_values("row").head(config.generate)
    lines = []
    for row in rows.itertuples():
        prompt = tokenizer(prompt_text(tokenizer, row.text), add_special_tokens=False, return_tensors="pt")
        ids = prompt["input_ids"][:, -(config.max_length - 1) :].to(device)
        with autocast():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=config.generate_tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        lines.append({"row": int(row.row), "question": row.text, "reference": row.answer, "generated": text})
    write_text_atomic(path, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    model.train()
