"""The look every asymviz figure shares: one colour, dash and marker per mode, the template and font, the title
and legend placement, and the blank figure that says why it is blank.

    MODE_COLORS["b_only"]  ->  the colour of "B only (random A frozen)" on every page and in every report
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from asymviz.modes import LABELS as MODE_LABELS
from asymviz.modes import MODES as ALL_MODES  # the three LoRA modes, then the head_only control

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
    """A mode's display label (asymviz.modes.LABELS), unknown modes as given."""
    return MODE_LABELS.get(mode, str(mode))


def ordered_modes(modes) -> list[str]:
    """The modes present in `modes`, in canonical order: the LoRA modes, the head_only control, then others."""
    present = list(dict.fromkeys(modes))
    return [m for m in ALL_MODES if m in present] + [m for m in present if m not in ALL_MODES]


def style_figure(
    fig: go.Figure, title: str, x_title: str | None = None, y_title: str | None = None, height=420
):
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
    return style_figure(fig, title, height=260)


def format_mean_se(mean: float, se: float, digits: int = 3) -> str:
    """'0.812 ± 0.004' (or '0.812' for a single seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"
