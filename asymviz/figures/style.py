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


def module_roles(module, layer, kind) -> list[str]:
    """What each module does, as a reader tells modules apart: its `kind` (q_proj, query, ...), except where one
    kind name covers several roles in a layer (BERT's attention.output.dense, intermediate.dense and
    output.dense are all "dense"): there the module's path after its layer index ("attention.output.dense").

    module, layer, kind : equal-length sequences (a frame's columns); returns one label per module.
    """
    import re

    def suffix(name: str, lay, kind: str) -> str:
        if lay is None or lay != lay:
            return kind
        match = re.search(rf"(?:^|\.){int(lay)}\.(.+)$", str(name))
        return match.group(1) if match else kind

    suffixes = [suffix(m, lay, str(k)) for m, lay, k in zip(module, layer, kind, strict=True)]
    roles: dict[str, set[str]] = {}
    for k, s in zip(kind, suffixes, strict=True):
        roles.setdefault(str(k), set()).add(s)
    return [s if len(roles[str(k)]) > 1 else str(k) for k, s in zip(kind, suffixes, strict=True)]


def readable_log_axis(fig: go.Figure, values, **where) -> None:
    """Ticks of a log axis that read as numbers: over a decade or more, one labelled tick per power of ten
    (Plotly's default labels the 2s and 5s between them with bare digits, which reads as noise), with
    unlabelled minor ticks; under a decade the default (0.5, 1, 1.5, ...) is kept."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and np.log10(v.max()) - np.log10(v.min()) >= 1.0:
        fig.update_yaxes(dtick=1, tickformat="~g", minor={"ticks": "outside", "ticklen": 3, "dtick": "D1",
                                                          "showgrid": False}, **where)  # fmt: skip
