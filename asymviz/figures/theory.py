"""Figures of the theory page and the bound: excess loss of the frozen-factor solutions over random draws, its
closed form against the rank, the input spectrum, and the generalisation bound (Zhu et al. 2024, Lemma 4.5) by mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.figures.style import MODE_COLORS, empty_figure, mode_label, ordered_modes, style_figure

if TYPE_CHECKING:
    import pandas as pd


def excess_loss_figure(draws: pd.DataFrame, expected: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Histograms of the relative excess loss over random draws of the frozen factor, one per mode, with the
    closed-form expectations as dashed lines and the simulated means as dotted lines.

    Reads ``mode, relative_excess`` (draws) and ``mode, relative_expected`` (expected; mode "ab" is the
    best rank-r update, drawn as a grey line)."""
    title = title or "Excess loss of the frozen-factor solutions over random draws"
    fig = go.Figure()
    for mode in ordered_modes(draws["mode"]):
        part = draws[draws["mode"] == mode]
        fig.add_trace(
            go.Histogram(
                x=part["relative_excess"], name=f"{mode_label(mode)} (simulated)", marker_color=MODE_COLORS.get(mode),
                opacity=0.6, nbinsx=40, histnorm="probability",
                hovertemplate="relative excess %{x}<br>density %{y:.3g}<extra>" + mode_label(mode) + "</extra>",
            )
        )  # fmt: skip
    for _, row in expected.iterrows():
        mode = row["mode"]
        color = MODE_COLORS.get(mode, "#555555") if mode != "ab" else "#555555"
        label = "best rank-r (A&B optimum)" if mode == "ab" else f"closed form, {mode_label(mode)}"
        fig.add_vline(x=row["relative_expected"], line={"color": color, "dash": "dash", "width": 2})
        fig.add_trace(
            go.Scatter(x=[None], y=[None], mode="lines", name=f"{label}: {row['relative_expected']:.3f}",
                       line={"color": color, "dash": "dash", "width": 2})
        )  # fmt: skip
    fig.update_layout(barmode="overlay")
    return style_figure(fig, title, "excess loss / Tr(ΔΣΔᵀ)  (0 = perfect, 1 = no better than no fine-tune)",
                  "share of draws (per bin)", height=480)  # fmt: skip


def rank_curve_figure(curves: pd.DataFrame, r_marker: int | None = None,
                      title: str = "Expected excess loss against the rank (closed forms)") -> go.Figure:  # fmt: skip
    """Closed-form relative excess loss against r, one line per mode ("ab" = best rank-r update, grey).

    Reads ``r, mode, relative_expected`` (asymviz.theory.expected_by_rank)."""
    fig = go.Figure()
    for mode in ordered_modes(curves["mode"]):
        part = curves[curves["mode"] == mode]
        name = "best rank-r update (A&B optimum)" if mode == "ab" else mode_label(mode)
        color = "#555555" if mode == "ab" else MODE_COLORS.get(mode)
        fig.add_trace(
            go.Scatter(
                x=part["r"], y=part["relative_expected"], mode="lines", name=name,
                line={"color": color, "width": 2.5, "dash": "dot" if mode == "ab" else "solid"},
                hovertemplate="r = %{x}<br>relative excess %{y:.3f}<extra>" + name + "</extra>",
            )
        )  # fmt: skip
    if r_marker is not None:
        fig.add_vline(x=r_marker, line={"color": "#999999", "width": 1, "dash": "dash"})
    fig.update_yaxes(range=[0, 1.02])
    return style_figure(fig, title, "LoRA rank r", "expected excess loss / Tr(ΔΣΔᵀ)", height=430)


def input_spectrum_figure(lam, title: str = "Input covariance spectrum") -> go.Figure:
    """Bars of the eigenvalues λᵢ of Σ (the input covariance) in descending order."""
    import numpy as np

    lam = np.asarray(lam, dtype=float)
    fig = go.Figure(
        go.Bar(x=np.arange(1, len(lam) + 1), y=lam, marker_color="#777777",
               hovertemplate="i = %{x}<br>λ = %{y:.4g}<extra></extra>")
    )  # fmt: skip
    return style_figure(fig, title, "eigenvalue index i", "variance λᵢ (mean 1)", height=300)


def bound_figure(bounds: pd.DataFrame, title: str = "Generalisation bound by mode") -> go.Figure:
    """Bars of the bound on |generalisation error| per mode, in the loss's units. Reads ``mode, bound`` and
    optionally ``trainable_params``."""
    if bounds.empty:
        return empty_figure("no bound", title)
    fig = go.Figure()
    for mode in ordered_modes(bounds["mode"]):
        part = bounds[bounds["mode"] == mode]
        fig.add_trace(
            go.Bar(
                x=[mode_label(mode)], y=part["bound"], marker_color=MODE_COLORS.get(mode), name=mode_label(mode),
                text=[f"{v:.4g}" for v in part["bound"]], textposition="outside", cliponaxis=False,
                hovertemplate="%{x}<br>bound %{y:.4g}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(showlegend=False)
    return style_figure(fig, title, "mode", "bound (loss units)", height=360)
