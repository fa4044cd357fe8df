"""Figures of one adapter and of adapters against each other: singular spectra of A, B and ΔW, a layer × module
map of a per-module metric, and subspace similarity (the paper's Figure 1 layout, and module by module).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.figures.style import (
    WHICH_COLORS,
    WHICH_LABELS,
    empty_figure,
    module_roles,
    readable_log_axis,
    style_figure,  # fmt: skip
)

if TYPE_CHECKING:
    import pandas as pd


def spectrum_figure(
    spectrum: pd.DataFrame,
    which: Sequence[str] = ("A", "B", "delta"),
    y: str = "sigma",
    log_y: bool = True,
    title: str = "Singular values per module",
    max_modules: int = 400,
) -> go.Figure:
    """One panel per factor (A, B, ΔW): σ_k against k, one thin line per module, the median over modules bold.

    Reads `asymviz.spectra.singular_spectrum` columns ``module, layer, which, k, <y>``.
    """
    from plotly.subplots import make_subplots

    which = [w for w in which if w in set(spectrum["which"])]
    if spectrum.empty or not which:
        return empty_figure("no spectrum to show", title)
    y_label = {
        "sigma": "singular value σₖ",
        "sigma_rel": "σₖ / σ₁ (relative)",
        "energy_cum": "cumulative energy Σσᵢ² / Σσ² (share)",
    }.get(y, y)
    fig = make_subplots(rows=1, cols=len(which), subplot_titles=[WHICH_LABELS.get(w, w) for w in which],
                        shared_yaxes=y != "sigma", horizontal_spacing=0.06)  # fmt: skip
    modules = list(dict.fromkeys(spectrum["module"]))[:max_modules]
    data = spectrum[spectrum["module"].isin(modules)]
    for col, w in enumerate(which, 1):
        part = data[data["which"] == w]
        for module, m in part.groupby("module", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=m["k"], y=m[y], mode="lines", line={"color": WHICH_COLORS.get(w), "width": 1}, opacity=0.35,
                    showlegend=False, name=module,
                    hovertemplate=f"{module}<br>k=%{{x}}<br>{y_label}: %{{y:.4g}}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
        median = part.groupby("k")[y].median().reset_index()
        fig.add_trace(
            go.Scatter(
                x=median["k"], y=median[y], mode="lines+markers", line={"color": "#222222", "width": 3},
                marker={"size": 6}, name="median over modules", showlegend=col == 1, legendgroup="median",
                hovertemplate=f"median<br>k=%{{x}}<br>{y_label}: %{{y:.4g}}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.update_xaxes(title_text="index k (descending σ)", row=1, col=col, dtick=_tick_step(part["k"]))
    fig.update_yaxes(title_text=y_label, row=1, col=1)
    if log_y and y != "energy_cum":
        fig.update_yaxes(type="log")
        for col, w in enumerate(which, 1):
            readable_log_axis(fig, data.loc[data["which"] == w, y], row=1, col=col)
    return style_figure(fig, title, height=400)


def _tick_step(k) -> int | None:
    k_max = int(k.max()) if len(k) else 1
    return 1 if k_max <= 16 else None


def layer_module_heatmap(
    summary: pd.DataFrame, value: str, which: str, value_label: str | None = None, title: str | None = None
) -> go.Figure:
    """Layer (rows) × module (columns) heatmap of one per-module metric of one factor.

    Reads `asymviz.spectra.spectrum_summary` columns ``module, layer, kind, which, <value>``; a column is one
    module role (`module_roles`: the kind, or the path after the layer where one kind covers several roles);
    several modules of the same (layer, role) are averaged; modules without a layer index show as layer "–".
    """
    part = summary[summary["which"] == which]
    value_label = value_label or value.replace("_", " ")
    title = title or f"{value_label} of {WHICH_LABELS.get(which, which)} per layer and module"
    if part.empty:
        return empty_figure("no modules", title)
    part = part.assign(layer_label=part["layer"].astype("string").fillna("–"),
                       role=module_roles(part["module"], part["layer"], part["kind"]))  # fmt: skip
    pivot = part.pivot_table(index="layer_label", columns="role", values=value, aggfunc="mean", sort=False)
    order = sorted(pivot.index, key=lambda s: (s == "–", int(s) if s.isdigit() else 0))
    pivot = pivot.loc[order]
    text = [[("" if v != v else f"{v:.3g}") for v in row] for row in pivot.to_numpy()]
    fig = go.Figure(
        go.Heatmap(
            z=pivot.to_numpy(), x=[str(c) for c in pivot.columns], y=[f"layer {i}" for i in pivot.index],
            colorscale="Viridis", colorbar={"title": {"text": value_label.split(" (")[0], "side": "right"}},
            text=text, texttemplate="%{text}" if pivot.size <= 200 else None,
            hovertemplate="%{y} · %{x}<br>" + value_label + ": %{z:.4g}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    height = max(300, min(900, 80 + 26 * len(pivot.index)))
    return style_figure(fig, title, "module (projection)", "layer", height=height)


def similarity_heatmaps(
    pairs: pd.DataFrame, which: str, title: str | None = None, order: Sequence[str] | None = None
) -> go.Figure:
    """Two heatmaps side by side, same 0..1 colour scale: the adapters' subspace similarity (mean over
    modules) and the random-subspace baseline for the same dimensions — the paper's Figure 1 layout.

    Reads `asymviz.similarity.pairwise_similarity` columns ``adapter_1, adapter_2, which, similarity,
    random_baseline`` (pairs="all" for a full matrix; "upper" is mirrored).
    """
    from plotly.subplots import make_subplots

    title = title or f"Similarity of learned {WHICH_LABELS.get(which, which)} subspaces"
    part = pairs[pairs["which"] == which]
    if part.empty:
        return empty_figure("needs at least two adapters with common modules", title)
    mean = part.groupby(["adapter_1", "adapter_2"], sort=False)[["similarity", "random_baseline"]].mean()
    names = list(order) if order else list(dict.fromkeys([*part["adapter_1"], *part["adapter_2"]]))
    import numpy as np

    sim = np.full((len(names), len(names)), np.nan)
    base = np.full_like(sim, np.nan)
    index = {n: i for i, n in enumerate(names)}
    for (a1, a2), row in mean.iterrows():
        if a1 in index and a2 in index:
            i, j = index[a1], index[a2]
            sim[i, j] = sim[j, i] = row["similarity"]
            base[i, j] = base[j, i] = row["random_baseline"]
    np.fill_diagonal(sim, np.where(np.isnan(np.diag(sim)), 1.0, np.diag(sim)))
    np.fill_diagonal(base, np.where(np.isnan(np.diag(base)), 1.0, np.diag(base)))
    baseline_mean = float(np.nanmean(part["random_baseline"]))
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.12,
        subplot_titles=["learned adapters", f"random subspaces (≈ {baseline_mean:.3f})"],
    )  # fmt: skip
    for col, z in ((1, sim), (2, base)):
        text = [["" if v != v else f"{v:.2f}" for v in row] for row in z]
        fig.add_trace(
            go.Heatmap(
                z=z, x=names, y=names, zmin=0, zmax=1, colorscale="Blues", showscale=col == 2,
                colorbar={"title": {"text": "similarity (0–1)", "side": "right"}},
                text=text, texttemplate="%{text}" if len(names) <= 12 else None,
                hovertemplate="%{y} vs %{x}<br>similarity %{z:.3f}<extra></extra>",
            ),
            row=1, col=col,
        )  # fmt: skip
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    height = max(380, min(800, 160 + 34 * len(names)))
    return style_figure(fig, title, height=height)


def module_similarity_figure(pairs: pd.DataFrame, title: str = "Subspace similarity per module") -> go.Figure:
    """Similarity of two adapters module by module (x = module, in file order): one panel per factor (A, B,
    ΔW), so that factors with equal values never hide each other, each with the random baseline of the same
    dimensions as a dashed grey step. Reads ``module, which, similarity, random_baseline``."""
    from plotly.subplots import make_subplots

    if pairs.empty:
        return empty_figure("no common modules", title)
    modules = list(dict.fromkeys(pairs["module"]))
    factors = [w for w in ("A", "B", "delta") if w in set(pairs["which"])]
    fig = make_subplots(
        rows=len(factors), cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=[f"{WHICH_LABELS[w]}: learned (dots) vs random subspaces (dashed)" for w in factors],
    )  # fmt: skip
    for row, w in enumerate(factors, 1):
        part = pairs[pairs["which"] == w].set_index("module").reindex(modules)
        fig.add_trace(
            go.Scatter(
                x=modules, y=part["similarity"], mode="markers+lines", name=WHICH_LABELS[w],
                marker={"color": WHICH_COLORS[w], "size": 6}, line={"color": WHICH_COLORS[w], "width": 1},
                hovertemplate="%{x}<br>similarity %{y:.3f}<extra>" + WHICH_LABELS[w] + "</extra>",
            ),
            row=row, col=1,
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=modules, y=part["random_baseline"], mode="lines", name="random subspaces, same dimensions",
                line={"color": "#888888", "dash": "dash", "width": 1.5, "shape": "hvh"},
                hovertemplate="%{x}<br>random baseline %{y:.3f}<extra></extra>",
            ),
            row=row, col=1,
        )  # fmt: skip
        fig.update_yaxes(range=[0, 1.05], title_text="similarity (0–1)", row=row, col=1)
    fig.update_xaxes(showticklabels=False)
    fig.update_xaxes(showticklabels=len(modules) <= 48, tickangle=-45, title_text="module" if len(modules) <= 48
                     else "module (file order; hover for its name)", row=len(factors), col=1)  # fmt: skip
    fig = style_figure(fig, title, height=190 + 170 * len(factors) + (140 if len(modules) <= 48 else 0))
    fig.update_layout(showlegend=False)  # the panel titles say what each line is
    return fig


def shared_directions_figure(curves: pd.DataFrame, n: int, title: str | None = None) -> go.Figure:
    """How much of N adapters' subspaces k shared directions hold, against k, one line per factor, each with
    the same curve for N random subspaces of the same dimensions (dashed). Far above the dashed line: the N
    adapters share directions (for A usually a shared init, for B a shared task).

    Reads ``which, k, variance_explained, random_baseline`` (asymviz.collection's shared frame, averaged over
    modules by the caller).
    """
    title = title or f"Directions shared by the {n} adapters (mean over modules)"
    if curves.empty:
        return empty_figure("needs at least two adapters with common modules", title)
    fig = go.Figure()
    for w in [w for w in ("A", "B", "delta") if w in set(curves["which"])]:
        part = curves[curves["which"] == w]
        color = WHICH_COLORS[w]
        fig.add_trace(go.Scatter(
            x=part["k"], y=part["variance_explained"], mode="lines+markers", name=f"{WHICH_LABELS[w]}",
            legendgroup=w, line={"color": color, "width": 2.5}, marker={"size": 6},
            hovertemplate=f"{WHICH_LABELS[w]}<br>k = %{{x}}<br>share held: %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
        fig.add_trace(go.Scatter(
            x=part["k"], y=part["random_baseline"], mode="lines", name=f"{w}: random subspaces",
            legendgroup=w, line={"color": color, "width": 1.5, "dash": "dash"},
            hovertemplate=f"random, {w}<br>k = %{{x}}<br>share held: %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    fig.update_yaxes(range=[0, 1.02])
    fig.update_xaxes(dtick=1 if curves["k"].max() <= 16 else None)
    return style_figure(
        fig, title, "k shared directions", f"share of the {n} subspaces held (0–1)", height=400
    )
