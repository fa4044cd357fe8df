"""`asymviz align` and `asymviz diagnose`: where A and B point, and the literature's adapter diagnostics.

    asymviz align ADAPTER --base MODEL --task NAME|FILE [--samples 256] [--k 8] [--format csv|json|table] [-o FILE]
    asymviz diagnose ADAPTER --base MODEL [--k 10] [--eps 0.5] [--intruders] [--format ...] [-o FILE]

ADAPTER is a PEFT adapter folder or a run folder (``adapter/`` + ``init/`` + ``run.json``; align then adds the
init's rows). MODEL is "minilm", "smollm2", a local model folder or a hub id in the local cache; without
--base, the run's model or the adapter config's base_model_name_or_path. Without --task, the run's task.
Imports nothing heavy at module level (the CLI's --help stays fast).
"""

from __future__ import annotations

import sys

from asymviz.cli.output import (
    COLUMNS_HELP,
    LEGENDS,
    add_output_args,
    progress_bar,
    quiet_transformers,
    staged_progress,
    write_frame,
)
from asymviz.errors import AsymvizError


def add_commands(sub) -> None:
    p = sub.add_parser(
        "align",
        help="alignment of A with the input subspace and of B with the output-gradient subspace",
        description="Per module: similarity of A's row space with the top-k principal subspace of the module's "
        "inputs, of B's column space with that of the loss gradients at its output (or of its outputs with "
        "--no-labels), and of both with the base weight's top-k singular subspaces; each with the value a "
        "random subspace would get.",
        epilog=COLUMNS_HELP,
    )
    p.add_argument("adapter", help="PEFT adapter folder, or a run folder with adapter/ and init/")
    p.add_argument(
        "--base",
        metavar="MODEL",
        help="minilm, smollm2, a model folder or .gguf (default: from the adapter config)",
    )
    p.add_argument(
        "--task",
        metavar="NAME|FILE",
        help="task name, or .csv/.jsonl[.gz] with text + label|answer (default: the run's)",
    )
    p.add_argument(
        "--samples", type=_positive, default=256, help="examples drawn from the task (default: %(default)s)"
    )
    p.add_argument(
        "--k", type=_positive, default=8, help="dimension of the reference subspaces (default: %(default)s)"
    )
    p.add_argument("--batch-size", type=_positive, default=16, help="default: %(default)s")
    p.add_argument(
        "--max-length", type=_positive, default=128, help="tokens per example (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default: %(default)s)")
    p.add_argument(
        "--no-labels", action="store_true", help="compare B with the base layer's outputs, not loss gradients"
    )
    p.add_argument(
        "--no-weight", action="store_true", help="leave out the comparison with W0's singular vectors"
    )
    p.add_argument("--summary", action="store_true", help="mean over modules per (source, which, side)")
    add_output_args(p)
    p.set_defaults(func=_cmd_align)

    p = sub.add_parser(
        "diagnose",
        help="intruder dimensions, amplification factor and DoRA decomposition (needs the base weights, no data)",
        description="Per module: intruder dimensions of W0+ΔW (Shuttleworth et al. 2024), LoRA's amplification "
        "factor ‖ΔW‖/‖UᵀW0V‖ (Hu et al. 2021) and DoRA's magnitude and direction change (Liu et al. 2024).",
        epilog=COLUMNS_HELP,
    )
    p.add_argument("adapter", help="PEFT adapter folder, .safetensors, .zip, or a run folder")
    p.add_argument(
        "--base",
        metavar="MODEL",
        help="minilm, smollm2, a model folder or .gguf (default: from the adapter config)",
    )
    p.add_argument(
        "--k", type=_positive, default=10, help="top singular vectors of W0+ΔW tested (default: %(default)s)"
    )
    p.add_argument(
        "--eps", type=float, default=0.5, help="intruder when best |cosine| < eps (default: %(default)s)"
    )
    p.add_argument(
        "--vectors",
        choices=("left", "right"),
        default="left",
        help="singular vectors compared (default: %(default)s)",
    )
    p.add_argument(
        "--intruders", action="store_true", help="one row per (module, singular vector) instead of per module"
    )
    add_output_args(p)
    p.set_defaults(func=_cmd_diagnose)


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _warnings_to_stderr() -> None:
    """The library's log warnings (asymviz.*) as `warning: ...` lines on stderr."""
    import logging

    logger = logging.getLogger("asymviz")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def _base_of(args, adapter) -> str:
    from asymviz.probes.alignment import run_settings

    base = args.base or run_settings(args.adapter).get("model") or adapter.base_model
    if not base:
        raise AsymvizError("neither a run nor the adapter config names the base model: give --base MODEL")
    return base


def _cmd_align(args) -> int:
    _warnings_to_stderr()
    from asymviz.probes.alignment import align, alignment_summary

    quiet_transformers()
    progress = staged_progress()

    frame = align(
        args.adapter, args.base, args.task, samples=args.samples, k=args.k,
        batch_size=args.batch_size, max_length=args.max_length, labels=not args.no_labels, seed=args.seed,
        weight_side=not args.no_weight, progress=progress,
    )  # fmt: skip
    legend = LEGENDS["align"]
    if frame["similarity"].isna().any():
        legend += (
            " NaN rows: that factor is all zeros (B at its zero init), so it spans no subspace to compare."
        )
    if args.summary:
        frame = alignment_summary(frame)
    write_frame(frame, args.format, args.output, legend=legend)
    return 0


def _cmd_diagnose(args) -> int:
    from asymviz.probes.alignment import open_adapter
    from asymviz.probes.diagnostics import diagnose, intruder_dimensions

    if not 0 < args.eps <= 1:
        raise AsymvizError(f"--eps must be in (0, 1], got {args.eps}")
    quiet_transformers()
    adapter, _, _ = open_adapter(args.adapter)
    fn = intruder_dimensions if args.intruders else diagnose
    frame = fn(
        adapter, _base_of(args, adapter), k=args.k, eps=args.eps, vectors=args.vectors,
        progress=progress_bar(len(adapter), "diagnose"),
    )  # fmt: skip
    for line in adapter.problems:
        print(f"warning: {line}", file=sys.stderr)
    write_frame(
        frame, args.format, args.output, legend=LEGENDS["intruders" if args.intruders else "diagnose"]
    )
    return 0
