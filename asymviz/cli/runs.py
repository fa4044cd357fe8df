"""The run-store commands of the asymviz CLI: list runs, compare modes over paired seeds, cancel a run.

    asymviz runs list --store runs --format table
    asymviz runs compare --store cached_runs --group minilm_tasks --baseline ab --format table   # paired stats
    asymviz runs compare --store runs --baseline head_only       # what LoRA adds to the trained head
    asymviz runs cancel RUN_ID --store runs

Reads the store through asymviz.runs and asymviz.results only (nothing heavy imported).
"""

from __future__ import annotations

import sys
from pathlib import Path

from asymviz.cli.output import COLUMNS_HELP, LEGENDS, RUN_COLUMNS, add_output_args, write_frame
from asymviz.errors import AsymvizError
from asymviz.runs.layout import DEFAULT_STORE


def _cmd_runs_list(args) -> int:
    from asymviz.runs import RunStore

    if not Path(args.store).is_dir():
        raise AsymvizError(f"no run store at {args.store} (a folder of run folders)")
    frame = RunStore(args.store).list()
    if args.format == "table":
        frame = frame.dropna(axis=1, how="all")
    write_frame(frame, args.format, args.output, legend=LEGENDS["runs"], columns=RUN_COLUMNS)
    return 0


def _cmd_runs_compare(args) -> int:
    """`asymviz runs compare`: asymviz.results.compare_modes on the store's counted runs (one row per task,
    rank and mode against the baseline, plus the pooled rows, task "all")."""
    from asymviz.results import ResultsError, compare_modes, counted_runs
    from asymviz.runs import RunStore

    store = RunStore(args.store)
    if not store.root.is_dir():
        raise ResultsError(f"no run store at {args.store}")
    runs = store.list()
    if args.group and args.group not in set(runs["group"]):
        raise ResultsError(
            f"group {args.group!r}: not in {args.store} (groups: {', '.join(store.groups()) or 'none'})"
        )
    frame = compare_modes(counted_runs(runs, group=args.group), args.metric, args.baseline, args.margin)
    if frame.empty:
        raise ResultsError(f"nothing to compare: no task and rank has seeds of both {args.baseline} and another "
                           f"mode with {args.metric or 'test_accuracy / test_loss'}")  # fmt: skip
    columns = [
        "task",
        "rank",
        "mode",
        "baseline",
        "n_pairs",
        "diff_mean",
        "ci_low",
        "ci_high",
        "p_holm",
        "verdict",
    ]
    if frame["group"].nunique() > 1:
        columns.insert(0, "group")
    write_frame(frame, args.format, args.output, legend=LEGENDS["compare"], columns=columns)
    return 0


def _cmd_runs_cancel(args) -> int:
    from asymviz.runs import RunStore

    store = RunStore(args.store)
    store.get(args.run_id)  # raises when it does not exist
    store.cancel(args.run_id)
    print(f"cancel requested: {args.run_id}", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    """Register `runs` (list, compare, cancel) on the asymviz CLI's subparsers."""
    p = sub.add_parser("runs", help="the run store: list runs, compare modes, cancel one")
    rsub = p.add_subparsers(dest="runs_command", metavar="ACTION", parser_class=type(p))
    rsub.required = True
    q = rsub.add_parser(
        "list", help="one row per run (status, config, trainable params, final metrics)", epilog=COLUMNS_HELP
    )
    q.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    add_output_args(q)
    q.set_defaults(func=_cmd_runs_list)
    q = rsub.add_parser(
        "compare",
        help="modes against a baseline over paired seeds: CIs, Holm p, verdicts",
        epilog=COLUMNS_HELP,
    )
    q.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    q.add_argument(
        "--group", help="only the runs of this group folder (default: every group, compared apart)"
    )
    q.add_argument("--baseline", default="ab", help="the mode the others are compared with (default: ab)")
    q.add_argument("--margin", type=float, default=0.01,
                   help="equivalence margin in the metric's units (default: 0.01, one point of accuracy)")  # fmt: skip
    q.add_argument("--metric", help="test_accuracy, test_loss, ... (default: test_accuracy, else test_loss)")
    add_output_args(q)
    q.set_defaults(func=_cmd_runs_compare)
    q = rsub.add_parser("cancel", help="ask a running run to stop (status cancelled)")
    q.add_argument("run_id")
    q.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    q.set_defaults(func=_cmd_runs_cancel)
