"""The run-store commands of the asymviz CLI: list runs, compare modes over paired seeds, cancel a run.

    asymviz runs list --store runs --format table
    asymviz runs compare --store cached_runs --group minilm_tasks --baseline ab --format table   # paired stats
    asymviz runs compare --store runs --baseline head_only       # what LoRA adds to the trained head
    asymviz runs compare --store cached_runs --design rank       # exp 2: the d/r table (rank-trend: slopes)
    asymviz runs compare --store cached_runs --design head       # exp 3: per head arm (head-interaction)
    asymviz runs similarity-2x2 --store cached_runs              # exp 5: the 2×2 cells (--table contrasts)
    asymviz runs cancel RUN_ID --store runs

Reads the store through asymviz.runs, asymviz.results, asymviz.rank_sweep and asymviz.head_factorial (nothing
heavy imported); similarity-2x2 loads the runs' adapters (asymviz.similarity_design).
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


DESIGNS = ("modes", "claims", "rank", "rank-trend", "head", "head-interaction")
DESIGN_COLUMNS = {  # what fits a terminal's width; --format csv or json gives every column
    "modes": ["task", "rank", "mode", "baseline", "n_pairs", "diff_mean", "ci_low", "ci_high", "p_holm", "verdict"],
    "claims": ["task", "rank", "mode", "baseline", "n_pairs", "diff_mean", "ci_low", "ci_high", "p_holm", "verdict"],
    "rank": ["task", "rank", "d_over_r", "mode", "baseline", "diff_mean", "ci_low", "ci_high", "verdict"],
    "rank-trend": ["task", "mode", "baseline", "n_seeds", "slope", "ci_low", "ci_high", "p_holm", "verdict"],
    "head": ["task", "head", "mode", "baseline", "diff_mean", "ci_low", "ci_high", "verdict"],
    "head-interaction": ["task", "contrast", "interaction", "ci_low", "ci_high", "ci_method", "verdict"],
}  # fmt: skip


def _design_groups(args, store) -> list[str] | None:
    """The groups a design reads: --group (comma-separated), else the design's default groups where the store
    has them (rank: minilm_rank; head: minilm_tasks and minilm_head), else every group (None)."""
    from asymviz.head_factorial import HEAD_GROUPS
    from asymviz.rank_sweep import RANK_GROUP
    from asymviz.results import ResultsError

    have = set(store.groups())
    if args.group:
        groups = [g.strip() for g in args.group.split(",") if g.strip()]
        missing = [g for g in groups if g not in have]
        if missing:
            raise ResultsError(f"group {', '.join(missing)!r}: not in {args.store} (groups: "
                               f"{', '.join(sorted(have)) or 'none'})")  # fmt: skip
        return groups
    default = {"rank": [RANK_GROUP], "rank-trend": [RANK_GROUP], "head": list(HEAD_GROUPS),
               "head-interaction": list(HEAD_GROUPS)}.get(args.design)  # fmt: skip
    if default and set(default) <= have:
        return default
    if default and have & set(default):
        raise ResultsError(f"--design {args.design} reads groups {', '.join(default)}; {args.store} has only "
                           f"{', '.join(sorted(have & set(default)))}: name the groups with --group")  # fmt: skip
    return None


def _cmd_runs_compare(args) -> int:
    """`asymviz runs compare`: asymviz.results.compare_modes on the store's counted runs (one row per task,
    rank and mode against the baseline, plus the pooled rows, task "all"), or with --design one of the v2
    experiments' tables (asymviz.rank_sweep, asymviz.head_factorial) on its groups."""
    import pandas as pd

    from asymviz.results import ResultsError, compare_modes, counted_runs
    from asymviz.runs import RunStore

    store = RunStore(args.store)
    if not store.root.is_dir():
        raise ResultsError(f"no run store at {args.store}")
    runs = store.list()
    groups = _design_groups(args, store)
    counted = (pd.concat([counted_runs(runs, group=g) for g in groups], ignore_index=True) if groups
               else counted_runs(runs))  # fmt: skip
    if args.design == "modes":
        frame = compare_modes(counted, args.metric, args.baseline, args.margin)
    elif (
        args.design == "claims"
    ):  # the paper's pairs of modes, Holm within each group (RESULTS.md, the Overview)
        from asymviz.results import claim_comparisons

        parts = [
            claim_comparisons(part, args.metric, args.margin)
            for _, part in counted.groupby("group", sort=True)
        ]
        frame = pd.concat([p for p in parts if len(p)], ignore_index=True) if parts else pd.DataFrame()
    elif args.design in ("rank", "rank-trend"):
        from asymviz.rank_sweep import d_in_of, rank_sweep_table, rank_trend_table

        fn = rank_sweep_table if args.design == "rank" else rank_trend_table
        dims = d_in_of(counted, args.d_in, source=runs)  # a kept adapter anywhere in the store gives d_in
        frame = fn(counted, args.metric, args.margin, d_in=dims)
    else:
        from asymviz.head_factorial import head_factorial_table, head_interaction_table

        fn = head_factorial_table if args.design == "head" else head_interaction_table
        frame = fn(counted, args.metric, args.margin, rank=args.rank)
    if frame.empty:
        raise ResultsError(f"nothing to compare: no task and rank has seeds of both {args.baseline} and another "
                           f"mode with {args.metric or 'test_accuracy / test_loss'}")  # fmt: skip
    columns = list(DESIGN_COLUMNS[args.design])
    legend = LEGENDS["compare"] if args.design in ("modes", "claims") else LEGENDS[f"compare-{args.design}"]
    split = (
        "group" if "group" in frame.columns and frame["group"].nunique() > 1 else None
    )  # one table per group
    write_frame(frame, args.format, args.output, legend=legend, columns=columns, split_by=split)
    return 0


def _cmd_runs_similarity(args) -> int:
    """`asymviz runs similarity-2x2`: asymviz.similarity_design on the store's (or group's) ab runs with adapters."""
    from asymviz.results import ResultsError
    from asymviz.runs import RunStore
    from asymviz.similarity_design import (
        SIMILARITY_GROUP,
        design_runs,
        similarity_2x2,
        similarity_contrasts,
        similarity_pairs,
    )

    store = RunStore(args.store)
    if not store.root.is_dir():
        raise ResultsError(f"no run store at {args.store}")
    runs = store.list()
    group = args.group or (SIMILARITY_GROUP if SIMILARITY_GROUP in store.groups() else None)
    if group:
        if group not in set(runs["group"]):
            raise ResultsError(
                f"group {group!r}: not in {args.store} (groups: {', '.join(store.groups()) or 'none'})"
            )
        runs = runs[runs["group"] == group]
    pairs = similarity_pairs(design_runs(runs, args.mode, args.rank))
    if args.table == "pairs":
        frame, columns = (
            pairs,
            ["run_1", "run_2", "same_init", "same_task", "which", "similarity", "random_baseline"],
        )
    elif args.table == "contrasts":
        frame, columns = similarity_contrasts(pairs), None
    else:
        frame, columns = similarity_2x2(pairs), ["which", "same_init", "same_task", "n_pairs", "mean", "ci_low",
                                                 "ci_high", "random_baseline", "k"]  # fmt: skip
    write_frame(frame, args.format, args.output, legend=LEGENDS["similarity-2x2"], columns=columns)
    return 0


def _cmd_runs_cancel(args) -> int:
    from asymviz.runs import RunStore

    store = RunStore(args.store)
    store.get(args.run_id)  # raises when it does not exist
    store.cancel(args.run_id)
    print(f"cancel requested: {args.run_id}", file=sys.stderr)
    return 0


def add_commands(sub) -> None:
    """Register `runs` (list, compare, similarity-2x2, cancel) on the asymviz CLI's subparsers."""
    p = sub.add_parser("runs", help="the run store: list runs, compare modes, similarity 2×2, cancel one")
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
        "--group",
        help="only the runs of these group folders, comma-separated (default: every group, "
        "compared apart; --design rank: minilm_rank, head: minilm_tasks,minilm_head where present)",
    )
    q.add_argument(
        "--design",
        choices=DESIGNS,
        default="modes",
        help="modes: every mode against --baseline (default); claims: the paper's pairs of modes (B only vs "
        "A&B, B only vs A only, each LoRA mode vs head only), Holm within each group, as RESULTS.md and the "
        "Overview state them; rank: the d/r sweep's comparisons at "
        "every rank (asymviz.rank_sweep); rank-trend: each gap's slope per doubling of d/r; head: the "
        "modes within each head arm (asymviz.head_factorial); head-interaction: how each gap changes "
        "with the classifier-only head",
    )
    q.add_argument(
        "--d-in",
        type=int,
        help="--design rank: the adapted modules' d_in (default: read from a run that keeps its adapter)",
    )
    q.add_argument("--rank", type=int, default=8, help="--design head: the LoRA rank compared (default: 8)")
    q.add_argument("--baseline", default="ab", help="the mode the others are compared with (default: ab)")
    q.add_argument("--margin", type=float, default=0.01,
                   help="equivalence margin in the metric's units (default: 0.01, one point of accuracy)")  # fmt: skip
    q.add_argument("--metric", help="test_accuracy, test_loss, ... (default: test_accuracy, else test_loss)")
    add_output_args(q)
    q.set_defaults(func=_cmd_runs_compare)
    q = rsub.add_parser(
        "similarity-2x2",
        help="A and B subspace similarity over pairs of runs: same/other init × same/other task, with CIs",
        epilog=COLUMNS_HELP,
    )
    q.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    q.add_argument(
        "--group", help="the group folder of the design (default: similarity where present, else all)"
    )
    q.add_argument("--mode", default="ab", help="the mode whose runs are paired (default: ab)")
    q.add_argument("--rank", type=int, help="the LoRA rank (default: the only one there is)")
    q.add_argument(
        "--table",
        choices=("cells", "contrasts", "pairs"),
        default="cells",
        help="cells: the 2×2 per factor (default); contrasts: init effect, task effect, B − A, vs "
        "chance, with verdicts; pairs: one row per pair of runs and factor",
    )
    add_output_args(q)
    q.set_defaults(func=_cmd_runs_similarity)
    q = rsub.add_parser("cancel", help="ask a running run to stop (status cancelled)")
    q.add_argument("run_id")
    q.add_argument("--store", default=DEFAULT_STORE, help="run store folder (default: %(default)s)")
    q.set_defaults(func=_cmd_runs_cancel)
