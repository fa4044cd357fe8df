"""Plotly figure builders shared by the web app and the standalone HTML report.

Every builder is a pure function: a tidy frame in (the columns each one reads are listed in its docstring),
a `plotly.graph_objects.Figure` out. No streamlit, no file access, no computation beyond what a plot needs
(a mean over seeds, a pivot). One colour per mode everywhere:

    MODE_COLORS["b_only"]  ->  the colour of "B only (random A frozen)" on every page and in every report

    fig = mode_bar_figure(mean_se(runs, by=["task", "mode"], value="test_accuracy"), "test accuracy")
    html = figure_html(fig)                 # standalone, works offline (plotly.js embedded)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    import pandas as pd

from asymviz.modes import LABELS as MODE_LABELS
from asymviz.modes import LORA_MODES as MODES  # the control (head_only) is drawn where a store has it

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale print.
MODE_COLORS = {"ab": "#0072B2", "b_only": "#D55E00", "a_only": "#009E73", "head_only": "#7F7F7F"}
# Line dash and marker per mode, so that overlapping curves stay distinguishable (and in greyscale).
MODE_DASH = {"ab": "solid", "b_only": "dash", "a_only": "dot", "head_only": "longdashdot"}
MODE_SYMBOLS = {"ab": "circle", "b_only": "square", "a_only": "diamond", "head_only": "x"}
WHICH_LABELS = {"A": "A (r × d_in)", "B": "B (d_out × r)", "delta": "ΔW = s·B·A"}
WHICH_COLORS = {"A": "#56B4E9", "B": "#E69F00", "delta": "#CC79A7"}
TEMPLATE = "plotly_white"
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}


def mode_label(mode: str) -> str:
    return MODE_LABELS.get(mode, str(mode))


def _ordered_modes(modes) -> list[str]:
    present = list(dict.fromkeys(modes))
    return [m for m in MODES if m in present] + [m for m in present if m not in MODES]


def _style(fig: go.Figure, title: str, x_title: str | None = None, y_title: str | None = None, height=420):
    top = (
        95
        if fig.layout.annotations and any(a.yref == "paper" and a.y == 1.0 for a in fig.layout.annotations)
        else 60
    )
    fig.update_layout(
        template=TEMPLATE,
        font=FONT,
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 16}},
        height=height,
        margin={"l": 60, "r": 20, "t": top, "b": 55},  # room for subplot titles under the title
        # below the plot, under the x-axis title: never on top of the data or the title, at any width
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0, "title": None},
        hoverlabel={"namelength": -1},
    )
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says why it is blank (no data for the current selection)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title, height=260)


# ------------------------------------------------------------------------------------------------------------
# summaries over seeds


def mean_se(frame: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean and standard error of `value` per group (rows with a missing value are dropped).

    Returns
    -------
    DataFrame with columns ``*by, mean, se, n``: se = sample std / √n (NaN when n = 1).
    """
    import pandas as pd

    by = list(by)
    data = frame.dropna(subset=[value])
    if data.empty:
        return pd.DataFrame(columns=[*by, "mean", "se", "n"])
    grouped = data.groupby(by, sort=False, dropna=False)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    out["se"] = out["std"] / out["n"].pow(0.5)
    out.loc[out["n"] < 2, "se"] = float("nan")
    return out[[*by, "mean", "se", "n"]]


def format_mean_se(mean: float, se: float, digits: int = 3) -> str:
    """'0.812 ± 0.004' (or '0.812' for a single seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def mode_bar_figure(
    summary: pd.DataFrame, metric_label: str, x: str = "task", title: str | None = None, y_range=None
) -> go.Figure:
    """Grouped bars of a metric per `x` (task) and mode with ± s.e. error bars.

    Reads columns ``<x>, mode, mean, se, n`` (as `mean_se` returns) and optional ``trainable_params`` (the
    LoRA parameters the mode trains, shown on hover).
    """
    if summary.empty:
        return empty_figure("no finished runs to show", title or metric_label)
    fig = go.Figure()
    for mode in _ordered_modes(summary["mode"]):
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
    fig.update_layout(barmode="group", bargap=0.25)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    return _style(
        fig, title or f"{metric_label} by mode (mean ± s.e. over seeds)", x.replace("_", " "), metric_label
    )


def params_bar_figure(
    frame: pd.DataFrame, x: str = "task", title: str = "Trainable parameters by mode"
) -> go.Figure:
    """Bars of trainable parameter counts. Reads ``<x>, mode, trainable_params`` (one value per group)."""
    if frame.empty:
        return empty_figure("no runs", title)
    fig = go.Figure()
    for mode in _ordered_modes(frame["mode"]):
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
    return _style(fig, title, x.replace("_", " "), "trainable parameters (count)", height=340)


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
    return _style(fig, title or y_label, x_label, y_label)


# ------------------------------------------------------------------------------------------------------------
# spectra of one adapter


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
    return _style(fig, title, height=400)


def _tick_step(k) -> int | None:
    k_max = int(k.max()) if len(k) else 1
    return 1 if k_max <= 16 else None


def layer_module_heatmap(
    summary: pd.DataFrame, value: str, which: str, value_label: str | None = None, title: str | None = None
) -> go.Figure:
    """Layer (rows) × module kind (columns) heatmap of one per-module metric of one factor.

    Reads `asymviz.spectra.spectrum_summary` columns ``layer, kind, which, <value>``; several modules
    with the same (layer, kind) are averaged; modules without a layer index show as layer "–".
    """
    part = summary[summary["which"] == which]
    value_label = value_label or value.replace("_", " ")
    title = title or f"{value_label} of {WHICH_LABELS.get(which, which)} per layer and module"
    if part.empty:
        return empty_figure("no modules", title)
    part = part.assign(layer_label=part["layer"].astype("string").fillna("–"))
    pivot = part.pivot_table(index="layer_label", columns="kind", values=value, aggfunc="mean", sort=False)
    order = sorted(pivot.index, key=lambda s: (s == "–", int(s) if s.isdigit() else 0))
    pivot = pivot.loc[order]
    text = [[("" if v != v else f"{v:.3g}") for v in row] for row in pivot.to_numpy()]
    fig = go.Figure(
        go.Heatmap(
            z=pivot.to_numpy(), x=[str(c) for c in pivot.columns], y=[f"layer {i}" for i in pivot.index],
            colorscale="Viridis", colorbar={"title": {"text": value_label, "side": "right"}},
            text=text, texttemplate="%{text}" if pivot.size <= 200 else None,
            hovertemplate="%{y} · %{x}<br>" + value_label + ": %{z:.4g}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    height = max(300, min(900, 80 + 26 * len(pivot.index)))
    return _style(fig, title, "module kind", "layer", height=height)


# ------------------------------------------------------------------------------------------------------------
# similarity between adapters


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
        subplot_titles=["learned adapters", f"random subspaces, same dimensions (≈ {baseline_mean:.3f})"],
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
    return _style(fig, title, height=height)


def module_similarity_figure(pairs: pd.DataFrame, title: str = "Subspace similarity per module") -> go.Figure:
    """Similarity of two adapters module by module (x = module, in file order), one marker series per factor,
    the random baseline as a grey dashed step. Reads ``module, which, similarity, random_baseline``."""
    if pairs.empty:
        return empty_figure("no common modules", title)
    fig = go.Figure()
    modules = list(dict.fromkeys(pairs["module"]))
    for w in [w for w in ("A", "B", "delta") if w in set(pairs["which"])]:
        part = pairs[pairs["which"] == w].set_index("module").reindex(modules)
        fig.add_trace(
            go.Scatter(
                x=modules, y=part["similarity"], mode="markers+lines", name=WHICH_LABELS[w],
                marker={"color": WHICH_COLORS[w], "size": 7}, line={"color": WHICH_COLORS[w], "width": 1},
                hovertemplate="%{x}<br>similarity %{y:.3f}<extra>" + WHICH_LABELS[w] + "</extra>",
            )
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=modules, y=part["random_baseline"], mode="lines", name=f"random baseline, {w}",
                line={"color": "#888888", "dash": "dash", "width": 1, "shape": "hvh"}, showlegend=w == "A",
                legendgroup="baseline", hovertemplate="%{x}<br>random baseline %{y:.3f}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(showticklabels=len(modules) <= 48, tickangle=-45)
    return _style(fig, title, "module", "similarity ‖U₁ᵀU₂‖²_F / min(k₁,k₂) (0–1)", height=440)


# ------------------------------------------------------------------------------------------------------------
# drift from init


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
    modes = _ordered_modes(data["mode"])
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
    return _style(fig, title, height=400)


# ------------------------------------------------------------------------------------------------------------
# theory (asymviz.theory) and the generalisation bound (asymviz.bound)


def excess_loss_figure(draws: pd.DataFrame, expected: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Histograms of the relative excess loss over random draws of the frozen factor, one per mode, with the
    closed-form expectations as dashed lines and the simulated means as dotted lines.

    Reads ``mode, relative_excess`` (draws) and ``mode, relative_expected`` (expected; mode "ab" is the
    best rank-r update, drawn as a grey line)."""
    title = title or "Excess loss of the frozen-factor solutions over random draws"
    fig = go.Figure()
    for mode in _ordered_modes(draws["mode"]):
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
    return _style(fig, title, "excess loss / Tr(ΔΣΔᵀ)  (0 = perfect, 1 = no better than no fine-tune)",
                  "share of draws (per bin)", height=480)  # fmt: skip


def rank_curve_figure(curves: pd.DataFrame, r_marker: int | None = None,
                      title: str = "Expected excess loss against the rank (closed forms)") -> go.Figure:  # fmt: skip
    """Closed-form relative excess loss against r, one line per mode ("ab" = best rank-r update, grey).

    Reads ``r, mode, relative_expected`` (asymviz.theory.expected_by_rank)."""
    fig = go.Figure()
    for mode in _ordered_modes(curves["mode"]):
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
    return _style(fig, title, "LoRA rank r", "expected excess loss / Tr(ΔΣΔᵀ)", height=430)


def input_spectrum_figure(lam, title: str = "Input covariance spectrum") -> go.Figure:
    """Bars of the eigenvalues λᵢ of Σ (the input covariance) in descending order."""
    import numpy as np

    lam = np.asarray(lam, dtype=float)
    fig = go.Figure(
        go.Bar(x=np.arange(1, len(lam) + 1), y=lam, marker_color="#777777",
               hovertemplate="i = %{x}<br>λ = %{y:.4g}<extra></extra>")
    )  # fmt: skip
    return _style(fig, title, "eigenvalue index i", "variance λᵢ (mean 1)", height=300)


def bound_figure(bounds: pd.DataFrame, title: str = "Generalisation bound by mode") -> go.Figure:
    """Bars of the bound per mode. Reads ``mode, bound`` and optionally ``trainable_params``."""
    if bounds.empty:
        return empty_figure("no bound", title)
    fig = go.Figure()
    for mode in _ordered_modes(bounds["mode"]):
        part = bounds[bounds["mode"] == mode]
        fig.add_trace(
            go.Bar(
                x=[mode_label(mode)], y=part["bound"], marker_color=MODE_COLORS.get(mode), name=mode_label(mode),
                text=[f"{v:.4g}" for v in part["bound"]], textposition="outside", cliponaxis=False,
                hovertemplate="%{x}<br>bound %{y:.4g}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(showlegend=False)
    return _style(fig, title, "mode", "bound on |generalisation error| (loss units)", height=360)


# ------------------------------------------------------------------------------------------------------------
# alignment with the data and the base weights (asymviz.probes.alignment) and diagnostics (asymviz.probes.diagnostics)


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
    return _style(fig, title, height=420)


def _baseline_step(fig: go.Figure, part: pd.DataFrame, baseline_col: str, layers, legend: set, col: int) -> None:
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
    frame: pd.DataFrame,
    sides: Sequence[tuple[str, str]] = (("A", "input"), ("B", "output")),
    value: str = "similarity",
    title: str | None = None,
) -> go.Figure:
    """Per layer and training mode, the trained adapters' alignment: mean over seeds (each run's mean over the
    layer's modules) ± standard error, with the random-subspace baseline as a dashed grey step.

    Reads alignment_table rows stacked over runs, with ``run_id`` and ``mode`` added: ``run_id, mode, layer,
    source, which, side, reference, <value>`` and the value's baseline column; only source "trained" is drawn.
    """
    data = frame[frame["source"] == "trained"].dropna(subset=[value]) if len(frame) else frame

    def bars(fig: go.Figure, part: pd.DataFrame, which: str, layers, legend: set, col: int) -> None:
        per_run = part.groupby(["mode", "run_id", "layer_label"], sort=False)[value].mean().reset_index()
        stats = mean_se(per_run, ["mode", "layer_label"], value)
        for mode in _ordered_modes(stats["mode"]):
            g = stats[stats["mode"] == mode].set_index("layer_label").reindex(layers)
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
    data = diag.assign(layer_label=_layer_labels(diag["layer"]))
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
    return _style(fig, title, height=400)


# ------------------------------------------------------------------------------------------------------------
# export


def figure_html(fig: go.Figure, offline: bool = True) -> str:
    """A standalone HTML page for one figure (plotly.js embedded when offline, about 4.7 MB)."""
    return fig.to_html(full_html=True, include_plotlyjs=True if offline else "cdn")


def figure_png(fig: go.Figure, width: int = 1200, height: int | None = None, scale: float = 2.0) -> bytes:
    """PNG bytes through kaleido, which drives a local Chrome/Chromium (no network needed).

    Raises RuntimeError with a one-line reason when kaleido or a browser is missing.
    """
    try:
        return fig.to_image(format="png", width=width, height=height or fig.layout.height or 450, scale=scale)
    except Exception as exc:  # kaleido missing, no Chrome, or Chrome failed to start
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"PNG export needs kaleido and a Chrome/Chromium browser: {first}") from None
