"""The training commands of the asymviz CLI: train, sweep, runs, demo (nothing heavy imported here).

    asymviz train --model minilm --task fine_foods --mode b_only --steps 200 --out runs/b_only
    asymviz sweep --model minilm --tasks fine_foods,word_polarity --modes ab,b_only,a_only --seeds 0,1,2 --store runs
    asymviz sweep ... --lrs 3e-4,1e-3,3e-3 --save-dtype fp16 --gpus 0 --jobs-per-gpu 8   # lr chosen on validation
    asymviz sweep ... --modes ab,b_only,a_only,head_only --lrs 1e-3,2e-3,4e-3 --lr-ratios 1,4,16  # LoRA+ for ab
    asymviz sweep --configs configs.json --store runs     # a JSON list of TrainConfig dicts (the app's requests)
    asymviz pretrain-vit --out cached_runs/models/vit-fmnist     # the small ViT of the image experiments
    asymviz runs list --store runs --format table
    asymviz runs compare --store cached_runs --group minilm_tasks --baseline ab --format table   # paired stats
    asymviz demo --store runs
    accelerate launch --num_processes 2 -m asymviz.training train ... --out DIR    # data parallel

Every flag maps to a TrainConfig field (see asymviz/training/config.py for defaults and meaning).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from asymviz.cli.outline import sweep_outline
from asymviz.cli.output import COLUMNS_HELP, LEGENDS, RUN_COLUMNS, RunsBar
from asymviz.errors import ConfigError
from asymviz.modes import MODES
from asymviz.runs.layout import DEFAULT_STORE


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# flag -> (TrainConfig field, type, help). Defaults are None: unset flags keep the config's (or preset's) value.
_FLAGS = (
    ("--a-init", "a_init", str, "b_only: frozen A init: orthogonal (default), gaussian, kaiming"),
    ("--rank", "rank", int, "LoRA rank r (default 8)"),
    ("--alpha", "alpha", float, "lora_alpha (default 16); scaling = alpha / r"),
    (
        "--targets",
        "targets",
        str,
        "comma-separated module names (default: PEFT's for the model, e.g. query,value)",
    ),
    ("--top-layers", "top_layers", int, "adapt only the top N layers"),
    (
        "--head",
        "head",
        str,
        "comma-separated modules trained in full in every mode (default: the model's head)",
    ),
    ("--steps", "steps", int, "optimiser steps (default: one epoch)"),
    ("--epochs", "epochs", float, "passes over the training split"),
    ("--lr", "lr", float, "learning rate of the LoRA factors (default 1e-3)"),
    (
        "--head-lr",
        "head_lr",
        float,
        "learning rate of the head (default: --lr; sweeps with --lrs: chosen per task)",
    ),
    ("--lr-ratio", "lr_ratio", float, "LoRA+ ratio: lr of B = ratio x lr of A (mode ab; default 1)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (default 0)"),
    ("--warmup", "warmup", float, "warm-up fraction of the steps (default 0.06)"),
    ("--max-grad-norm", "max_grad_norm", float, "clip the gradient norm (default 1.0)"),
    ("--batch-size", "batch_size", int, "examples per step (default 8)"),
    ("--max-length", "max_length", int, "tokens per example (default 64)"),
    ("--split-seed", "split_seed", int, "seed of the train/validation/test split (default 0)"),
    ("--max-train", "max_train", int, "use a seeded subset of the training split"),
    ("--max-validation", "max_validation", int, "evaluate on a seeded subset of the validation split"),
    ("--max-test", "max_test", int, "evaluate on a seeded subset of the test split"),
    ("--eval-every", "eval_every", int, "steps between validation evaluations (default: end only)"),
    ("--device", "device", str, "auto (default: CUDA if present), cpu, cuda, cuda:N"),
    ("--precision", "precision", str, "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16"),
    ("--threads", "threads", int, "CPU threads (default: all cores)"),
    ("--save-dtype", "save_dtype", str, "fp32 (default) or fp16: dtype of the saved adapter and init"),
    ("--generate", "generate", int, "causal LM: greedy answers to this many test questions (default 5)"),
)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None


def _add_config_flags(p: argparse.ArgumentParser, single: bool) -> None:
    p.add_argument("--model", help="minilm (default), smollm2, a Hugging Face id or a local folder")
    if single:
        p.add_argument("--task", help="task name (fine_foods, ...) or a CSV/JSONL file with text,label")
        p.add_argument(
            "--mode", choices=MODES, help="which factors train (default ab; head_only: no adapter)"
        )
        p.add_argument("--seed", type=int, help="init and batch-order seed (default 0)")
        p.add_argument("--init-seed", dest="init_seed", type=int,
                       help="seed of every parameter init (default: --seed); the batch order keeps --seed")  # fmt: skip
    for flag, field, typ, text in _FLAGS:
        p.add_argument(flag, dest=field, type=typ, default=None, help=text)
    p.add_argument("--cache-prefix", dest="cache_prefix", action="store_true", default=None,
                   help="with --top-layers: compute the frozen layers below once and reuse them")  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="start from a TrainConfig JSON file (flags override it)")
    p.add_argument("--preset", help="start from a preset's config (demo, equal_budget, paper)")


def _config_from_args(args, **fixed):
    from asymviz.training.config import TrainConfig, preset

    if args.config:
        try:
            base = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config: {args.config} is not JSON ({exc})") from None
    elif args.preset:
        mode = getattr(args, "mode", None) or "ab"
        base = {c.mode: c for c in preset(args.preset)}.get(mode) or preset(args.preset)[0]
    else:
        base = TrainConfig()
    changes = {f: getattr(args, f) for _, f, _, _ in _FLAGS if getattr(args, f, None) is not None}
    for f in ("model", "task", "mode", "seed", "init_seed", "cache_prefix"):
        if getattr(args, f, None) is not None:
            changes[f] = getattr(args, f)
    changes.update(fixed)
    return base.replace(**changes) if changes else base


# ----------------------------------------------------------------------------------------------------------
# progress on stderr


class _Bar:
    """A tqdm bar per run on stderr: step / total, loss, examples/s. Silent with ASYMVIZ_NO_PROGRESS."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet or bool(os.environ.get("ASYMVIZ_NO_PROGRESS"))
        self.bar = None
        self.run_id = None
        self.phase = None

    def __call__(self, event) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        if event.run_id != self.run_id or self.bar is None:
            self.close()
            self.run_id = event.run_id
            self.bar = tqdm(total=event.total_steps, desc=event.run_id[:48], file=sys.stderr, unit="step",
                            leave=True, dynamic_ncols=True, mininterval=0.25)  # fmt: skip
        if event.phase != self.phase:
            self.phase = event.phase
            name = event.run_id[:48] if event.phase == "train" else f"{event.run_id[:40]} [{event.phase}]"
            self.bar.set_description_str(name, refresh=False)
        post = {}
        if event.loss is not None:
            post["loss"] = f"{event.loss:.4f}"
        if event.examples_per_s:
            post["ex/s"] = f"{event.examples_per_s:.1f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(event.step - self.bar.n)  # redraws at most every mininterval
        if event.phase == "done":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------------------------------------
# handlers


def check_tasks(configs) -> None:
    """A task name that is neither bundled nor a file is one error line before any run folder is written."""
    from asymviz.base.tasks import TASKS

    for name in sorted({c.task for c in configs}):
        if name not in TASKS and not Path(name).expanduser().is_file():
            raise ConfigError(
                f"task: {name!r} is neither a bundled task ({', '.join(sorted(TASKS))}) nor a file"
            )


def _cmd_train(args) -> int:
    from asymviz.training.loop import train

    config = _config_from_args(args)
    check_tasks([config])
    bar = _Bar(args.quiet)
    try:
        record = train(config, args.out, progress=bar, overwrite=args.overwrite)
    finally:
        bar.close()
    if os.environ.get("RANK", "0") != "0":  # data parallel: the main process reports
        return 0 if record.status == "completed" else 130
    m = record.final_metrics
    keys = [
        k for k in ("test_accuracy", "test_macro_f1", "test_loss", "test_perplexity") if m.get(k) is not None
    ]
    summary = ", ".join(f"{k} {m[k]:.4f}" for k in keys)
    print(
        f"{record.status}: {record.path} ({summary})" if summary else f"{record.status}: {record.path}",
        file=sys.stderr,
    )
    return 0 if record.status == "completed" else 130


def _configs_file(path: str) -> list:
    from asymviz.training.config import TrainConfig

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"configs: cannot read {path} as JSON ({exc})") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ConfigError(f"configs: {path} must hold a non-empty JSON list of TrainConfig objects")
    return [TrainConfig.from_dict(d) for d in data]


def _cmd_sweep(args) -> int:
    from asymviz.cli.output import write_frame
    from asymviz.training.sweep import expand, sweep

    if args.init_seeds and args.shared_init is not None:
        raise ConfigError("init_seeds: give --init-seeds or --shared-init, not both")
    init_seeds = _ints(args.init_seeds) if args.init_seeds else None
    if args.shared_init is not None:
        init_seeds = [args.shared_init]
    if args.configs:
        configs = _configs_file(args.configs)
    else:
        configs = expand(
            _config_from_args(args),
            tasks=_names(args.tasks) if args.tasks else None,
            modes=_names(args.modes) if args.modes else None,
            seeds=_ints(args.seeds) if args.seeds else None,
            ranks=_ints(args.ranks) if args.ranks else None,
            a_inits=_names(args.a_inits) if args.a_inits else None,
            init_seeds=init_seeds,
        )
    lrs = _floats(args.lrs) if args.lrs else None
    ratios = _floats(args.lr_ratios) if args.lr_ratios else None
    if ratios and not lrs:
        raise ConfigError("lr_ratios: chosen on validation together with the lr; give --lrs too")
    devices = None
    if args.gpus:
        devices = _gpus(args.gpus)
    check_tasks(configs)
    total, outline = sweep_outline(configs, args.store, lrs, devices, args.jobs_per_gpu, ratios)
    print(outline, file=sys.stderr)
    bar = _Bar(args.quiet or devices is not None)
    runs_bar = RunsBar(total, args.quiet)

    def on_run(record):
        bar.close()
        runs_bar.update(record)

    try:
        frame = sweep(
            configs,
            args.store,
            devices=devices,
            jobs_per_device=args.jobs_per_gpu,
            progress=bar,
            on_run=on_run,
            cpu_jobs=args.cpu_jobs,
            lrs=lrs,
            lr_ratios=ratios,
            lr_extensions=args.lr_extensions,
            name=args.name,
            pack=args.pack,
        )
    finally:
        bar.close()
        runs_bar.close()
    cols = ["run_id", "mode", "rank", "seed", "status", "role", "a_init", "init_seed", "lr", "lr_ratio", "head_lr",
            "trainable_params",
            "wall_s", "validation_accuracy", "test_accuracy", "test_macro_f1", "test_loss", "test_perplexity",
            "heldout_accuracy"]  # fmt: skip
    frame = frame[[c for c in cols if frame[c].notna().any() or c in cols[:5]]]
    write_frame(frame, args.format, args.output, legend=LEGENDS["runs"], columns=RUN_COLUMNS)
    return 0 if (frame["status"] == "completed").all() else 1


def _gpus(text: str) -> list[str]:
    if text == "all":
        from asymviz.jobs import gpu_count

        n = gpu_count()
        if n == 0:
            raise ConfigError("gpus: no GPU visible")
        return [str(i) for i in range(n)]
    try:
        return [str(i) for i in _ints(text)]
    except ConfigError:
        raise ConfigError(f"gpus: expected GPU indices such as 0,1 or 'all', got {text!r} "
                          "(for CPU runs side by side, use --cpu-jobs)") from None  # fmt: skip


def _cmd_pretrain_vit(args) -> int:
    from asymviz.training.vit import run_command

    return run_command(args)


def _cmd_demo(args) -> int:
    import shutil

    from asymviz.cli.output import write_frame
    from asymviz.training.config import preset
    from asymviz.training.sweep import demo

    if args.fresh:
        for cfg in preset("demo"):
            shutil.rmtree(Path(args.store) / cfg.run_id(), ignore_errors=True)
    bar = _Bar(args.quiet)
    try:
        table, wall = demo(args.store, progress=bar)
    finally:
        bar.close()
    write_frame(table, args.format, args.output, legend=LEGENDS["runs"])
    print(f"demo: {len(table)} runs in {wall:.1f} s wall (minilm on fine_foods; always predicting the majority "
          f"class scores 0.658 test accuracy); runs already in the store are reused: --fresh retrains",
          file=sys.stderr)  # fmt: skip
    print(demo_next_steps(args.store, {cfg.mode: cfg.run_id() for cfg in preset("demo")}), file=sys.stderr)
    return 0 if (table["status"] == "completed").all() else 1


def demo_next_steps(store: str | Path, run_ids: dict[str, str]) -> str:
    """Where the demo's runs (`run_ids`: mode -> run id) and adapters are, and commands on them that can be
    pasted as they are."""
    root = Path(store).resolve()
    runs = {mode: root / run_id for mode, run_id in run_ids.items()}
    lines = [f"runs:     {root}"] + [f"  {mode:<7} {path}/adapter" for mode, path in runs.items()]
    ab, b_only = runs.get("ab"), runs.get("b_only")
    lines.append("next:")
    if ab is not None and b_only is not None:
        lines += [
            f"  asymviz spectra {ab}/adapter --which B",
            f"  asymviz similarity {ab}/adapter {b_only}/adapter --which B",
            f"  asymviz card {b_only}/adapter",
            f"  asymviz align {b_only} --summary",
        ]
    lines.append(f"  asymviz runs list --store {root}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# the command lines other programs start (the app, through asymviz.jobs)


def train_command(model: str, task: str, mode: str, out: str | Path, rank: int = 8, steps: int | None = None,
                  seed: int = 0, device: str = "cpu", extra: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """The `asymviz train` command line (the CLI's public contract) for one run."""
    argv = [sys.executable, "-m", "asymviz", "train", "--model", model, "--task", task, "--mode", mode,
            "--rank", str(rank), "--seed", str(seed), "--device", device, "--out", str(out)]  # fmt: skip
    if steps is not None:
        argv += ["--steps", str(steps)]
    return argv + [str(a) for a in extra]


# ----------------------------------------------------------------------------------------------------------


def add_commands(sub) -> None:
    """Register train, sweep, pretrain-vit and demo on the asymviz CLI's subparsers (runs: asymviz.cli.runs)."""
    from asymviz.cli.output import add_output_args

    p = sub.add_parser(
        "train", help="fine-tune one run (ab, b_only, a_only or the head_only control) into a folder"
    )
    _add_config_flags(p, single=True)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a completed run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "sweep", help="many runs (tasks x modes x seeds x ranks) into a store; resumable", epilog=COLUMNS_HELP
    )
    _add_config_flags(p, single=False)
    p.add_argument("--configs", metavar="FILE", help="a JSON list of TrainConfig objects to run instead of the grid "
                   "of --tasks x --modes x --seeds ...")  # fmt: skip
    p.add_argument("--tasks", help="comma-separated tasks (default fine_foods)")
    p.add_argument(
        "--modes",
        help="comma-separated modes (default ab,b_only,a_only; head_only: the control)",
        default="ab,b_only,a_only",
    )
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--ranks", help="comma-separated ranks (default: --rank)")
    p.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    p.add_argument(
        "--a-inits", help="b_only: comma-separated frozen-A inits to sweep (orthogonal,gaussian,kaiming)"
    )
    p.add_argument("--init-seeds", help="comma-separated init seeds to sweep (default: each run's --seeds)")
    p.add_argument("--shared-init", type=int, metavar="SEED",
                   help="every run starts from the init of seed SEED (= --init-seeds SEED)")  # fmt: skip
    p.add_argument("--lrs", help="learning rate grid, e.g. 3e-4,1e-3,3e-3: chosen per task, mode and rank on the "
                   "validation split (first seed), then every run uses it; the head's lr is chosen once per task "
                   "on the head_only control's grid; a best lr at an end extends the grid; lr_selection.csv")  # fmt: skip
    p.add_argument("--lr-ratios", help="mode ab: LoRA+ ratios lr_B / lr_A searched with --lrs, e.g. 1,4,16")
    p.add_argument("--lr-extensions", type=int, default=3,
                   help="points a grid may add past an end where its best lr sits (default 3; 0: none)")  # fmt: skip
    p.add_argument("--name", default="sweep", help="this sweep's name in the store's sweep.json")
    p.add_argument("--gpus", help="GPU indices (e.g. 0,1) or 'all': one worker process per GPU")
    p.add_argument("--jobs-per-gpu", type=int, default=1, help="runs in flight on each GPU (default 1)")
    p.add_argument("--cpu-jobs", type=int, default=1,
                   help="without --gpus: runs side by side in forked CPU processes (default 1)")  # fmt: skip
    p.add_argument("--pack", type=int, default=1, help="without --gpus / --cpu-jobs: train up to K compatible "
                   "runs together, one frozen base and K adapters per step (asymviz.training.multi; default 1)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_args(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "pretrain-vit", help="pretrain the small ViT of the image experiments on Fashion-MNIST"
    )
    from asymviz.training.vit import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_pretrain_vit)

    p = sub.add_parser(
        "demo",
        help="the CPU demo: minilm on fine_foods, ab vs b_only vs a_only vs head only, one seed",
        epilog=COLUMNS_HELP,
    )
    p.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    p.add_argument("--fresh", action="store_true", help="retrain even if the demo's runs are in the store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_args(p)
    p.set_defaults(func=_cmd_demo)
