"""The analysis commands: spectra, similarity and report on adapter files (nothing heavy imported here).

asymviz spectra ADAPTER [--which delta|A|B|all] [--format csv|json|table] [-o FILE]
asymviz similarity ADAPTER ADAPTER [...] [--which A|B|delta|all] [--format ...] [-o FILE]
asymviz report ADAPTER [--against ADAPTER] -o report.html
asymviz info ADAPTER [--modules] [--format csv|json|table] [-o FILE]

ADAPTER is a path (PEFT, kohya, diffusers, mlx-lm or torchtune files: see asymviz.adapters.formats) or a
Hub repo id `org/name[@revision]`. What format was detected and where the scaling came from is per adapter,
not per row: `asymviz info` prints it; spectra and similarity rows stay as they are.
"""

from __future__ import annotations

import sys

from asymviz.cli.output import (
    COLUMNS_HELP,
    LEGENDS,
    add_output_args,
    progress_bar,
    warn_problems,
    write_frame,
)
from asymviz.errors import AsymvizError


def _cmd_spectra(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.spectra import singular_spectrum

    adapter = load_adapter(adapter_path(args.adapter))
    which = ("A", "B", "delta") if args.which == "all" else (args.which,)
    frame = singular_spectrum(adapter, which=which, progress=progress_bar(len(adapter), "spectra"))
    warn_problems(adapter)
    write_frame(frame, args.format, args.output, legend=LEGENDS["spectra"])
    return 0


def _cmd_similarity(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.similarity import pairwise_similarity

    if len(args.adapters) < 2:
        raise AsymvizError(
            "similarity: give at least two adapters (the same one twice compares it with itself)"
        )
    adapters = [load_adapter(adapter_path(p)) for p in args.adapters]
    which = ("A", "B", "delta") if args.which == "all" else (args.which,)
    n_modules = max(len(a) for a in adapters) * len(adapters) * (len(adapters) - 1) // 2
    frame = pairwise_similarity(
        adapters,
        names=distinct_labels(args.adapters),
        which=which,
        k=args.k,
        progress=progress_bar(n_modules, "similarity"),
    )
    for a in adapters:
        warn_problems(a)
    write_frame(frame, args.format, args.output, legend=LEGENDS["similarity"])
    return 0


def adapter_path(path: str) -> str:
    """A run folder (run.json + adapter/) stands for its trained adapter, as `asymviz card` reads it."""
    from asymviz.runs import adapter_dir, is_run_folder

    return str(adapter_dir(path)) if path and is_run_folder(path) else path


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is one `error:` line)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def distinct_labels(paths: list[str]) -> list[str]:
    """The paths as given, with a repeated one numbered ("a", "a#2"): `similarity a a` compares a with itself."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        seen[p] = seen.get(p, 0) + 1
        out.append(p if seen[p] == 1 else f"{p}#{seen[p]}")
    return out


def _cmd_report(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.report import write_report

    adapter = load_adapter(adapter_path(args.adapter))
    against = load_adapter(adapter_path(args.against)) if args.against else None
    path = write_report(adapter, args.output, against=against)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_info(args) -> int:
    import json

    from asymviz.adapters import load_adapter

    adapter = load_adapter(adapter_path(args.adapter))
    if args.modules:
        write_frame(adapter.summary(), args.format, args.output)
        return 0
    info = adapter.info()
    if args.format == "json":
        text = json.dumps(info, indent=1) + "\n"
    elif args.format == "csv":
        text = "key,value\n" + "".join(f"{k},{json.dumps(v)!s}\n" for k, v in info.items() if k != "problems")
    else:
        text = "".join(f"{k}: {v}\n" for k, v in info.items() if k != "problems")
    warn_problems(adapter)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        from pathlib import Path

        Path(args.output).write_text(text)
    return 0


def add_commands(sub) -> None:
    """Register spectra, similarity, report and info."""
    p = sub.add_parser("spectra", help="singular values of A, B and ΔW for every module", epilog=COLUMNS_HELP)
    p.add_argument(
        "adapter", help="adapter folder, .zip, .safetensors, .bin/.pt, or a Hub repo id org/name[@rev]"
    )
    p.add_argument("--which", choices=("delta", "A", "B", "all"), default="all")
    add_output_args(p)
    p.set_defaults(func=_cmd_spectra)

    p = sub.add_parser(
        "similarity", help="subspace similarity between adapters, per module", epilog=COLUMNS_HELP
    )
    p.add_argument("adapters", nargs="+", metavar="ADAPTER")
    p.add_argument("--which", choices=("A", "B", "delta", "all"), default="all")
    p.add_argument(
        "--k", type=positive_int, default=None, help="top-k subspace of ΔW (default: the smaller rank)"
    )
    add_output_args(p)
    p.set_defaults(func=_cmd_similarity)

    p = sub.add_parser("report", help="a standalone HTML report with Plotly figures and tables")
    p.add_argument("adapter")
    p.add_argument("--against", metavar="ADAPTER", help="a second adapter to compare with, module by module")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "info", help="what an adapter is: detected format, modules, ranks, where the scaling comes from"
    )
    p.add_argument("adapter")
    p.add_argument(
        "--modules", action="store_true", help="one row per module (asymviz.adapters SUMMARY_COLUMNS)"
    )
    add_output_args(p)
    p.set_defaults(func=_cmd_info)
