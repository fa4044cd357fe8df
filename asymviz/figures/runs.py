"""Figures of training runs: a metric by mode (bars with ± s.e.), parameter counts, learning curves, and how
far A and B moved from their init.

Every builder takes a tidy frame (its docstring lists the columns it reads) and returns a Figure; statistics
(means and standard errors over seeds) come from asymviz.results, never from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.figures.style import (
    MODE_COLORS,
    MODE_DASH,
    MODE_SYMBOLS,
    WHICH_COLORS,
    empty_figure,
    mode_label,
    ordered_modes,
    style_figure,
)
from asymviz.modes import CONTROL_MODES, MODES

if TYPE_CHECKING:
    import pandas as pd


def mode_bar_figure(
    summary: pd.DataFrame,
    metric_label: str,
    x: str = "task",
    title: str | None = None,
    y_range=None,
    probe: pd.DataFrame | None = None,
) -> go.Figure:
    """Grouped bars of a metric per `x` (task) and mode with ± s.e. error bars.

    Reads columns ``<x>, mode, mean, se, n`` (asymviz.results.summary_table) and optional
    ``trainable_params`` (the LoRA parameters the mode trains, shown on hover). A control mode (head_only: no
    adapter, only the head trains) is not a bar but the floor: a dashed grey line across its group, so each
    LoRA mode reads as what it adds on top.

    probe : optional ``<x>, value`` rows (e.g. asymviz.probes.linear_probe's test metric per task), drawn as a
        dotted black line across each group: what a linear classifier reads off the frozen model.
    """
    if summary.empty:
        return empty_figure("no finished runs to show", title or metric_label)
    fig = go.Figure()
    categories = list(dict.fromkeys(summary[x].astype(str)))
    for mode in ordered_modes(summary["mode"]):
        if mode in CONTROL_MODES:
            _floor(fig, summary[summary["mode"] == mode], mode, x, categories, metric_label)
            continue
        part = summary[summary["mode"] == mode]
        se = part["se"].fillna(0.0)
        params = part["trainable_params"] if "trainable_params" in part else [None] * len(part)
        custom = [
            [int(n), (f"{int(p):,}" if p is not None and p == p else "–")]
            for n, p in zip(part["n"], params, strict=True)
        ]
        fig.add_trace(
            go.Bar(
                x=part[x].astype(str),
                y=part["mean"],
                name=mode_label(mode),
                marker_color=MODE_COLORS.get(mode),
                error_y={"type": "data", "array": se, "visible": True, "thickness": 1.5, "width": 4},
                customdata=custom,
                text=[f"{m:.3f}" for m in part["mean"]],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}}<br>{mode_label(mode)}<br>{metric_label}: %{{y:.4f}} ± %{{error_y.array:.4f}}"
                "<br>seeds: %{customdata[0]}<br>trainable LoRA params: %{customdata[1]}<extra></extra>",
            )
        )
    if probe is not None and len(probe):
        probe = probe[probe[x].astype(str).isin(categories)]
        _floor(fig, probe.assign(mean=probe["value"], se=float("nan"), n=0), "probe", x, categories, metric_label,
               name="linear probe (frozen features)", color="#222222", dash="dot")  # fmt: skip
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=categories)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return style_figure(
        fig, title or f"{metric_label} by mode (mean ± s.e. over seeds)", x.replace("_", " "), metric_label
    )


def near_data_range(
    summary: pd.DataFrame, probe: pd.DataFrame | None = None, floor: float = 0.0, pad: float = 0.1
) -> tuple[float, float]:
    """A y-axis range close to the data of `mode_bar_figure`, so that differences of ~0.01 between modes stay
    visible (a bar chart of accuracy from 0 flattens them).

    From the lowest lower error bar (mean − s.e., the control's floor included) and the probe's values to the
    highest upper error bar, widened by `pad` × that span below (never below `floor`, e.g. 0 for accuracy)
    and twice that above, room for the numbers written over the bars. Reads ``mean, se`` and the probe's
    ``value``; returns (low, high) in the metric's units.
    """
    se = summary["se"].fillna(0.0)
    low, high = (summary["mean"] - se).min(), (summary["mean"] + se).max()
    if probe is not None and len(probe):
        low, high = min(low, probe["value"].min()), max(high, probe["value"].max())
    span = max(high - low, 0.01)  # one run, or modes all equal: still a readable axis
    return max(floor, low - pad * span), high + 2 * pad * span


def _floor(fig: go.Figure, part: pd.DataFrame, mode: str, x: str, categories: list[str], metric_label: str,
           name: str | None = None, color: str | None = None, dash: str = "dash") -> None:  # fmt: skip
    """A reference (the head_only control, a linear probe) as a line across each group's bars (one shape per
    group), with a marker at the group's centre that carries the legend entry and the hover text."""
    color = color or MODE_COLORS.get(mode, "#7F7F7F")
    name = name or f"{mode_label(mode)}: the floor"
    for cat, mean in zip(part[x].astype(str), part["mean"], strict=True):
        i = categories.index(cat)
        fig.add_shape(type="line", xref="x", yref="y", x0=i - 0.42, x1=i + 0.42, y0=mean, y1=mean,
                      line={"color": color, "width": 2.5, "dash": dash}, layer="above")  # fmt: skip
    # the legend key is a line in the reference's own dash (a marker's outline cannot be dashed, so the marker
    # that carries the hover text has no legend entry of its own)
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="lines",
            name=name,
            legendgroup=name,
            hoverinfo="skip",
            line={"color": color, "width": 2.5, "dash": dash},
        )  # fmt: skip
    )
    fig.add_trace(
        go.Scatter(
            x=part[x].astype(str), y=part["mean"], mode="markers", name=name, legendgroup=name, showlegend=False,
            marker={"symbol": "line-ew-open", "size": 18, "color": color, "line": {"color": color, "width": 2.5}},
            error_y={"type": "data", "array": part["se"].fillna(0.0), "visible": True, "color": color,
                     "thickness": 1.5, "width": 8},
            customdata=[int(n) for n in part["n"]],
            hovertemplate=f"%{{x}}<br>{name}<br>{metric_label}: %{{y:.4f}}"
            + ("" if mode == "probe" else " ± %{error_y.array:.4f}<br>seeds: %{customdata}<br>no LoRA parameters "
               "(the head alone)") + "<extra></extra>",
        )
    )  # fmt: skip


def params_bar_figure(
    frame: pd.DataFrame, x: str = "task", title: str = "Trainable parameters by mode"
) -> go.Figure:
    """Bars of trainable parameter counts. Reads ``<x>, mode, trainable_params`` (one value per group)."""
    if frame.empty:
        return empty_figure("no runs", title)
    fig = go.Figure()
    for mode in ordered_modes(frame["mode"]):
        part = frame[frame["mode"] == mode]
        fig.add_trace(
            go.Bar(
                x=part[x].astype(str),
                y=part["trainable_params"],
                name=mode_label(mode),
                marker_color=MODE_COLORS.get(mode),
                hovertemplate="%{x}<br>%{y:,} parameters<extra>" + mode_label(mode) + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    return style_figure(fig, title, x.replace("_", " "), "trainable parameters (count)", height=340)


# ------------------------------------------------------------------------------------------------------------
# training curves


def learning_curve_figure(
    curves: pd.DataFrame,
    y_label: str,
    title: str | None = None,
    x_label: str = "training step",
    log_y: bool = False,
    y_range=None,
    smooth: int | None = None,
) -> go.Figure:
    """One line per run, coloured (and dashed) by mode; the legend shows each mode once.

    smooth : draw the moving average over this many points (raw values faint behind it), for noisy
        per-batch losses.

    Reads columns ``run_id, mode, step, value`` and optionally ``label`` (hover text).
    """
    if curves.empty:
        return empty_figure("no points yet", title or y_label)
    fig = go.Figure()
    shown = set()
    order = {m: i for i, m in enumerate(MODES)}
    groups = sorted(
        curves.sort_values("step").groupby(["mode", "run_id"], sort=False),
        key=lambda g: order.get(g[0][0], 9),
    )
    for (mode, run_id), part in groups:
        label = str(part["label"].iloc[0]) if "label" in part else str(run_id)
        values = part["value"]
        if smooth and smooth > 1 and len(part) > 2:
            fig.add_trace(
                go.Scatter(
                    x=part["step"], y=values, mode="lines", legendgroup=mode, showlegend=False, hoverinfo="skip",
                    line={"color": MODE_COLORS.get(mode), "width": 1}, opacity=0.2,
                )
            )  # fmt: skip
            values = values.rolling(smooth, min_periods=1).mean()
        fig.add_trace(
            go.Scatter(
                x=part["step"], y=values, mode="lines+markers" if len(part) < 30 else "lines",
                name=mode_label(mode), legendgroup=mode, showlegend=mode not in shown,
                line={"color": MODE_COLORS.get(mode), "width": 2, "dash": MODE_DASH.get(mode, "solid")},
                marker={"size": 7, "symbol": MODE_SYMBOLS.get(mode, "circle")}, opacity=0.9,
                hovertemplate=f"{label}<br>step %{{x}}<br>{y_label}: %{{y:.4f}}<extra>{mode_label(mode)}</extra>",
            )
        )  # fmt: skip
        shown.add(mode)
    if log_y:
        fig.update_yaxes(type="log")
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return style_figure(fig, title or y_label, x_label, y_label)


DRIFT_LABELS = {
    "rel_change": "relative change ‖X − X₀‖_F / ‖X₀‖_F",
    "abs_change": "change ‖X − X₀‖_F",
    "similarity_to_init": "subspace similarity to init (0–1)",
}


def drift_figure(drift: pd.DataFrame, value: str = "rel_change", title: str | None = None) -> go.Figure:
    """Per layer, the mean over modules (and runs) of a drift metric for A and for B, one panel per mode.

    Reads `asymviz.drift.drift_from_init` columns ``layer, which (A|B), <value>`` plus ``mode`` (the run's
    mode, stacked over runs); for similarity_to_init the mean random baseline is drawn dashed.
    """
    from plotly.subplots import make_subplots

    value_label = DRIFT_LABELS.get(value, value)
    title = title or "How far A and B moved from their init, per layer (mean over modules and runs)"
    data = drift.dropna(subset=[value]) if not drift.empty else drift
    if data.empty:
        return empty_figure(
            "no runs with a stored init (or the metric is undefined: B starts at 0 in A&B)", title
        )
    modes = ordered_modes(data["mode"])
    fig = make_subplots(
        rows=1, cols=len(modes), subplot_titles=[mode_label(m) for m in modes], shared_yaxes=True
    )
    in_legend: set[str] = (
        set()
    )  # each factor (and the baseline) once in the legend, wherever it first appears
    for col, mode in enumerate(modes, 1):
        part = data[data["mode"] == mode]
        for factor, symbol in (("A", "circle"), ("B", "square")):
            f = part[part["which"] == factor]
            if f.empty:
                continue
            first = factor not in in_legend
            in_legend.add(factor)
            g = f.groupby("layer", dropna=False)[value].mean().reset_index()
            fig.add_trace(
                go.Scatter(
                    x=g["layer"].astype("float"), y=g[value], mode="lines+markers", name=factor,
                    legendgroup=factor, showlegend=first, marker={"symbol": symbol, "size": 7},
                    line={"color": WHICH_COLORS[factor], "width": 2},
                    hovertemplate=f"{factor}, layer %{{x}}<br>{value_label}: %{{y:.4g}}<extra>{mode_label(mode)}</extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            if value == "similarity_to_init" and "random_baseline" in f:
                b = f.groupby("layer", dropna=False)["random_baseline"].mean().reset_index()
                fig.add_trace(
                    go.Scatter(
                        x=b["layer"].astype("float"), y=b["random_baseline"], mode="lines",
                        name="random baseline", legendgroup="baseline", showlegend="baseline" not in in_legend,
                        line={"color": "#888888", "dash": "dash", "width": 1},
                        hovertemplate="random baseline %{y:.3f}<extra></extra>",
                    ),
                    row=1, col=col,
                )  # fmt: skip
                in_legend.add("baseline")
        layers = part["layer"].dropna()
        fig.update_xaxes(
            title_text="layer", row=1, col=col, dtick=1 if len(layers) and layers.max() <= 24 else None
        )
    fig.update_yaxes(title_text=value_label, row=1, col=1)
    return style_figure(fig, title, height=400)
