"""What every command shares: the output formats, a progress bar on stderr, warnings as `warning:` lines.

Bad input ends with exit status 2 and one line on stderr that starts with `error:` (asymviz.cli.main).

csv and json write the frame as it is (every column, full precision). `table` is for reading in a terminal:
it fits TABLE_WIDTH (100) columns, starts with `# ` lines that say what the columns mean, rounds numbers to 4
significant digits, leaves out a common prefix of long names (said in a `#` line), gives long names that
repeat on many rows a short alias ([1], [2], ... with a legend), shortens other long names in the middle with
…, and when the columns are still too wide prints them in blocks that each repeat the first column.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from asymviz.errors import AsymvizError

FORMATS = ("csv", "json", "table")
TABLE_WIDTH = 100  # characters a `table` fits in
MAX_TEXT = 30  # a text cell longer than this is aliased or shortened
MAX_ALIASES = 9  # at most this many distinct long names become [1] .. [9]
COLUMNS_HELP = (
    "columns: see the README's 'Output columns' section (--format csv or json: every column, full precision)"
)


class UsageError(AsymvizError):
    """A command line that argparse rejected."""


# What each command's columns mean, one sentence each (table format's `#` header; README: Output columns).
LEGENDS = {
    "spectra": "sigma: the k-th largest singular value of the module's A, B or ΔW = scaling·B·A (which); "
    "sigma_rel = sigma / sigma of k=1; energy_cum: share of the sum of sigma² in the top k.",
    "similarity": "similarity of two adapters' subspaces per module (A: row space, B: column space, delta: ΔW's "
    "top-k): ‖U1ᵀU2‖²_F / min(k1, k2), 1 = same, 0 = orthogonal; random_baseline = max(k1, k2) / dim, its "
    "expected value for random subspaces.",
    "runs": "one row per run; status: running, completed, failed, cancelled or interrupted (its process "
    "died); lr: the factors' learning rate; test_*: on the test split at the end; wall_s: seconds of training.",
    "compare": "diff_mean = mode − baseline over n_pairs paired seeds (baseline − mode for a loss: positive = the "
    "mode is better), with its 95 % CI [ci_low, ci_high]; "
    "p_holm: Holm-adjusted p (per-task rows and task all apart); verdict at ±margin (equivalent: the 90 % CI lies "
    "inside it, TOST).",
    "compare-rank": "diff_mean = mode − baseline at each rank (d_over_r = d_in / rank) over n_pairs paired seeds, "
    "with its 95 % CI; p_holm over the table; verdict at ±margin (TOST for equivalent).",
    "compare-rank-trend": "slope: the gap mode − baseline regressed on log2(d/r) per seed, mean over n_seeds (metric "
    "units per doubling of d/r), 95 % t CI; verdict better = the gap grows with d/r.",
    "compare-head": "per head arm (pooler+classifier or classifier only): diff_mean = mode − baseline over n_pairs "
    "paired seeds, 95 % CI, p_holm over both arms; verdict at ±margin.",
    "compare-head-interaction": "interaction = gap with the classifier-only head − gap with the full head "
    "(diff_classifier_head − diff_full_head), 95 % CI (ci_method paired: per seed; welch: independent); "
    "verdict better = the gap grows when the pooler is frozen.",
    "similarity-2x2": "similarity ‖U1ᵀU2‖²_F / min(k1, k2) of A's row space and B's column space, mean over modules "
    "per pair of runs, then over the cell's pairs; 95 % CI: bootstrap over runs; random_baseline = max(k1, k2)/d.",
    "align": "similarity of A's row space with the inputs' top-k subspace (side input), of B's column space with "
    "the output gradients' (side output) or W0's singular vectors (side weight); random_baseline: the same "
    "for a random subspace; ratio = similarity / random_baseline; energy_share: the reference's energy "
    "inside the factor's subspace (baseline energy_baseline).",
    "diagnose": "n_intruders: of W0+ΔW's top-k singular vectors, those with best |cos| < eps against W0's "
    "(min_best_cosine: the lowest); amplification = ‖ΔW‖_F / w0_proj_fro, W0 on ΔW's directions (w0_top_fro, "
    "w0_random_fro: on W0's own and on random ones); magnitude_change, direction_change: DoRA's ΔM and ΔD.",
    "mechanism": "observed: share of A&B's gain over head only kept by the mode (mean over paired seeds, "
    "Fieller 95 % CI [observed_low, observed_high]); predicted: the paper's squared-loss share for the module's "
    "input covariance and Δ = A&B's ΔW (exact False: deterministic equivalent); realised: for the runs' own "
    "frozen factors; predicted_curvature: outputs weighted by the measured loss curvature.",
    "intruders": "per singular vector i of W0+ΔW: sigma (sigma_base: W0's i-th), best_cosine: max |cos| with "
    "W0's singular vectors (best_match: which one), intruder: best_cosine < eps.",
}
RUN_COLUMNS = ("run_id", "group", "task", "mode", "rank", "seed", "lr", "status", "trainable_params",
               "test_accuracy", "test_loss", "heldout_accuracy", "wall_s")  # fmt: skip


def write_frame(frame, fmt: str, out: str | None, legend: str | None = None, columns=None,
                split_by: str | None = None) -> None:  # fmt: skip
    """Write a DataFrame as csv, json (records) or a plain-text table to `out` (or stdout).

    `legend` (one sentence: what the columns mean) and `columns` (the ones worth a terminal's width) apply
    to `table` only (see format_table); csv and json always hold the whole frame. `split_by` (table only): one
    table per value of that column, each under a `== column: value` line, so a wrapped table's second block
    still shows its rows' keys."""
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", indent=1, double_precision=10) + "\n"
    elif fmt == "table" and split_by is not None and frame[split_by].nunique() > 1:
        cols = [c for c in (columns or list(frame.columns)) if c != split_by]
        parts = [f"== {split_by}: {value}\n" + format_table(part, legend=legend if i == 0 else None, columns=cols)
                 for i, (value, part) in enumerate(frame.groupby(split_by, sort=False))]  # fmt: skip
        text = "\n".join(parts)
    elif fmt == "table":
        text = format_table(frame, legend=legend, columns=columns)
    else:
        raise UsageError(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if out in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def format_table(frame, legend: str | None = None, columns=None, width: int = TABLE_WIDTH) -> str:
    """A DataFrame as text for a terminal `width` characters wide (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
        Any tidy frame; its index is not printed.
    legend : str, optional
        What the columns mean, printed first as `# ` lines wrapped to `width`.
    columns : sequence of str, optional
        Show only these (those present, in this order); a `#` line says how many more csv/json hold.
    width : int
        The widest line of the table proper (a legend line naming an alias holds the full name and may be
        longer).

    Returns
    -------
    str, ending with a newline.
    """
    import textwrap

    notes: list[str] = []
    if columns is not None:
        keep = [c for c in columns if c in frame.columns]
        if len(keep) < len(frame.columns):
            notes.append(f"{len(frame.columns) - len(keep)} more columns with --format csv or json")
        frame = frame[keep]
    cells, aliases, noted = {}, {}, {}
    for name in frame.columns:
        cells[name], note = _column_text(frame[name], aliases)
        if note:
            noted.setdefault(note, []).append(str(name))
    notes += [f"{', '.join(names)}: {note}" for note, names in noted.items()]
    lines = []
    for text in [legend, *notes]:
        if text:
            lines += textwrap.wrap(text, width - 2, initial_indent="# ", subsequent_indent="#   ") or []
    lines += [f"# [{i}] {value}" for value, i in aliases.items()]
    if frame.empty:
        return "\n".join([*lines, "(no rows)" if not len(frame.columns) else "  ".join(frame.columns), ""])
    lines += _blocks(frame, cells, width)
    return "\n".join(lines) + "\n"


def _column_text(column, aliases: dict) -> tuple[list[str], str | None]:
    """One column's cells as strings, and a note on what was done to them (None if nothing)."""
    import numpy as np
    import pandas as pd

    values = column.tolist()
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        return [str(v) for v in values], None
    if pd.api.types.is_float_dtype(column):
        finite = column[np.isfinite(column)]
        integral = len(finite) > 0 and bool((finite == finite.round()).all()) and finite.abs().max() < 1e15
        return [_number(v, integral) for v in values], None
    text = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    long = sorted({t for t in text if len(t) > MAX_TEXT})
    if not long:
        return text, None
    if len(set(long) | set(aliases)) <= MAX_ALIASES and len(long) * 2 <= len(text):  # few names, many rows
        for t in long:
            aliases.setdefault(t, len(aliases) + 1)
        return [f"[{aliases[t]}]" if t in aliases else t for t in text], "long names as [n], listed above"
    prefix = _common_prefix([t for t in text if t])
    note = None
    if len(prefix) >= 8:
        text = [t[len(prefix) :] if t else t for t in text]
        note = f"common prefix {prefix!r} left out"
    if any(len(t) > MAX_TEXT for t in text):
        head = MAX_TEXT // 2 - 1
        tail = MAX_TEXT - head - 1
        text = [t if len(t) <= MAX_TEXT else f"{t[:head]}…{t[-tail:]}" for t in text]
        note = (note + "; " if note else "") + "long names shortened in the middle (…)"
    return text, note


def _number(value, integral: bool) -> str:
    import math

    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.0f}" if integral else f"{value:#.4g}"


def _common_prefix(texts: list[str]) -> str:
    """The longest common prefix of `texts` that ends at a '.' or '/' ('' for fewer than 2 distinct texts)."""
    import os

    if len(set(texts)) < 2:
        return ""
    prefix = os.path.commonprefix(texts)
    cut = max(prefix.rfind("."), prefix.rfind("/"))
    return prefix[: cut + 1] if cut >= 0 else ""


def _blocks(frame, cells: dict, width: int) -> list[str]:
    """Rows of aligned cells (text left, numbers right), in as many column blocks as `width` needs; every block
    after the first repeats the first column."""
    import pandas as pd

    names = list(frame.columns)
    widths = {n: max(len(str(n)), *(len(c) for c in cells[n])) for n in names}
    right = {
        n: pd.api.types.is_numeric_dtype(frame[n]) and not pd.api.types.is_bool_dtype(frame[n]) for n in names
    }
    blocks, current = [], []
    for name in names:
        used = sum(widths[n] + 2 for n in current)
        if current and used + widths[name] > width:
            blocks.append(current)
            current = [names[0]] if widths[names[0]] + widths[name] + 2 <= width else []
        current.append(name)
    blocks.append(current)

    def cell(n, text):
        return text.rjust(widths[n]) if right[n] else text.ljust(widths[n])

    lines = []
    for i, block in enumerate(blocks):
        if i:
            lines.append("")
        lines.append("  ".join(cell(n, str(n)) for n in block).rstrip())
        for row in range(len(frame)):
            lines.append("  ".join(cell(n, cells[n][row]) for n in block).rstrip())
    return lines


def progress_bar(
    total: int, desc: str, min_total: int = 16, unit: str = "module"
) -> Callable[[int], None] | None:
    """A tqdm bar on stderr for long jobs (None for short ones, or when stderr is not a terminal-like stream)."""
    if total < min_total or os.environ.get("ASYMVIZ_NO_PROGRESS"):
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    def update(done: int) -> None:
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def staged_progress(unit: str = "module") -> Callable[[str, int, int], None]:
    """A `progress(stage, done, total)` callback for the library's multi-stage work: one bar per stage."""
    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = progress_bar(total, stage, min_total=2, unit=unit)
        if bars[stage]:
            bars[stage](done)

    return progress


def add_output_args(p: argparse.ArgumentParser, default_format: str = "table") -> None:
    p.add_argument(
        "--format", choices=FORMATS, default=default_format, help="output format (default: %(default)s)"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def warn_problems(adapter) -> None:
    """An adapter's non-fatal findings (unknown scaling, non-finite values) as `warning:` lines on stderr."""
    for line in getattr(adapter, "problems", ()):
        print(f"warning: {line}", file=sys.stderr)


def quiet_transformers() -> None:
    """No weight-loading bars or load reports on the terminal (the CLI prints tables), and no hub lookups
    (everything here is local)."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings(
        "ignore", category=FutureWarning, module="transformers"
    )  # deprecations inside PEFT
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ----------------------------------------------------------------------------------------------------------
# a sweep's outline and its bar over runs (asymviz sweep)


class RunsBar:
    """A tqdm bar over a sweep's runs on stderr (`update(record)` as each run ends, with its status line above
    the bar). Silent with ASYMVIZ_NO_PROGRESS or `quiet`, except for the status lines."""

    def __init__(self, total: int, quiet: bool = False):
        self.bar = None
        if not quiet and not os.environ.get("ASYMVIZ_NO_PROGRESS") and total > 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="sweep", unit="run", file=sys.stderr, position=0, leave=True,
                            dynamic_ncols=True)  # fmt: skip

    def update(self, record) -> None:
        line = f"{record.status:>9}  {record.run_id}"
        if self.bar is None:
            print(line, file=sys.stderr)
            return
        self.bar.write(line, file=sys.stderr)
        if self.bar.n + 1 > self.bar.total:  # an lr grid's main runs may outnumber the outline's guess
            self.bar.total = self.bar.n + 1
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
