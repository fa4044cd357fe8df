"""The asymviz web app: a router, nothing else.

    streamlit run streamlit_app.py        # or: asymviz app

Each page is one script under app/pages/ (widgets -> cached asymviz call -> Plotly figure / table);
app/state.py draws the sidebar every page shares (the run store, the experiment) and holds the session keys.
"""

from pathlib import Path

import streamlit as st

from app import import_guard, state

st.set_page_config(page_title="asymviz · LoRA asymmetry", page_icon="⚖️", layout="wide")

PAGES_DIR = Path(__file__).parent / "app" / "pages"
SECTIONS = {
    "Results": [
        st.Page(PAGES_DIR / "overview.py", title="Overview", icon=":material/insights:", default=True),
        st.Page(PAGES_DIR / "compare.py", title="Compare runs", icon=":material/compare_arrows:"),
    ],
    "Your adapter": [
        st.Page(PAGES_DIR / "inspect.py", title="Inspect an adapter", icon=":material/biotech:"),
        st.Page(PAGES_DIR / "collection.py", title="Many adapters", icon=":material/stacks:"),
    ],
    "Experiment": [
        st.Page(PAGES_DIR / "live.py", title="Live fine-tune", icon=":material/play_circle:"),
    ],
    "Background": [
        st.Page(PAGES_DIR / "theory.py", title="Theory", icon=":material/functions:"),
    ],
}
# The Alignment page (issue 5) joins "Your adapter" as soon as app/pages/alignment.py exists.
if (PAGES_DIR / "alignment.py").exists():
    SECTIONS["Your adapter"].append(
        st.Page(PAGES_DIR / "alignment.py", title="Alignment", icon=":material/join:")
    )

# Pages whose run never imports torch (checked by tests/app/test_import_guard.py); any other page imports it
# before its run (app/import_guard.py says why). Compare runs stays out: its views run on numpy for safetensors
# runs, but a store with .bin adapters makes it import torch mid-run, and leaving it out measured no slower
# (bench_app_browser: the warm-up has imported torch before a first visit).
PAGES_WITHOUT_TORCH = {"Overview", "Theory"}

page = st.navigation(SECTIONS)
st.set_page_config(page_title=f"{page.title} · asymviz")  # each browser tab says which page it shows
with import_guard.script_run(needs_torch=page.title not in PAGES_WITHOUT_TORCH):
    state.sidebar()
    state.warm_up()
    page.run()
