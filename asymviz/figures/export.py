"""A figure as a file: standalone HTML (plotly.js embedded, opens offline) or PNG through kaleido."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from asymviz.errors import first_line

if TYPE_CHECKING:
    pass


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
        first = first_line(exc)
        raise RuntimeError(f"PNG export needs kaleido and a Chrome/Chromium browser: {first}") from None
