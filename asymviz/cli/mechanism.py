"""`asymviz mechanism`: the mechanism test's observed vs predicted share of A&B's gain (asymviz.mechanism).

    asymviz mechanism cached_runs/minilm_mechanism --format table
    asymviz mechanism runs --metric test_accuracy --max-examples 1000 --format csv -o mechanism.csv

STORE_OR_GROUP is a run store or one group folder of it. Its mechanism-test runs (LoRA on one module: one
--targets name with --top-layers 1; modes head_only, ab and b_only / a_only) are compared; the module's input
and output-gradient second moments are measured over the training split on the first A&B run that kept its
adapter (a forward and backward pass on the CPU: ~1 min for MiniLM on 3,600 examples). Nothing heavy is
imported at module level (the CLI's --help stays fast).
"""

from __future__ import annotations

import argparse

from asymviz.cli.output import (
    COLUMNS_HELP,
    LEGENDS,
    add_output_args,
    quiet_transformers,
    staged_progress,
    write_frame,
)

TABLE_COLUMNS = ("task", "mode", "rank", "d_over_r", "n_seeds", "observed", "observed_low", "observed_high",
                 "predicted", "exact", "realised", "predicted_curvature")  # fmt: skip


def add_commands(sub) -> None:
    p = sub.add_parser(
        "mechanism",
        help="mechanism test: observed vs predicted share of A&B's gain kept by B only and by A only",
        description="For runs with LoRA on one module: the share of A&B's gain over the head-only control that "
        "B only and A only keep (ratio of paired means over seeds, Fieller 95 % CI), next to the paper's "
        "linear-regression prediction for the module's measured input covariance Σ with Δ = A&B's ΔW "
        "(B only: deterministic equivalent of E[kept], exact for a flat Σ; A only: r/d_out), the prediction "
        "for the runs' actual frozen factors, and the same with the outputs weighted by the measured loss "
        "curvature (K-FAC). Formulas and assumptions: the docstring of asymviz.mechanism.",
        epilog=COLUMNS_HELP,
    )
    p.add_argument("store", metavar="STORE_OR_GROUP", help="a run store, or one group folder of it")
    p.add_argument("--metric", choices=("test_loss", "test_accuracy"), default="test_loss",
                   help="metric of the observed share (default: %(default)s)")  # fmt: skip
    p.add_argument("--max-examples", type=_positive, default=None,
                   help="measure the moments on a seeded subset of this many training examples "
                   "(default: the whole training split)")  # fmt: skip
    p.add_argument("--batch-size", type=_positive, default=32, help="default: %(default)s")
    p.add_argument("--base", metavar="MODEL",
                   help="the base model (minilm, smollm2, a folder) when the runs' own is not here (default: "
                   "the runs' model, else a models/<name> folder above the runs)")  # fmt: skip
    add_output_args(p)
    p.set_defaults(func=_cmd_mechanism)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_mechanism(args) -> int:
    from asymviz.mechanism import mechanism_runs, mechanism_table

    mechanism_runs(args.store)  # an error line before any model is loaded
    quiet_transformers()
    progress = staged_progress("batch")

    frame = mechanism_table(
        args.store, args.metric, args.max_examples, args.batch_size, progress=progress, base=args.base
    )
    write_frame(frame, args.format, args.output, legend=LEGENDS["mechanism"], columns=TABLE_COLUMNS)
    return 0
