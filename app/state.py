"""The sidebar every page shares and the session keys the pages read: which run store, which experiment (group
folder) of it, which frozen-A init of an init study; where the live page trains; the once-per-server warm-up.

    state.sidebar()                      # the router draws it on every page
    store = state.store_path()           # the run store the pages read
    runs = state.finished_runs(str(store))   # the runs every table counts, as the sidebar chose them

Session keys: "store" (a folder), "group" (a group folder of the store, or None for a flat store: runs of two
group folders are never pooled, each is one experiment),
"a_init_filter" (the B-only frozen-A init shown when an experiment has several); in public mode also
"my_jobs" (this visitor's live fine-tunes), "n_uploads" and "upload_folder" (a SessionFolder).

Two modes. Local (the default): the sidebar's store is any folder, adapters can be read from local paths.
Public (`asymviz app --public`, or ASYMVIZ_PUBLIC=1 for containers): the store and the live-run folder are
fixed by the operator (ASYMVIZ_STORE, ASYMVIZ_LIVE_DIR), no page reads or shows a server path, uploads and
live fine-tunes are capped (`Limits`, from ASYMVIZ_PUBLIC_* variables).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import cached

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STORE = Path(os.environ.get("ASYMVIZ_STORE", REPO / "cached_runs"))
# the shipped experiments in the order of their numbers (each README's first line, "# Exp N · ..."); the
# sidebar lists them so, then any other group folder alphabetically, and opens on the first (Table 1)
EXPERIMENT_ORDER = ("minilm_tasks", "minilm_rank", "minilm_head", "minilm_mechanism", "vit_mechanism", "similarity",
                    "vit_mnist", "smollm2_qa")  # fmt: skip
LIVE_GROUP = "live"  # live fine-tunes started on the shipped store go to cached_runs/live/ (git-ignored)
log = logging.getLogger("asymviz.app")


@dataclass(frozen=True)
class Limits:
    """Public mode's caps; each field can be set by the environment variable ASYMVIZ_PUBLIC_<FIELD>."""

    upload_mb: int = 200  # largest adapter upload, in MB (also capped by server.maxUploadSize)
    uploads: int = 10  # uploads per session; the files are deleted when the session ends
    queue: int = 3  # live fine-tune requests queued or running on the server at once
    run_s: int = 600  # wall-clock limit of one live request, in seconds (the process is killed after it)
    threads: int = 2  # CPU threads of a live fine-tune
    steps: int = 1000  # most training steps a visitor can ask for

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 1:
                raise ValueError(f"ASYMVIZ_PUBLIC_{name.upper()} must be a positive integer")

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for name in cls.__dataclass_fields__:
            text = os.environ.get(f"ASYMVIZ_PUBLIC_{name.upper()}")
            if text:
                try:
                    values[name] = int(text)
                except ValueError:
                    raise ValueError(
                        f"ASYMVIZ_PUBLIC_{name.upper()} must be an integer, got {text!r}"
                    ) from None
        return cls(**values)


def public() -> bool:
    """True in public mode (ASYMVIZ_PUBLIC set to anything but '', '0', 'false', 'no')."""
    return os.environ.get("ASYMVIZ_PUBLIC", "").strip().lower() not in ("", "0", "false", "no")


def limits() -> Limits:
    return Limits.from_env()


def where(path: str | Path, public_words: str = "the server's run store") -> str:
    """A folder as a page may show it: its path locally, words in public mode (no server paths)."""
    return public_words if public() else f"`{path}`"


def group_label(store: str | Path, group: str) -> str:
    """A group folder as people read it: the first heading of its README.md, else its name."""
    if group == LIVE_GROUP:
        return "Live fine-tunes (started in this app)"
    try:
        with open(Path(store) / group / "README.md", encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    except OSError:
        pass
    return group


def store_groups(store: str | Path) -> list[str]:
    """The store's group folders that hold runs (e.g. one per shipped experiment), the shipped experiments in
    the order of their numbers (EXPERIMENT_ORDER), then the others alphabetically; [] for a flat store."""
    from asymviz.runs import RunStore

    try:
        groups = RunStore(Path(store).expanduser()).groups()
    except OSError:
        return []
    return sorted(
        groups,
        key=lambda g: (EXPERIMENT_ORDER.index(g) if g in EXPERIMENT_ORDER else len(EXPERIMENT_ORDER), g),
    )


def sidebar() -> None:
    """The sidebar every page shares: which run store the pages read (and the live page writes), and which
    experiment (group folder) of it."""
    if public():
        st.session_state["store"] = str(_public_store())
    st.session_state.setdefault("store", str(DEFAULT_STORE))
    with st.sidebar:
        if public():
            st.caption("Public mode: the runs shown are fixed by the operator of this server.")
        else:
            _store_input()
        store = st.session_state["store"]
        groups = store_groups(store)
        if groups:
            # one experiment at a time, never "all runs": two group folders can hold runs of the same model,
            # task and mode that are different experiments (vit_mnist and vit_mechanism), and a mean over
            # both would be a number nobody measured
            if st.session_state.get("group") not in groups:
                st.session_state["group"] = groups[0]
            st.selectbox(
                "Experiment", groups, key="group", format_func=lambda g: group_label(store, g),
                help="The pages show the runs of one experiment (a group folder of the store); runs of two "
                "experiments are never pooled. Learning-rate grid runs and runs superseded by a later lr choice "
                "are left out of the tables and figures.",
            )  # fmt: skip
        else:
            st.session_state["group"] = None
        st.caption(
            "Modes: **A&B** both factors trained · **B only** A random, frozen · **A only** B random, frozen · "
            "**head only** no adapter, the floor every LoRA mode is measured against."
        )


def _store_input() -> None:
    st.text_input(
        "Run store",
        key="store",
        help="Folder with one sub-folder per run (run.json, metrics.csv, adapter/, init/), or with group "
        "folders of such runs (one per experiment, as in the shipped cached_runs/). Live fine-tunes started "
        "on the shipped store are saved in its live/ folder.",
    )


def _public_store() -> Path:
    return Path(os.environ.get("ASYMVIZ_STORE") or REPO / "cached_runs").expanduser()


def store_path() -> Path:
    """The run store the pages read: the sidebar's folder, or in public mode the operator's (ASYMVIZ_STORE)."""
    if public():
        return _public_store()
    return Path(st.session_state.get("store") or DEFAULT_STORE).expanduser()


def live_store() -> Path:
    """Where the live page trains: the shipped store's live/ folder (git-ignored), else the chosen store; in
    public mode ASYMVIZ_LIVE_DIR (default: asymviz-live in the temporary folder), never the shipped runs."""
    if public():
        return Path(os.environ.get("ASYMVIZ_LIVE_DIR") or Path(tempfile.gettempdir()) / "asymviz-live")
    store = store_path()
    try:
        shipped = store.resolve() == (REPO / "cached_runs").resolve()
    except OSError:
        shipped = False
    return store / LIVE_GROUP if shipped else store


def group() -> str | None:
    """The sidebar's experiment (group folder), or None for a flat store."""
    return st.session_state.get("group") or None


def finished_runs(store: str):
    """The completed runs the pages count (asymviz.results.counted_runs): those of the sidebar's experiment
    (group folder) when the store has groups, without lr-grid runs or runs superseded by a later lr choice,
    and for B only with several frozen-A inits, the init chosen in the sidebar (default orthogonal)."""
    from asymviz.results import b_only_inits, counted_runs

    group = st.session_state.get("group") or None
    groups = store_groups(store)
    if groups and group not in groups:  # never every group's runs at once (see sidebar)
        group = groups[0]
    runs = counted_runs(cached.all_runs(store), group=group, a_init=None)
    inits = b_only_inits(runs)
    if len(inits) > 1:
        default = "orthogonal" if "orthogonal" in inits else inits[0]
        chosen = st.session_state.get("a_init_filter")
        chosen = chosen if chosen in inits else default
        with st.sidebar:
            chosen = st.radio(
                "Frozen A of B only", inits, index=inits.index(chosen), key="a_init_filter",
                help="This experiment has B-only runs with several random-A inits (the init study); the pages "
                "show one at a time.",
            )  # fmt: skip
        runs = counted_runs(runs, group=group, a_init=chosen)
    return runs


def upload_folder() -> Path | None:
    """Where this session's uploads go: None locally (uploads.UPLOAD_DIR, cleaned after a day), in public mode
    a SessionFolder deleted when the session ends."""
    if not public():
        return None
    from app.uploads import SessionFolder

    if "upload_folder" not in st.session_state:
        st.session_state["upload_folder"] = SessionFolder()
    return st.session_state["upload_folder"].path


@st.cache_resource(show_spinner=False)
def warm_up(delay_s: float = 2.0) -> None:
    """Once per server: import the heavy modules in a background thread after the first page has painted,
    so the first visit to a page that needs torch (every page but Overview and Theory: streamlit_app's
    PAGES_WITHOUT_TORCH) does not wait ~2 s for the import."""
    import threading

    if os.environ.get("ASYMVIZ_WARM_UP", "1") == "0":  # tests: no thread left importing torch at exit
        return

    def work():
        from app import import_guard

        time.sleep(delay_s)
        for name in ("pandas", "plotly.graph_objects", "torch", "safetensors", "asymviz.spectra",
                     "asymviz.similarity"):  # fmt: skip
            try:  # torch only between script runs (app/import_guard.py: scipy fails during its import)
                import_guard.import_torch() if name == "torch" else __import__(name)
            except Exception:  # a missing optional module only loses the warm start
                log.debug("warm-up could not import %s", name)

    threading.Thread(target=work, name="asymviz-warm-up", daemon=True).start()
