"""The server's start-up: import what the Overview's first run needs while the first visitor's browser is still
loading Streamlit's frontend.

    app = st.App(__file__, lifespan=startup.lifespan)     # streamlit_app.py, when `streamlit run` serves it

Why: on a 2-core machine the browser needs about 0.7 s from opening the URL to the app's websocket, and the
server sits idle meanwhile; the Overview's first run then spent about 0.9 s before its first chart, most of it
importing pandas, asymviz.results (scipy.special), Plotly's figure classes (loaded on a figure's first build)
and pyarrow (tables). `lifespan` starts one daemon thread at server start that imports them (PRELOAD) and
builds one small figure, so that the first run finds them imported. The thread takes a shared turn as a script
run does (app/import_guard.py): torch's first import waits for it, as it waits for page runs.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger("asymviz.app")

# what the Overview's first run imports before and around its first chart, heaviest first (none imports torch)
PRELOAD = ("pandas", "asymviz.results", "plotly.graph_objects", "pyarrow", "streamlit.elements.plotly_chart",
           "asymviz.runs", "asymviz.figures", "app.cached", "app.state", "app.tables", "app.components",
           "app.replication")  # fmt: skip


def preload(names: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import `names` and build one small Plotly figure, in a shared turn (import_guard.script_run); returns
    the names that could not be imported (a missing optional module only loses the head start)."""
    from app import import_guard

    failed = []
    with import_guard.script_run():
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:
                log.debug("start-up could not import %s", name)
                failed.append(name)
        try:  # Plotly imports each trace's and the layout's validators on a figure's first build
            import plotly.graph_objects as go

            go.Figure(go.Bar(x=["A&B"], y=[0.0], error_y={"array": [0.0]})).update_layout(title="x").to_json()
        except Exception:
            log.debug("start-up could not build a Plotly figure")
    return failed


@asynccontextmanager
async def lifespan(app) -> AsyncIterator[None]:
    """st.App's start-up hook: preload in a daemon thread (the server answers at once), nothing at shutdown."""
    threading.Thread(target=preload, name="asymviz-preload", daemon=True).start()
    yield
