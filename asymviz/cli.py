"""The asymviz command line.

    asymviz spectra ADAPTER [--which delta|A|B|all] [--format csv|json|table] [-o FILE]
    asymviz similarity ADAPTER ADAPTER [...] [--which A|B|delta|all] [--format ...] [-o FILE]
    asymviz report ADAPTER [--against ADAPTER] -o report.html
    asymviz card ADAPTER [--base MODEL] [--init INIT_ADAPTER] [--format table|json]   (asymviz.card_cli)
    asymviz app [streamlit options]

Other subsystems add their commands (train, sweep, runs, demo, align) through an `add_commands(subparsers)`
function listed in `_COMMAND_MODULES`; each handler takes the parsed args and returns an exit status.
Bad input ends with exit status 2 and one line on stderr that starts with `error:`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from asymviz.errors import AsymvizError

# Modules that register more subcommands; each defines add_commands(subparsers) and imports nothing heavy
# at its top level (the CLI's --help must stay fast).
_COMMAND_MODULES = (
    "asymviz.training.commands",
    "asymviz.alignment_commands",
    "asymviz.card_cli",
)

FORMATS = ("csv", "json", "table")


class UsageError(AsymvizError):
    """A command line that argparse rejected."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message, exit 2 through main()
        raise UsageError(f"{self.prog}: {message}")


# ----------------------------------------------------------------------------------------------------------
# helpers shared by every command


def write_frame(frame, fmt: str, out: str | None) -> None:
    """Write a DataFrame as csv, json (records) or a plain-text table to `out` (or stdout)."""
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", indent=1, double_precision=10) + "\n"
    elif fmt == "table":
        text = frame.to_string(index=False, max_rows=None) + "\n"
    else:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def progress_bar(total: int, desc: str, min_total: int = 16) -> Callable[[int], None] | None:
    """A tqdm bar on stderr for long jobs (None for short ones, or when stderr is not a terminal-like stream)."""
    if total < min_total or os.environ.get("ASYMVIZ_NO_PROGRESS"):
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="module", file=sys.stderr, leave=False)

    def update(done: int) -> None:
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def add_output_args(p: argparse.ArgumentParser, default_format: str = "table") -> None:
    p.add_argument("--format", choices=FORMATS, default=default_format, help="output format (default: %(default)s)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


# ----------------------------------------------------------------------------------------------------------
# analysis commands


def _cmd_spectra(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.spectra import singular_spectrum

    adapter = load_adapter(args.adapter)
    which = ("A", "B", "delta") if args.which == "all" else (args.which,)
    frame = singular_spectrum(adapter, which=which, progress=progress_bar(len(adapter), "spectra"))
    _warn_problems(adapter)
    write_frame(frame, args.format, args.output)
    return 0


def _cmd_similarity(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.similarity import pairwise_similarity

    adapters = [load_adapter(p) for p in args.adapters]
    which = ("A", "B", "delta") if args.which == "all" else (args.which,)
    n_modules = max(len(a) for a in adapters) * len(adapters) * (len(adapters) - 1) // 2
    frame = pairwise_similarity(
        adapters, names=args.adapters, which=which, k=args.k, progress=progress_bar(n_modules, "similarity")
    )
    for a in adapters:
        _warn_problems(a)
    write_frame(frame, args.format, args.output)
    return 0


def _cmd_report(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.report import write_report

    adapter = load_adapter(args.adapter)
    against = load_adapter(args.against) if args.against else None
    path = write_report(adapter, args.output, against=against)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_app(args) -> int:
    from streamlit.web import cli as stcli

    app = Path(__file__).resolve().parent.parent / "streamlit_app.py"
    if not app.exists():
        raise AsymvizError(f"cannot find the app at {app}: run `asymviz app` from a source checkout")
    extra = list(args.streamlit_args)
    if extra[:1] == ["--"]:  # `asymviz app -- --server.port 8600`: argparse keeps the separator
        extra = extra[1:]
    sys.argv = ["streamlit", "run", str(app), *extra]
    return stcli.main()


def _warn_problems(adapter) -> None:
    for line in getattr(adapter, "problems", ()):
        print(f"warning: {line}", file=sys.stderr)


def _add_analysis_commands(sub) -> None:
    p = sub.add_parser("spectra", help="singular values of A, B and ΔW for every module")
    p.add_argument("adapter", help="PEFT adapter folder, .zip, .safetensors or legacy .bin")
    p.add_argument("--which", choices=("delta", "A", "B", "all"), default="all")
    add_output_args(p)
    p.set_defaults(func=_cmd_spectra)

    p = sub.add_parser("similarity", help="subspace similarity between adapters, per module")
    p.add_argument("adapters", nargs="+", metavar="ADAPTER")
    p.add_argument("--which", choices=("A", "B", "delta", "all"), default="all")
    p.add_argument("--k", type=int, default=None, help="top-k subspace of ΔW (default: the smaller rank)")
    add_output_args(p)
    p.set_defaults(func=_cmd_similarity)

    p = sub.add_parser("report", help="a standalone HTML report with Plotly figures and tables")
    p.add_argument("adapter")
    p.add_argument("--against", metavar="ADAPTER", help="a second adapter to compare with, module by module")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("app", help="start the web app (same as `streamlit run streamlit_app.py`)")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="passed on to `streamlit run`, after --, e.g. asymviz app -- --server.port 8600")  # fmt: skip
    p.set_defaults(func=_cmd_app)


# ----------------------------------------------------------------------------------------------------------


def build_parser(extra_modules: Iterable[str] = _COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = _Parser(prog="asymviz", description="See and test the asymmetry of LoRA's A and B factors.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_analysis_commands(sub)
    for name in extra_modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):  # subsystem not in this checkout
                continue
            raise
        module.add_commands(sub)
    return parser


def _version() -> str:
    from asymviz import __version__

    return f"asymviz {__version__}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (AsymvizError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
