"""Figures of alignment with the data and the base weights (asymviz.probes.alignment) and of the per-module
diagnostics (asymviz.probes.diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.figures.style import (
    MODE_COLORS,
    WHICH_COLORS,
    empty_figure,
    mode_label,
    module_roles,
    ordered_modes,
    style_figure,
)

if TYPE_CHECKING:
    import pandas as pd


ALIGN_VALUES = {  # value column -> (its random-subspace baseline column, axis title)
    "similarity": ("random_baseline", "subspace similarity (0–1)"),
    "energy_share": ("energy_baseline", "energy share in the factor's span (0–1)"),
}
SOURCE_LABELS = {"trained": "trained", "init": "at init (step 0)"}
BASELINE_COLOR = "#666666"
KIND_COLORS = ("#332288", "#117733", "#882255", "#44AA99", "#999933", "#AA4499", "#88CCEE", "#DDCC77")


def alignment_panel_title(which: str, side: str, reference: str = "") -> str:
    """'A vs the inputs', 'B vs the output gradients', 'A vs W0's right singular vectors', ..."""
    if side == "input":
        return f"{which} (row space) vs the module's inputs"
    if side == "output":
        what = "loss gradients at its output" if "gradient" in reference else "module's outputs"
        return f"{which} (column space) vs the {what}"
    return f"{which} vs W0's top {'right' if which == 'A' else 'left'} singular vectors"


def _layer_labels(layer) -> pd.Series:
    return layer.astype("string").fillna("–")


def _layer_order(labels) -> list[str]:
    return sorted(set(labels), key=lambda s: (s == "–", int(s) if s.isdigit() else 0))


def _alignment_panels(frame: pd.DataFrame, sides) -> list[tuple[str, str, str]]:
    present = set(zip(frame["which"], frame["side"], strict=True))
    panels = []
    for which, side in sides:
        if (which, side) in present:
            ref = frame.loc[(frame["which"] == which) & (frame["side"] == side), "reference"]
            panels.append((which, side, str(ref.iloc[0]) if len(ref) else ""))
    return panels


def alignment_layer_figure(
    frame: pd.DataFrame,
    sides: Sequence[tuple[str, str]] = (("A", "input"), ("B", "output")),
    value: str = "similarity",
    title: str | None = None,
) -> go.Figure:
    """Per layer, bars of how well A and B align with their references (mean over the layer's modules), the
    trained adapter next to its init, and the random-subspace baseline as a dashed grey step.

    One panel per (which, side) in `sides`. Reads `asymviz.probes.alignment.alignment_table` columns ``layer,
    source, which, side, reference, <value>`` and the value's baseline (``random_baseline`` for similarity,
    ``energy_baseline`` for energy_share).
    """
    baseline_col, _ = ALIGN_VALUES[value]
    data = frame.dropna(subset=[value]) if len(frame) else frame

    def bars(fig: go.Figure, part: pd.DataFrame, which: str, layers, legend: set, col: int) -> None:
        for source in [s for s in ("init", "trained") if s in set(part["source"])]:
            g = (
                part[part["source"] == source]
                .groupby("layer_label")
                .agg(
                    mean=(value, "mean"),
                    lo=(value, "min"),
                    hi=(value, "max"),
                    n=(value, "count"),
                    base=(baseline_col, "mean"),
                )  # fmt: skip
                .reindex(layers)
            )
            ratio = g["mean"] / g["base"]
            name = f"{which} {SOURCE_LABELS.get(source, source)}"
            fig.add_trace(
                go.Bar(
                    x=layers, y=g["mean"], name=name, legendgroup=name, showlegend=name not in legend,
                    marker={"color": WHICH_COLORS.get(which), "opacity": 1.0 if source == "trained" else 0.45,
                            "pattern": {"shape": "" if source == "trained" else "/"},
                            "line": {"color": WHICH_COLORS.get(which), "width": 1}},
                    customdata=list(zip(g["n"].fillna(0).astype(int), g["lo"], g["hi"], ratio, strict=True)),
                    hovertemplate=f"layer %{{x}} · {name}<br>{value.replace('_', ' ')}: %{{y:.4f}} "
                    "(×%{customdata[3]:.2f} the random baseline)<br>%{customdata[0]} module(s), "
                    "from %{customdata[1]:.4f} to %{customdata[2]:.4f}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            legend.add(name)

    return _alignment_figure(data, sides, value, title or "Alignment per layer (mean over the layer's modules)",
                             "no alignment rows for these sides", bars)  # fmt: skip


def _alignment_figure(data: pd.DataFrame, sides, value: str, title: str, empty: str, bars) -> go.Figure:
    """What both alignment figures share: one panel per (which, side) present in `data`, layers as categories,
    `bars(fig, part, which, layers, legend, col)` drawing each panel's bars, then its random-baseline step."""
    from plotly.subplots import make_subplots

    baseline_col, y_label = ALIGN_VALUES[value]
    panels = _alignment_panels(data, sides) if len(data) else []
    if not panels:
        return empty_figure(empty, title)
    data = data.assign(layer_label=_layer_labels(data["layer"]))
    layers = _layer_order(data["layer_label"])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[alignment_panel_title(*p) for p in panels],
                        horizontal_spacing=0.08)  # fmt: skip
    legend: set[str] = set()
    for col, (which, side, _) in enumerate(panels, 1):
        part = data[(data["which"] == which) & (data["side"] == side)]
        bars(fig, part, which, layers, legend, col)
        _baseline_step(fig, part, baseline_col, layers, legend, col)
    fig.update_yaxes(title_text=y_label, row=1, col=1)
    fig.update_layout(barmode="group", bargap=0.3, bargroupgap=0.05)
    return style_figure(fig, title, height=420)


def _baseline_step(
    fig: go.Figure, part: pd.DataFrame, baseline_col: str, layers, legend: set, col: int
) -> None:
    """The random-subspace baseline of one alignment panel as a dashed grey step over the layers."""
    base = part.groupby("layer_label")[baseline_col].mean().reindex(layers)
    fig.add_trace(
        go.Scatter(
            x=layers, y=base, mode="lines", name="random subspace (baseline)", legendgroup="baseline",
            showlegend="baseline" not in legend,
            line={"color": BASELINE_COLOR, "dash": "dash", "width": 2, "shape": "hvh"},
            hovertemplate="layer %{x}<br>random baseline %{y:.4f}<extra></extra>",
        ),
        row=1, col=col,
    )  # fmt: skip
    legend.add("baseline")
    fig.update_xaxes(title_text="layer", type="category", row=1, col=col)
    fig.update_yaxes(rangemode="tozero", row=1, col=col)


def alignment_mode_figure(
    summary: pd.DataFrame,
    sides: Sequence[tuple[str, str]] = (("A", "input"), ("B", "output")),
    value: str = "similarity",
    title: str | None = None,
) -> go.Figure:
    """Per layer and training mode, the trained adapters' alignment: mean over seeds ± standard error as bars,
    the random-subspace baseline as a dashed grey step.

    Reads `asymviz.results.alignment_by_mode` columns ``which, side, reference, layer, mode, mean, se, n`` and
    the value's baseline column (``random_baseline`` for similarity, ``energy_baseline`` for energy_share).
    """
    data = summary.dropna(subset=["mean"]) if len(summary) else summary

    def bars(fig: go.Figure, part: pd.DataFrame, which: str, layers, legend: set, col: int) -> None:
        for mode in ordered_modes(part["mode"]):
            g = part[part["mode"] == mode].set_index("layer_label").reindex(layers)
            name = mode_label(mode)
            fig.add_trace(
                go.Bar(
                    x=layers, y=g["mean"], name=name, legendgroup=mode, showlegend=mode not in legend,
                    marker_color=MODE_COLORS.get(mode),
                    error_y={"type": "data", "array": g["se"].fillna(0.0), "visible": True, "thickness": 1.5,
                             "width": 3},
                    customdata=g["n"].fillna(0).astype(int),
                    hovertemplate=f"layer %{{x}} · {name}<br>{value.replace('_', ' ')}: %{{y:.4f}} ± "
                    "%{error_y.array:.4f}<br>seeds: %{customdata}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            legend.add(mode)

    return _alignment_figure(data, sides, value, title or "Alignment per layer and mode (mean ± s.e. over seeds)",
                             "no aligned runs to show", bars)  # fmt: skip


DIAGNOSTIC_PANELS = {  # column -> (panel title, y-axis title)
    "n_intruders": ("intruder dimensions", "count among the top k"),
    "amplification": ("amplification factor", "‖ΔW‖_F / ‖UᵀW0V‖_F"),
    "direction_change": ("direction change", "mean 1 − cos (output units)"),
}


def diagnostics_figure(diag: pd.DataFrame, title: str = "Diagnostics per module") -> go.Figure:
    """Three panels against the layer: intruder dimensions, amplification factor, DoRA direction change; one
    marker series per module kind.

    Reads `asymviz.probes.diagnostics.diagnose` columns ``module, layer, kind, k, n_intruders, amplification,
    direction_change``.
    """
    from plotly.subplots import make_subplots

    if diag.empty:
        return empty_figure("no modules", title)
    data = diag.assign(layer_label=_layer_labels(diag["layer"]),
                       kind=module_roles(diag["module"], diag["layer"], diag["kind"]))  # fmt: skip
    layers = _layer_order(data["layer_label"])
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for t, _ in DIAGNOSTIC_PANELS.values()],
                        horizontal_spacing=0.1)  # fmt: skip
    kinds = list(dict.fromkeys(data["kind"]))
    for col, (column, (label, y_title)) in enumerate(DIAGNOSTIC_PANELS.items(), 1):
        for i, kind in enumerate(kinds):
            part = data[data["kind"] == kind].replace([math.inf, -math.inf], math.nan)
            fig.add_trace(
                go.Scatter(
                    x=part["layer_label"], y=part[column], mode="markers", name=str(kind), legendgroup=str(kind),
                    showlegend=col == 1, marker={"color": KIND_COLORS[i % len(KIND_COLORS)], "size": 9,
                                                 "symbol": i % 8, "opacity": 0.85},
                    text=part["module"],
                    hovertemplate=f"%{{text}}<br>{label}: %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        fig.update_xaxes(title_text="layer", type="category", categoryorder="array", categoryarray=layers,
                         row=1, col=col)  # fmt: skip
        fig.update_yaxes(rangemode="tozero", title_text=y_title, row=1, col=col)
    k = int(diag["k"].max()) if "k" in diag and diag["k"].notna().any() else None
    if k:
        fig.update_yaxes(range=[-0.3, k + 0.3], row=1, col=1)
    return style_figure(fig, title, height=400)
