"""`asymviz tasks` and `asymviz probe`: what the bundled data holds, and what a linear probe gets from it.

    asymviz tasks [--task NAME[,NAME...]] [--split-seed 0] [--format table|csv|json] [-o FILE]
    asymviz probe --model MODEL --task NAME|FILE[,...] [--features mean|pooler] [--max-length 128]
                  [--batch-size 64] [--threads N] [--no-cache] [--format table|csv|json] [-o FILE]

`tasks` reads the data files only (no model, about a second): per task and split the rows, unique texts,
classes, the largest share of one item and the majority-class accuracy (asymviz.base.tasks.task_table).
`probe` fits a logistic regression on the frozen model's pooled features, C chosen on validation, and scores it
on test (asymviz.probes.linear_probe). Imports nothing heavy at module level (the CLI's --help stays fast).
"""

from __future__ import annotations

from asymviz.cli.output import COLUMNS_HELP, add_output_args, write_frame
from asymviz.errors import ConfigError

TASKS_LEGEND = (
    "unique_texts: distinct inputs (images: distinct pixel arrays); classes: labels present; "
    "largest_item_share: the largest share of the split's rows held by one input; majority_accuracy: "
    "accuracy of always answering the training split's most frequent class."
)
PROBE_LEGEND = (
    "logistic regression on the frozen model's features (mean: masked mean of the last hidden state; pooler: "
    "what a BERT classification head reads); C chosen on validation from 1e-3..1e2; test_* scored once on test; "
    "seconds: wall time, cached: features read from the cache."
)


def add_commands(sub) -> None:
    p = sub.add_parser(
        "tasks",
        help="the bundled tasks and their splits: rows, unique texts, classes, largest item share, majority baseline",
        description="One row per (task, split): rows, unique texts (images: distinct images), classes present, "
        "the largest share of the rows held by one unique item, and the accuracy of always answering the "
        "training split's majority class. Reads the data only (no model).",
        epilog=COLUMNS_HELP,
    )
    p.add_argument("--task", metavar="NAME[,NAME...]", help="only these tasks (default: all bundled tasks)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the splits (default: %(default)s)")
    add_output_args(p)
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser(
        "probe",
        help="linear-probe baseline: logistic regression on the frozen model's features (C chosen on validation)",
        description="Logistic regression (standardised features, L2) on the frozen base model's pooled "
        "features of each split; C is chosen on validation from 1e-3..1e2 (a decade apart), the classifier is "
        "scored once on test. Features are cached under $ASYMVIZ_CACHE/linear_probe/ (see --no-cache).",
        epilog=COLUMNS_HELP,
    )
    p.add_argument(
        "--model", required=True, metavar="MODEL", help="minilm, smollm2, a model folder or hub id"
    )
    p.add_argument(
        "--task",
        required=True,
        metavar="NAME|FILE[,...]",
        help="text classification task(s), comma-separated",
    )
    p.add_argument(
        "--features",
        choices=("mean", "pooler"),
        default="mean",
        help="mean: masked mean of the last hidden state; pooler: BERT's pooler output, what its "
        "classification head reads (default: %(default)s)",
    )
    p.add_argument("--max-length", type=_positive, default=128, help="tokens per text (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, default=64, help="default: %(default)s")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the splits (default: %(default)s)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    add_output_args(p)
    p.set_defaults(func=_cmd_probe)


def _positive(text: str) -> int:
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("--task: give at least one task")
    return names


def _cmd_tasks(args) -> int:
    from asymviz.base.tasks import TASKS, task_table

    names = _names(args.task) if args.task else list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ConfigError(f"--task: unknown task {unknown[0]!r}; bundled: {', '.join(TASKS)}")
    frame = task_table(tuple(names), split_seed=args.split_seed)
    write_frame(frame, args.format, args.output, legend=TASKS_LEGEND)
    return 0


def _cmd_probe(args) -> int:
    import pandas as pd

    from asymviz.cli.output import progress_bar, quiet_transformers
    from asymviz.probes.linear_probe import linear_probe

    quiet_transformers()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    frames = []
    for name in _names(args.task):
        bar = {}

        def progress(done: int, total: int, bar=bar, name=name) -> None:
            if "update" not in bar:
                bar["update"] = progress_bar(total, f"features {name}", min_total=256)
            if bar["update"]:
                bar["update"](done)

        frames.append(
            linear_probe(
                args.model,
                name,
                features=args.features,
                max_length=args.max_length,
                batch_size=args.batch_size,
                split_seed=args.split_seed,
                cache=not args.no_cache,
                progress=progress,
            )  # fmt: skip
        )
    columns = ["task", "features", "C", "validation_accuracy", "test_accuracy", "test_macro_f1", "n_train",
               "seconds", "cached"]  # fmt: skip
    write_frame(pd.concat(frames, ignore_index=True), args.format, args.output, legend=PROBE_LEGEND,
                columns=columns)  # fmt: skip
    return 0
