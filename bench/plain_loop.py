"""The reference for overhead measurements: a plain PEFT training loop, as a user would write it, on the same
model, LoRA config, batches and precision as asymviz's `train` (no run folder, no metrics, no progress, no
cancel checks, no per-step .item()). Imported by bench_train.py (CPU) and gpu_train.py (GPU).
"""

from __future__ import annotations

import contextlib
import time

import torch


def plain_peft_loop(config, steps: int | None = None, device: str = "cpu") -> dict:
    """Train `config` (an asymviz TrainConfig: model, task, rank, alpha, targets, head, lr, batch, max_length,
    seed) for `steps` steps with bare PEFT + AdamW; returns {"train_s", "examples_per_s", "steps", "loss"}.

    The batches are asymviz's (same seeded order, same trimming to the longest row), so only the loop differs.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from asymviz.base.batches import batch_order, encode
    from asymviz.base.models import load_tokenizer, resolve_model
    from asymviz.base.tasks import load_task

    dev = torch.device(device)
    if (
        dev.type == "cpu"
    ):  # as asymviz does on CPU (denormals made mode ab several times slower): like with like
        torch.set_flush_denormal(True)
    bf16 = dev.type == "cuda" and config.precision in ("auto", "bf16")
    task = load_task(config.task, config.split_seed, config.holdout, config.max_train)
    source = resolve_model(config.model)
    tok = load_tokenizer(source)
    enc = encode(task.train, tok, task.task_type, config.max_length)
    steps = steps or config.steps
    order = batch_order(len(enc), config.batch_size, steps, config.seed)

    model = AutoModelForSequenceClassification.from_pretrained(
        source.path, num_labels=task.num_labels, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    lora = LoraConfig(task_type="SEQ_CLS", r=config.rank, lora_alpha=config.alpha, target_modules=list(config.targets),
                      modules_to_save=list(config.head or ("classifier",)), lora_dropout=0.0)  # fmt: skip
    torch.manual_seed(config.seed)
    model = get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    enc = enc.to(dev)
    order_dev = order.to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for step in range(steps):
        batch = enc.batch(order[step], order_dev[step])
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch)
        out.loss.backward()
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    loss = float(out.loss.detach())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {"train_s": dt, "examples_per_s": steps * config.batch_size / dt, "steps": steps, "loss": loss}


@contextlib.contextmanager
def mask_2d():
    """Training inside cuts its batches with the 2-D mask, as before masks chosen from the CPU lengths."""
    from asymviz.base.batches import Encoded

    original = Encoded.batch
    Encoded.batch = lambda self, index, rows=None, for_model=None: original(self, index, rows)
    try:
        yield
    finally:
        Encoded.batch = original
