"""Figures of the replication's experiments (issue 13): the B-only edge against d/r, the head factorial, the
mechanism test's observed vs predicted gap, and the 2×2 similarity design.

    table = asymviz.rank_sweep.rank_sweep_table(runs)          # one row per (task, rank, comparison)
    fig = rank_sweep_figure(table, "test accuracy")

Each builder takes the frame its analysis returns (the columns it reads are in its docstring; a missing one
raises ValueError naming it) and draws every interval as given: no statistics here. Intervals are drawn as
asymmetric error bars from (ci_low, ci_high), so a bootstrap interval is drawn as it is, not symmetrised.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.figures.style import MODE_COLORS, MODE_SYMBOLS, empty_figure, mode_label, style_figure
from asymviz.modes import SHORT_LABELS

if TYPE_CHECKING:
    import pandas as pd

# the two comparisons the paper's theory speaks about: B only against A only, and against A&B
RANK_SWEEP_PAIRS = (("b_only", "a_only"), ("b_only", "ab"))
# a comparison is drawn in its baseline's colour and symbol (B − A in A-only's, B − A&B in A&B's)
HEAD_COLORS = {"pooler+classifier": "#222222", "classifier": "#CC79A7"}
HEAD_SYMBOLS = {"pooler+classifier": "circle", "classifier": "triangle-up"}
INIT_COLORS = {True: "#0072B2", False: "#E69F00"}
INIT_SYMBOLS = {True: "circle", False: "diamond"}
# log10 units between the comparisons drawn at one d/r (about ±8 %), so that their bars do not overlap
DODGE = 0.035


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame has no column(s) {', '.join(missing)}")


def pair_label(mode: str, baseline: str) -> str:
    """'B only − A only': a paired difference as the figures write it (positive = the first is better)."""
    return f"{SHORT_LABELS.get(mode, mode)} − {SHORT_LABELS.get(baseline, baseline)}"


def _error(part: pd.DataFrame, low: str = "ci_low", high: str = "ci_high", mid: str = "diff_mean") -> dict:
    """Asymmetric error bars reaching exactly from `low` to `high`; none where the interval is missing (NaN:
    Plotly draws no bar, where a 0 would draw a tick that reads as a very narrow interval)."""
    return {
        "type": "data", "symmetric": False, "visible": True, "thickness": 1.5, "width": 5,
        "array": (part[high] - part[mid]).to_numpy(float),
        "arrayminus": (part[mid] - part[low]).to_numpy(float),
    }  # fmt: skip


DIFF_TITLE = "difference (+ = first better)"  # the metric and its units are in the figure's title


def _margin_band(fig: go.Figure, margin: float, **where) -> None:
    """The equivalence band ±margin (grey) and the zero line of a difference axis."""
    if margin == margin and margin > 0:
        fig.add_hrect(y0=-margin, y1=margin, fillcolor="#BBBBBB", opacity=0.25, line_width=0, layer="below",
                      **where)  # fmt: skip
    fig.add_hline(y=0, line={"color": "#444444", "width": 1}, **where)


def _margin_of(table: pd.DataFrame) -> float:
    values = table["margin"].dropna().unique() if "margin" in table else []
    if len(values) > 1:
        raise ValueError(f"the frame mixes equivalence margins {sorted(values)}: draw one margin at a time")
    return float(values[0]) if len(values) else float("nan")


def _custom(*columns) -> list[list]:
    """Hover data, one list per point, each value a plain Python number or string (numpy's column_stack would
    turn every column into strings as soon as one is, and Plotly cannot format a string as a number)."""

    def plain(v):
        return v.item() if hasattr(v, "item") else v

    return [[plain(v) for v in row] for row in zip(*columns, strict=True)]


# ------------------------------------------------------------------------------------------------------------
# experiment 2: the d/r sweep

RANK_SWEEP_COLUMNS = ("task", "rank", "d_over_r", "mode", "baseline", "n_pairs", "diff_mean", "ci_low", "ci_high",
                      "margin", "verdict")  # fmt: skip


def rank_sweep_figure(
    table: pd.DataFrame,
    metric_label: str = "test accuracy",
    pairs: tuple[tuple[str, str], ...] = RANK_SWEEP_PAIRS,
    title: str | None = None,
) -> go.Figure:
    """The paired difference of each comparison in `pairs` against d/r, one panel per task: points at the mean
    with their 95 % CI, log-scaled d/r (ticks say r too), the zero line and the equivalence band ±margin.

    Reads `asymviz.rank_sweep.rank_sweep_table` columns ``task, rank, d_over_r, mode, baseline, n_pairs,
    diff_mean, ci_low, ci_high, margin, verdict`` (and ``p_holm`` if present, for the hover). A difference is
    oriented as in asymviz.results (positive = the mode better, also for a loss). Filled markers are verdicts
    better / worse, open ones equivalent / inconclusive. The comparisons at one d/r are drawn ±8 % apart on
    the x axis so their bars do not overlap; the hover gives the exact d/r and r.

    Raises ValueError for a missing column or several margins.
    """
    import pandas as pd
    from plotly.subplots import make_subplots

    _require(table, RANK_SWEEP_COLUMNS, "rank_sweep_figure")
    title = title or f"B only's edge against d/r: paired difference in {metric_label} (mean, 95 % CI)"
    keep = pd.Series(
        [(m, b) in pairs for m, b in zip(table["mode"], table["baseline"], strict=True)], dtype=bool
    )
    data = table[keep.to_numpy()]
    data = data.dropna(subset=["d_over_r", "diff_mean"])
    if data.empty:
        return empty_figure(
            "no comparison of " + ", ".join(pair_label(*p) for p in pairs) + " to show", title
        )
    margin = _margin_of(data)
    tasks = list(dict.fromkeys(data["task"].astype(str)))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, shared_yaxes=True,
                        horizontal_spacing=0.05)  # fmt: skip
    present = [p for p in pairs if ((data["mode"] == p[0]) & (data["baseline"] == p[1])).any()]
    for col, task in enumerate(tasks, 1):
        for i, (mode, baseline) in enumerate(present):
            part = data[
                (data["task"].astype(str) == task) & (data["mode"] == mode) & (data["baseline"] == baseline)
            ]
            part = part.sort_values("d_over_r")
            if part.empty:
                continue
            shift = 10 ** (DODGE * (i - (len(present) - 1) / 2))
            decided = part["verdict"].isin(("better", "worse"))
            symbol = MODE_SYMBOLS.get(baseline, "circle")
            p_holm = part["p_holm"] if "p_holm" in part else [float("nan")] * len(part)
            name = pair_label(mode, baseline)
            fig.add_trace(
                go.Scatter(
                    x=part["d_over_r"].to_numpy(float) * shift, y=part["diff_mean"], mode="lines+markers",
                    name=name, legendgroup=name, showlegend=col == 1,
                    line={"color": MODE_COLORS.get(baseline), "width": 1.5},
                    marker={"color": MODE_COLORS.get(baseline), "size": 9, "line": {"width": 2},
                            "symbol": [symbol if d else f"{symbol}-open" for d in decided]},
                    error_y={**_error(part), "color": MODE_COLORS.get(baseline)},
                    customdata=_custom(part["d_over_r"], part["rank"], part["ci_low"], part["ci_high"],
                                                part["n_pairs"], p_holm, part["verdict"]),
                    hovertemplate=f"{task}<br>{name}<br>d/r = %{{customdata[0]:.4g}} (r = %{{customdata[1]}})"
                    f"<br>{metric_label} difference: %{{y:+.4f}}<br>95 % CI %{{customdata[2]:+.4f}} to "
                    "%{customdata[3]:+.4f}<br>seed pairs: %{customdata[4]}, Holm p %{customdata[5]:.2g}"
                    "<br>verdict: %{customdata[6]}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        _margin_band(fig, margin, row=1, col=col)
        ticks = data[data["task"].astype(str) == task].drop_duplicates("d_over_r").sort_values("d_over_r")
        fig.update_xaxes(type="log", tickvals=ticks["d_over_r"].to_list(),
                         ticktext=[f"{d:.3g}<br>r={int(r)}" for d, r in zip(ticks["d_over_r"], ticks["rank"], strict=True)],
                         title_text="d / r (log)", row=1, col=col)  # fmt: skip
    fig.update_yaxes(title_text=DIFF_TITLE, row=1, col=1)
    if margin == margin:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"equivalence band ±{margin:g}",
                                 marker={"symbol": "square", "size": 12, "color": "#DDDDDD"}))  # fmt: skip
    style_figure(fig, title, height=470)
    # the ticks are two lines (d/r, then r): the legend goes further down, under the axis title
    return fig.update_layout(legend_y=-0.3, margin_b=95)


# ------------------------------------------------------------------------------------------------------------
# experiment 3: the head factorial

HEAD_FACTORIAL_COLUMNS = ("task", "head", "mode", "baseline", "n_pairs", "diff_mean", "ci_low", "ci_high",
                          "verdict")  # fmt: skip


def head_factorial_figure(
    table: pd.DataFrame,
    metric_label: str = "test accuracy",
    margin: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Each comparison's paired difference per task, with the full head (pooler + classifier) and the
    classifier-only head side by side: one panel per comparison (mode − baseline), x = task, points at the mean
    with their 95 % CI, the zero line, and the band ±margin when given (or when the frame has ``margin``).

    Reads `asymviz.head_factorial.head_factorial_table` columns ``task, head, mode, baseline, n_pairs,
    diff_mean, ci_low, ci_high, verdict``. Filled markers: verdict better / worse; open: equivalent /
    inconclusive.

    Raises ValueError for a missing column.
    """
    import numpy as np
    from plotly.subplots import make_subplots

    _require(table, HEAD_FACTORIAL_COLUMNS, "head_factorial_figure")
    title = title or f"Head factorial: paired difference in {metric_label} per task and head (mean, 95 % CI)"
    data = table.dropna(subset=["diff_mean"])
    data = data[data["task"].astype(str) != "all"]
    if data.empty:
        return empty_figure("no head-factorial comparison to show", title)
    if margin is None:
        margin = _margin_of(data)
    pairs = list(dict.fromkeys(zip(data["mode"], data["baseline"], strict=True)))
    tasks = list(dict.fromkeys(data["task"].astype(str)))
    cols = min(3 if len(tasks) <= 3 else 2, len(pairs))  # five task names need a wider panel
    rows = math.ceil(len(pairs) / cols)
    heads = [h for h in HEAD_COLORS if h in set(data["head"])] + sorted(set(data["head"]) - set(HEAD_COLORS))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[pair_label(*p) for p in pairs], shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=min(0.22, 0.5 / rows))  # fmt: skip
    for k, (mode, baseline) in enumerate(pairs):
        row, col = k // cols + 1, k % cols + 1
        for j, head in enumerate(heads):
            part = data[(data["mode"] == mode) & (data["baseline"] == baseline) & (data["head"] == head)]
            if part.empty:
                continue
            x = np.array([tasks.index(t) for t in part["task"].astype(str)], float) + 0.3 * (
                j - (len(heads) - 1) / 2
            )
            color, symbol = HEAD_COLORS.get(head, "#555555"), HEAD_SYMBOLS.get(head, "square")
            decided = part["verdict"].isin(("better", "worse"))
            fig.add_trace(
                go.Scatter(
                    x=x, y=part["diff_mean"], mode="markers", name=f"head: {head}", legendgroup=head,
                    showlegend=k == 0,
                    marker={"color": color, "size": 9, "line": {"width": 2, "color": color},
                            "symbol": [symbol if d else f"{symbol}-open" for d in decided]},
                    error_y={**_error(part), "color": color},
                    customdata=_custom(part["task"].astype(str), part["ci_low"], part["ci_high"],
                                                part["n_pairs"], part["verdict"]),
                    hovertemplate=f"%{{customdata[0]}}, head {head}<br>{pair_label(mode, baseline)}: %{{y:+.4f}}"
                    "<br>95 % CI %{customdata[1]:+.4f} to %{customdata[2]:+.4f}<br>seed pairs: %{customdata[3]}"
                    "<br>verdict: %{customdata[4]}<extra></extra>",
                ),
                row=row, col=col,
            )  # fmt: skip
        _margin_band(fig, margin if margin is not None else float("nan"), row=row, col=col)
        # long task names break after their underscores ("chatterbot_<br>topic"), never rotated into the panel below
        ticktext = [t.replace("_", "_<br>") for t in tasks] if len(tasks) > 3 else tasks
        fig.update_xaxes(tickvals=list(range(len(tasks))), ticktext=ticktext, range=[-0.6, len(tasks) - 0.4],
                         tickangle=0, showgrid=False, zeroline=False, row=row, col=col)  # fmt: skip
    for row in range(1, rows + 1):
        fig.update_yaxes(title_text=DIFF_TITLE, row=row, col=1)
    height = 400 + 300 * (rows - 1)
    style_figure(fig, title, height=height)
    return fig.update_layout(legend_y=-0.22 * 400 / height)  # as far below the last row as with one row


# ------------------------------------------------------------------------------------------------------------
# experiment 4: the mechanism test

MECHANISM_COLUMNS = ("model", "task", "module", "d_over_r", "mode", "observed", "observed_low", "observed_high",
                     "predicted", "exact", "n_seeds", "quantity")  # fmt: skip
TASK_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star", "hexagon", "x")


def mechanism_figure(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Observed against predicted, one point per (model, task, module, mode) with the observed 95 % CI as a
    vertical bar, and the line y = x (a perfect prediction); one panel per `quantity` (what the two measure,
    named by its words before a colon: in the panel's title, or the figure's subtitle when there is one).
    Colour = mode (B only, A only), symbol = model · task; an open symbol has no interval (e.g. Fieller's set is
    unbounded when A&B's gain over the control is not clearly above 0).

    Reads `asymviz.mechanism.mechanism_table` columns ``model, task, module, d_over_r, mode, observed,
    observed_low, observed_high, predicted, exact, n_seeds, quantity``.

    Raises ValueError for a missing column.
    """
    import numpy as np
    from plotly.subplots import make_subplots

    _require(table, MECHANISM_COLUMNS, "mechanism_figure")
    title = title or "Mechanism test: observed against the linear-regression prediction"
    data = table.dropna(subset=["observed", "predicted"])
    if data.empty:
        return empty_figure("no row has both an observed and a predicted value (the table says why)", title)
    bounded = data["observed_low"].notna() & data["observed_high"].notna()  # open marker: no interval
    quantities = list(dict.fromkeys(data["quantity"].astype(str)))
    names = [quantity_name(q) for q in quantities]
    fig = make_subplots(rows=1, cols=len(quantities), subplot_titles=names if len(quantities) > 1 else None,
                        horizontal_spacing=0.08)  # fmt: skip
    where = list(dict.fromkeys(zip(data["model"].astype(str), data["task"].astype(str), strict=True)))
    for col, quantity in enumerate(quantities, 1):
        q = data[data["quantity"].astype(str) == quantity]
        for mode in [m for m in ("b_only", "a_only") if m in set(q["mode"])] + sorted(
            set(q["mode"]) - {"b_only", "a_only"}
        ):
            for model, task in where:
                part = q[
                    (q["mode"] == mode) & (q["model"].astype(str) == model) & (q["task"].astype(str) == task)
                ]
                if part.empty:
                    continue
                symbol = TASK_SYMBOLS[where.index((model, task)) % len(TASK_SYMBOLS)]
                fig.add_trace(
                    go.Scatter(
                        x=part["predicted"], y=part["observed"], mode="markers",
                        name=f"{SHORT_LABELS.get(mode, mode)} · {model} · {task}", legendgroup=f"{model}/{task}",
                        marker={"color": MODE_COLORS.get(mode, "#555555"), "size": 10, "line": {"width": 2},
                                "symbol": [symbol if b else f"{symbol}-open" for b in bounded[part.index]]},
                        error_y={**_error(part, "observed_low", "observed_high", "observed"),
                                 "color": MODE_COLORS.get(mode, "#555555")},
                        showlegend=col == 1,
                        customdata=_custom(part["module"].astype(str), part["d_over_r"], part["n_seeds"],
                                           [_interval_text(lo, hi) for lo, hi in zip(part["observed_low"],
                                                                                    part["observed_high"], strict=True)],
                                           part["exact"]),
                        hovertemplate=f"{model} · {task}<br>{mode_label(mode)}<br>%{{customdata[0]}}, "
                        "d/r = %{customdata[1]:.3g}<br>predicted %{x:.4g}<br>observed %{y:.4g} (%{customdata[3]}, "
                        "%{customdata[2]} seeds)<br>prediction exact: %{customdata[4]}<extra></extra>",
                    ),
                    row=1, col=col,
                )  # fmt: skip
        values = np.concatenate(
            [q[c].to_numpy(float) for c in ("predicted", "observed", "observed_low", "observed_high")]
        )
        values = values[np.isfinite(values)]
        lo, hi = float(values.min()), float(values.max())
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1e-3) * 0.1
        fig.add_trace(
            go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="y = x (prediction exact)",
                       line={"color": "#444444", "dash": "dash", "width": 1}, showlegend=col == 1,
                       legendgroup="identity", hoverinfo="skip"),
            row=1, col=col,
        )  # fmt: skip
        fig.update_xaxes(title_text="predicted", row=1, col=col)
        fig.update_yaxes(title_text="observed (95 % CI)" if col == 1 else None, row=1, col=col)
    style_figure(fig, title, height=460)
    if len(quantities) == 1:
        fig.update_layout(title_subtitle_text=names[0], margin_t=80)
    return fig


def _interval_text(low, high) -> str:
    return "no interval" if low != low or high != high else f"95 % CI {low:.4g} to {high:.4g}"


def quantity_name(quantity: str) -> str:
    """The words of a `quantity` before its first colon, capitalised: what the axes of its panel measure."""
    name = quantity.split(":", 1)[0].strip()
    return name[:1].upper() + name[1:]


# ------------------------------------------------------------------------------------------------------------
# experiment 5: the 2×2 similarity design

SIMILARITY_COLUMNS = ("which", "same_init", "same_task", "n_pairs", "mean", "ci_low", "ci_high", "random_baseline",
                      "k")  # fmt: skip


def similarity_2x2_figure(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """The 2×2 design for A and for B side by side: in each panel, same task / other task on the x axis, same
    init / other init as two colours, a point at the mean subspace similarity with its 95 % CI, and the random
    baseline of each cell as a short dashed grey line.

    Reads `asymviz.similarity_design.similarity_2x2` columns ``which, same_init, same_task, n_pairs, mean,
    ci_low, ci_high, random_baseline, k``.

    Raises ValueError for a missing column.
    """
    import numpy as np
    from plotly.subplots import make_subplots

    from asymviz.figures.style import WHICH_LABELS

    _require(table, SIMILARITY_COLUMNS, "similarity_2x2_figure")
    title = title or "Similarity of adapters: same or other init × same or other task (mean, 95 % CI)"
    data = table.dropna(subset=["mean"])
    if data.empty:
        return empty_figure("no adapter pairs to compare", title)
    which = [w for w in ("A", "B") if w in set(data["which"])] + sorted(set(data["which"]) - {"A", "B"})
    ks = sorted({int(k) for k in data["k"].dropna()})
    k_text = f" (top {ks[0]} directions)" if len(ks) == 1 else ""
    fig = make_subplots(rows=1, cols=len(which), subplot_titles=[WHICH_LABELS.get(w, w) for w in which],
                        shared_yaxes=True, horizontal_spacing=0.06)  # fmt: skip
    baseline_shown = False
    for col, w in enumerate(which, 1):
        for init in (True, False):
            part = data[(data["which"] == w) & (data["same_init"].astype(bool) == init)]
            if part.empty:
                continue
            x = np.where(part["same_task"].astype(bool), 0.0, 1.0) + (-0.12 if init else 0.12)
            name = "same init" if init else "other init"
            fig.add_trace(
                go.Scatter(
                    x=x, y=part["mean"], mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                    marker={"color": INIT_COLORS[init], "symbol": INIT_SYMBOLS[init], "size": 11},
                    error_y={**_error(part, mid="mean"), "color": INIT_COLORS[init]},
                    customdata=_custom(np.where(part["same_task"].astype(bool), "same task", "other task"),
                                                part["ci_low"], part["ci_high"], part["n_pairs"],
                                                part["random_baseline"], part["k"]),
                    hovertemplate=f"{w}, {name} × %{{customdata[0]}}<br>similarity %{{y:.4f}} (95 % CI "
                    "%{customdata[1]:.4f} to %{customdata[2]:.4f})<br>adapter pairs: %{customdata[3]}"
                    "<br>random baseline %{customdata[4]:.4f} (k = %{customdata[5]})<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            for xi, base in zip(x, part["random_baseline"], strict=True):
                if base == base:
                    fig.add_shape(type="line", x0=xi - 0.08, x1=xi + 0.08, y0=base, y1=base, row=1, col=col,
                                  line={"color": "#777777", "dash": "dash", "width": 2})  # fmt: skip
            baseline_shown |= bool(part["random_baseline"].notna().any())
        fig.update_xaxes(tickvals=[0, 1], ticktext=["same task", "other task"], range=[-0.5, 1.5], showgrid=False, zeroline=False,
                         row=1, col=col)  # fmt: skip
    if baseline_shown:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="random baseline (same shapes)",
                                 line={"color": "#777777", "dash": "dash", "width": 2}))  # fmt: skip
    fig.update_yaxes(title_text=f"subspace similarity{k_text} (0–1)", row=1, col=1)
    top = max(1.0, float(data["ci_high"].max())) if data["ci_high"].notna().any() else 1.0
    fig.update_yaxes(
        range=[-0.02, top + 0.05], zeroline=True, zerolinecolor="#BBBBBB"
    )  # the baselines near 0 show
    return style_figure(fig, title, height=420)
