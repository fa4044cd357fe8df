"""Pretrain a small ViT on Fashion-MNIST from scratch: the base model of the image experiments.

    asymviz pretrain-vit --out cached_runs/models/vit-fmnist          # a few minutes on 2 CPU cores
    python -m asymviz.training.vit --out DIR --epochs 12              # the same

    result = pretrain_vit(VitConfig(epochs=12), "models/vit-fmnist", progress=print)   # dict: accuracies, sizes

The paper adapts an ImageNet ViT to DomainBed; no pretrained ViT ships in any package registry, so we pretrain a
`transformers` ViTForImageClassification ourselves on the `fashion_mnist` task (10,799 train images; validation
and test held out) and then LoRA-adapt it to the `mnist` digits (`asymviz train --model DIR --task mnist`, LoRA
on query and value, the 10-way head re-drawn and trained in every mode). Images are 28 × 28 × 1, cut into 4 × 4
patches (49 tokens + [CLS]); pixel_values = (x / 255 - 0.5) / 0.5.

The folder written is a plain transformers checkpoint in float16 (`config.json`, `model.safetensors`,
`preprocessor_config.json`) plus `README.md` (a model card saying how it was made and what it scored) and
`pretraining.json` (the settings, per-epoch curves, timings and versions).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from asymviz.errors import ConfigError


@dataclass(frozen=True)
class VitConfig:
    """The ViT and its pretraining. Field comments are the help text."""

    hidden: int = 96  # hidden size d
    layers: int = 4  # transformer layers
    heads: int = 4  # attention heads (d / heads per head)
    mlp: int = 384  # intermediate size of each layer's MLP
    patch: int = 4  # patch side in pixels (28 / 4 = 7 × 7 patches)
    epochs: int = 12  # passes over the training split
    batch_size: int = 128
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, cosine decay to 0)
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the steps spent warming up
    shift: int = 2  # augmentation: random translation by up to this many pixels (0: none)
    seed: int = 0  # init, batch order, augmentation
    max_train: int | None = None  # use a seeded subset of the training images (quick checks)
    threads: int | None = None  # CPU threads (None: all cores)
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda"

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "mlp", "patch", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise ConfigError(f"heads: {self.heads} does not divide hidden = {self.hidden}")
        if 28 % self.patch:
            raise ConfigError(f"patch: {self.patch} does not divide the image side 28")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.shift < 8:
            raise ConfigError(f"shift: must be in [0, 8), got {self.shift}")


def vit_model(config: VitConfig, labels: tuple[str, ...]):
    """A freshly initialised ViTForImageClassification for 28 × 28 grey images (seeded by config.seed)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(config.seed)
    cfg = ViTConfig(
        image_size=28, patch_size=config.patch, num_channels=1, hidden_size=config.hidden,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, intermediate_size=config.mlp,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
    )  # fmt: skip
    return ViTForImageClassification(cfg)


def _shift(x, max_shift: int, gen):
    """Translate each image (b, 1, H, W) by a random integer offset in [-max_shift, max_shift] (zero fill)."""
    import torch

    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (max_shift,) * 4, value=float(x.min()))  # the background value
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, 1, h, w + 2 * max_shift)
    out = pad.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(b, 1, 1, w).expand(b, 1, h, w)
    return out.gather(3, cols)


def _accuracy(model, enc, batch_size: int, device) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for idx in torch.arange(len(enc)).split(4 * batch_size):
            logits = model(pixel_values=enc.ids[idx].to(device)).logits
            correct += int((logits.argmax(-1).cpu() == enc.labels[idx]).sum())
    model.train()
    return correct / len(enc)


def pretrain_vit(config: VitConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> dict:
    """Train a ViT on fashion_mnist from scratch and save it (float16) with its model card into `out`.

    Returns the record also written to `out/pretraining.json`: config, params, steps, per-epoch validation
    accuracy, validation_accuracy, test_accuracy, train_s, size_bytes, device, versions.
    """
    import torch

    from asymviz.base.batches import PIXEL_MEAN, PIXEL_STD, encode_images
    from asymviz.base.tasks import load_task

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise ConfigError(f"out: {out} is not empty and holds no model; choose another folder")
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if config.device == "auto" else config.device))  # fmt: skip
    if device.type == "cpu":
        torch.set_num_threads(config.threads or len(os.sched_getaffinity(0)))
    say = progress or (lambda _msg: None)
    task = load_task("fashion_mnist", max_train=config.max_train)
    enc = {s: encode_images(task.images[s], task.split(s)["y"]) for s in task.splits}
    model = vit_model(config, task.labels).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n = len(enc["train"])
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    warm = max(1, int(round(config.warmup * total)))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
        ),
    )
    gen = torch.Generator().manual_seed(config.seed)
    say(f"ViT {n_params:,} parameters, {n} training images, {config.epochs} epochs x {steps_per_epoch} steps "
        f"on {device}")  # fmt: skip
    curves, t0, step = [], time.perf_counter(), 0
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for idx in order.split(config.batch_size):
            x = _shift(enc["train"].ids[idx], config.shift, gen).to(device)
            loss = model(pixel_values=x, labels=enc["train"].labels[idx].to(device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += float(loss.detach()) * len(idx)
            step += 1
        val = _accuracy(model, enc["validation"], config.batch_size, device)
        curves.append(
            {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / n, "validation_accuracy": val}
        )
        say(f"epoch {epoch + 1}/{config.epochs}: train loss {loss_sum / n:.4f}, validation accuracy {val:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    train_s = time.perf_counter() - t0
    test = _accuracy(model, enc["test"], config.batch_size, device)
    say(f"test accuracy {test:.4f}")

    out.mkdir(parents=True, exist_ok=True)
    model.to("cpu", torch.float16).save_pretrained(out, safe_serialization=True)
    processor = {"image_processor_type": "ViTImageProcessor", "do_resize": False, "do_rescale": True,
                 "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [PIXEL_MEAN],
                 "image_std": [PIXEL_STD]}  # fmt: skip
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=1) + "\n")
    size = (out / "model.safetensors").stat().st_size
    record = {
        "config": asdict(config),
        "params": n_params,
        "steps": total,
        "data": task.record(),
        "curves": curves,
        "validation_accuracy": curves[-1]["validation_accuracy"],
        "test_accuracy": test,
        "train_s": train_s,
        "size_bytes": size,
        "saved_dtype": "float16",
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "cpu": platform.processor() or platform.machine(),
        "versions": _versions(),
    }
    (out / "pretraining.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "README.md").write_text(model_card(record))
    return record


def _versions() -> dict:
    import torch
    import transformers

    from asymviz import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "asymviz": __version__}  # fmt: skip


def model_card(record: dict) -> str:
    """The README.md of a pretrained folder: what it is, how it was made, what it scored."""
    c = record["config"]
    flags = " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in c.items() if v is not None and k not in ("threads", "device")
        and v != VitConfig.__dataclass_fields__[k].default
    )  # fmt: skip
    curve = "\n".join(
        f"| {e['epoch']} | {e['train_loss']:.4f} | {e['validation_accuracy']:.4f} |" for e in record["curves"]
    )
    v = record["versions"]
    return f"""# vit-fmnist: a small ViT pretrained on Fashion-MNIST (asymviz)

The base model of asymviz's image experiments (the paper's ViT / DomainBed stand-in): a `transformers`
`ViTForImageClassification` trained from scratch on the `fashion_mnist` task of asymviz (the 12,000 / 2,000
Fashion-MNIST subset shipped in `asymviz/data/`), then LoRA-adapted to the `mnist` digits:

    asymviz train --model PATH_TO_THIS_FOLDER --task mnist --mode b_only --targets query,value ...

## What it is
- ViT, image 28 x 28 x 1, patch {c["patch"]} ({(28 // c["patch"]) ** 2} patches + [CLS]), hidden {c["hidden"]},
  {c["layers"]} layers, {c["heads"]} heads, MLP {c["mlp"]}, no dropout; {record["params"]:,} parameters;
  a 10-way classifier (the Fashion-MNIST classes, `config.id2label`).
- Weights stored in float16 (`model.safetensors`, {record["size_bytes"] / 2**20:.2f} MiB); `from_pretrained`
  with `dtype=torch.float32` gives the float32 model back.
- Input: `pixel_values` = (x / 255 - 0.5) / 0.5 (`preprocessor_config.json` says the same), no resizing.

## How it was made
    asymviz pretrain-vit --out OUT {flags}

- Data: `fashion_mnist` train split ({record["data"]["n_train"]:,} images; {record["data"]["n_validation"]:,}
  validation images held out of the shipped train set, stratified, split seed 0; the shipped 2,000 test images).
- {c["epochs"]} epochs of batch {c["batch_size"]} ({record["steps"]} steps), AdamW (lr {c["lr"]:g}, weight decay
  {c["weight_decay"]:g}), {c["warmup"]:.0%} linear warm-up then cosine decay, gradient clipping at 1, random
  translations of up to {c["shift"]} pixels, seed {c["seed"]}.
- Trained on {record["device"]} ({record["threads"] or "-"} threads) in {record["train_s"]:.0f} s; python
  {v["python"]}, torch {v["torch"]}, transformers {v["transformers"]}, asymviz {v["asymviz"]}.

## What it scored (float32, before the float16 save)
- validation accuracy {record["validation_accuracy"]:.4f}, test accuracy {record["test_accuracy"]:.4f}
  (2,000 images; always predicting one class scores about 0.11).

| epoch | train loss | validation accuracy |
| --- | --- | --- |
{curve}

`pretraining.json` has these numbers and the full settings. Licence of the data: MIT (Fashion-MNIST).
"""


# ----------------------------------------------------------------------------------------------------------
# command line


def add_arguments(p) -> None:
    """The flags of `asymviz pretrain-vit` (one per VitConfig field)."""
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (suggested: cached_runs/models/vit-fmnist)")  # fmt: skip
    for f in VitConfig.__dataclass_fields__.values():
        typ = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], int)
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=f"default {f.default}")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run_command(args) -> int:
    import sys

    fields = {
        k: getattr(args, k) for k in VitConfig.__dataclass_fields__ if getattr(args, k, None) is not None
    }
    config = VitConfig(**fields)
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    record = pretrain_vit(config, args.out, progress=say)
    print(f"saved {args.out}: test accuracy {record['test_accuracy']:.4f}, validation "
          f"{record['validation_accuracy']:.4f}, {record['params']:,} parameters, "
          f"{record['size_bytes'] / 2**20:.2f} MiB, {record['train_s']:.0f} s", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":  # python -m asymviz.training.vit --out DIR
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m asymviz.training.vit", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    raise SystemExit(run_command(parser.parse_args()))
