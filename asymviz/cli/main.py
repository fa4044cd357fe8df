"""The asymviz command line: one parser, one module per command group (plain imports, nothing heavy at top level).

    asymviz spectra | similarity | report               asymviz.cli.adapters
    asymviz card                                        asymviz.cli.card
    asymviz collection                                  asymviz.cli.collection
    asymviz train | sweep | runs | demo | pretrain-vit  asymviz.cli.training
    asymviz align | diagnose                            asymviz.cli.probes
    asymviz tasks | probe                               asymviz.cli.data
    asymviz mechanism                                   asymviz.cli.mechanism
    asymviz app [streamlit options]                     here

Each handler takes the parsed args and returns an exit status. Bad input ends with exit status 2 and one line
on stderr that starts with `error:`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from asymviz.cli import adapters, card, collection, data, mechanism, probes, runs, training
from asymviz.cli.output import UsageError
from asymviz.errors import AsymvizError, display_name, first_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message, exit 2 through main()
        raise UsageError(f"{self.prog}: {message}")


def _cmd_app(args) -> int:
    from streamlit.web import cli as stcli

    from asymviz.paths import app_script

    app = app_script()  # the installed bundle's, else the checkout's (raises with what to do)
    extra = list(args.streamlit_args)
    if extra[:1] == ["--"]:  # `asymviz app -- --server.port 8600`: argparse keeps the separator
        extra = extra[1:]
    if args.public:  # read by app/state.py: fixed store, no local paths, capped uploads and fine-tunes
        os.environ["ASYMVIZ_PUBLIC"] = "1"
    sys.argv = ["streamlit", "run", str(app), *extra]
    return stcli.main()


def _add_app_command(sub) -> None:
    p = sub.add_parser("app", help="start the web app (same as `streamlit run streamlit_app.py`)")
    p.add_argument("--public", action="store_true",
                   help="for a shared server: the run store and live-run folder fixed by ASYMVIZ_STORE and "
                   "ASYMVIZ_LIVE_DIR, no local paths, capped uploads and fine-tunes (same as ASYMVIZ_PUBLIC=1)")  # fmt: skip
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                   help="passed on to `streamlit run`, after --, e.g. asymviz app -- --server.port 8600")  # fmt: skip
    p.set_defaults(func=_cmd_app)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asymviz", description="See and test the asymmetry of LoRA's A and B factors.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for group in (adapters, card, collection, training, runs, probes, mechanism, data):
        group.add_commands(sub)
    _add_app_command(sub)
    return parser


def _version() -> str:
    """`asymviz --version`: the installed distribution's version, read from its metadata (the package's own
    __version__ only when asymviz was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"asymviz {version('asymviz')}"
    except PackageNotFoundError:
        import asymviz

        return f"asymviz {getattr(asymviz, '__version__', '0+unknown')}"


def _check_output(args) -> None:
    """Refuse an -o FILE whose folder does not exist before any work is done (one error line, not a late OSError)."""
    out = getattr(args, "output", None)
    if out in (None, "-"):
        return
    folder = Path(out).expanduser().parent
    if not folder.is_dir():
        raise UsageError(f"-o {out}: the folder {folder} does not exist")


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0, or 2 with exactly one `error:` line as the first line on stderr.

    Library warnings (torch, transformers, numpy) raised while the command runs are held back: after a
    successful command they follow the output as `warning:` lines on stderr; after a failure they are
    dropped, so the error line stays the only line. An exception that is not an AsymvizError is a bug or an
    input asymviz did not foresee: it is still reported in one line (its type and first line), never as a
    traceback (set ASYMVIZ_DEBUG=1 to see it).
    """
    import warnings

    words = argv if argv is not None else sys.argv[1:]
    command = next((w for w in words if not w.startswith("-")), None)
    with (
        warnings.catch_warnings(record=True) as caught,
        _hold_native_output(command in HOLD_NATIVE) as native,
    ):
        warnings.simplefilter("default")
        try:
            args = build_parser().parse_args(argv)
            _check_output(args)
            status = int(args.func(args) or 0)
        except (AsymvizError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            return _error(one_line(exc))
        except KeyboardInterrupt:
            return _error("interrupted", 130)
        except MemoryError:
            return _error("ran out of memory (is the input far larger than an adapter?)")
        except RecursionError:
            return _error("input nested too deeply to process")
        except Exception as exc:  # an input nobody foresaw: still one line, not a traceback
            if os.environ.get("ASYMVIZ_DEBUG"):
                raise
            return _error(
                f"unexpected {type(exc).__name__}: {one_line(exc)} (ASYMVIZ_DEBUG=1 shows the traceback)"
            )
    for w in caught:
        print(f"warning: {one_line(w.message)}", file=sys.stderr)
    for line in native.lines():
        print(f"warning: {display_name(line, 1000)}", file=sys.stderr)
    return status


class _NativeOutput:
    """What C libraries (MKL, OpenMP, torch's C++ warnings) wrote to file descriptors 1 and 2 while a
    command ran: held in a temp file so it cannot come before a CSV on stdout or before the error line on
    stderr. Python's own sys.stdout / sys.stderr keep writing to the real streams meanwhile."""

    def __init__(self):
        self.saved: dict[int, int] = {}  # fd -> a duplicate of the real stream
        self.sink = None
        self.old = (sys.stdout, sys.stderr)
        self.held = b""

    def hold(self) -> None:
        import tempfile

        try:
            fds = (sys.stdout.fileno(), sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):  # captured streams (tests): nothing native to hold
            return
        if fds != (1, 2):
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.sink = tempfile.TemporaryFile()
        for fd in fds:
            self.saved[fd] = os.dup(fd)
            os.dup2(self.sink.fileno(), fd)
        sys.stdout = open(self.saved[1], "w", closefd=False, encoding=self.old[0].encoding, errors="replace")
        sys.stderr = open(self.saved[2], "w", closefd=False, encoding=self.old[1].encoding, errors="replace")

    def release(self) -> None:
        if not self.saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self.old
        for fd, dup in self.saved.items():
            os.dup2(dup, fd)
            os.close(dup)
        self.saved = {}
        self.sink.seek(0)
        self.held = self.sink.read(1 << 20)
        self.sink.close()

    def lines(self) -> list[str]:
        return [ln.strip() for ln in self.held.decode(errors="replace").splitlines() if ln.strip()]


# Commands whose native output is held (they run in this process only; training starts worker processes
# that inherit file descriptors 1 and 2, and `app` hands the terminal to streamlit).
HOLD_NATIVE = frozenset({"spectra", "similarity", "report"})


@contextlib.contextmanager
def _hold_native_output(hold: bool):
    native = _NativeOutput()
    if hold:
        native.hold()
    try:
        yield native
    finally:
        native.release()


def one_line(exc: BaseException | Warning | str) -> str:
    """An exception's first line, with control characters escaped and at most 1,000 characters."""
    if isinstance(exc, BaseException):
        text = first_line(exc)
    else:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return display_name(text, 1000)


def _error(message: str, status: int = 2) -> int:
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
