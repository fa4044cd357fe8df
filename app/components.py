"""Small shared widgets for the pages: the run store, error reporting, the adapter picker, downloads.

Nothing here imports torch, transformers or peft at module level: the app's first paint must stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from asymviz.runs import adapter_dir, run_folder_of

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STORE = Path(os.environ.get("ASYMVIZ_STORE", REPO / "cached_runs"))
UPLOAD_DIR = Path(tempfile.gettempdir()) / "asymviz-uploads"
UPLOAD_TTL_S = 24 * 3600
log = logging.getLogger("asymviz.app")


# ------------------------------------------------------------------------------------------------------------
# shared sidebar state


ALL_GROUPS = "(all runs)"
LIVE_GROUP = "live"  # live fine-tunes started on the shipped store go to cached_runs/live/ (git-ignored)


def group_label(store: str | Path, group: str) -> str:
    """A group folder as people read it: the first heading of its README.md, else its name."""
    if group == ALL_GROUPS:
        return "All runs of the store"
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
    """The store's group folders that hold runs (e.g. one per shipped experiment); [] for a flat store."""
    from asymviz.runs import RunStore

    try:
        return RunStore(Path(store).expanduser()).groups()
    except OSError:
        return []


def sidebar() -> None:
    """The sidebar every page shares: which run store the pages read (and the live page writes), and which
    experiment (group folder) of it."""
    st.session_state.setdefault("store", str(DEFAULT_STORE))
    with st.sidebar:
        st.text_input(
            "Run store",
            key="store",
            help="Folder with one sub-folder per run (run.json, metrics.csv, adapter/, init/), or with group "
            "folders of such runs (one per experiment, as in the shipped cached_runs/). Live fine-tunes started "
            "on the shipped store are saved in its live/ folder.",
        )
        store = st.session_state["store"]
        groups = store_groups(store)
        if groups:
            options = [*groups, ALL_GROUPS]
            if st.session_state.get("group") not in options:
                st.session_state["group"] = options[0]
            st.selectbox(
                "Experiment", options, key="group", format_func=lambda g: group_label(store, g),
                help="The pages show the runs of one experiment (a group folder of the store). Learning-rate "
                "grid runs and runs superseded by a later lr choice are left out of the tables and figures.",
            )  # fmt: skip
        else:
            st.session_state["group"] = None
        st.caption(
            "Modes: **A&B** both factors trained · **B only** A random, frozen · **A only** B random, frozen."
        )


@st.cache_resource(show_spinner=False)
def warm_up(delay_s: float = 2.0) -> None:
    """Once per server: import the heavy modules in a background thread after the first page has painted,
    so the first visit to a page that needs torch (Inspect, Compare) does not wait ~2 s for the import."""
    import threading

    if os.environ.get("ASYMVIZ_WARM_UP", "1") == "0":  # tests: no thread left importing torch at exit
        return

    def work():
        time.sleep(delay_s)
        for name in (
            "pandas",
            "plotly.graph_objects",
            "torch",
            "safetensors",
            "asymviz.spectra",
            "asymviz.similarity",
        ):
            try:
                __import__(name)
            except Exception:  # a missing optional module only loses the warm start
                log.debug("warm-up could not import %s", name)

    threading.Thread(target=work, name="asymviz-warm-up", daemon=True).start()


def store_path() -> Path:
    return Path(st.session_state.get("store") or DEFAULT_STORE).expanduser()


def live_store() -> Path:
    """Where the live page trains: the shipped store's live/ folder (git-ignored), else the chosen store."""
    store = store_path()
    try:
        shipped = store.resolve() == (REPO / "cached_runs").resolve()
    except OSError:
        shipped = False
    return store / LIVE_GROUP if shipped else store


# ------------------------------------------------------------------------------------------------------------
# errors: one st.error with what to do, never a traceback


@contextlib.contextmanager
def guard(what_to_do: str = "Check the input and try again.", stop: bool = False):
    """Show any failure inside the block as an st.error with advice; library errors show their own line.

    stop : end the page after the error (for steps the rest of the page needs)
    """
    from asymviz.errors import AsymvizError

    try:
        yield
    except AsymvizError as exc:
        st.error(f"{_first_line(exc)}  \n{what_to_do}", icon=":material/error:")
    except MemoryError:
        st.error(f"Out of memory while doing this. {what_to_do}", icon=":material/error:")
    except Exception as exc:  # anything else: log the traceback on the server, show one line
        log.exception("page error")
        st.error(
            f"Something went wrong: {type(exc).__name__}: {_first_line(exc)}  \n{what_to_do}",
            icon=":material/error:",
        )
    else:
        return
    if stop:
        st.stop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def caption(text: str) -> None:
    """The short 'what am I looking at' line under a figure."""
    st.caption(f":material/info: {text}")


# ------------------------------------------------------------------------------------------------------------
# adapters: pick one, load it once per session (cache), compute frames once per adapter (cache)


@dataclass(frozen=True)
class AdapterChoice:
    path: str  # what load_adapter reads: a folder, a .zip or a .safetensors/.bin file
    label: str  # short name for legends and file names
    signature: str  # changes when the file changes (cache key)


def _signature(path: Path) -> str:
    try:
        if path.is_dir():
            stats = [p.stat() for p in sorted(path.rglob("*")) if p.is_file()]
            return f"{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
        s = path.stat()
        return f"{s.st_size}:{s.st_mtime_ns}"
    except OSError:
        return "missing"


def choice_for(path: str | Path, label: str | None = None) -> AdapterChoice:
    path = Path(path)
    return AdapterChoice(str(path), label or path.name, _signature(path))


@st.cache_resource(max_entries=16, show_spinner=False)
def load_adapter_cached(path: str, signature: str):
    """One LoraAdapter per file version; raises AdapterError (shown by `guard`)."""
    from asymviz.adapters import load_adapter

    return load_adapter(path)


def _clean_old_uploads() -> None:
    if not UPLOAD_DIR.is_dir():
        return
    now = time.time()
    for entry in UPLOAD_DIR.iterdir():
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > UPLOAD_TTL_S:
                shutil.rmtree(entry, ignore_errors=True)


def _save_uploads(files, key: str) -> Path:
    """Write uploaded files to a private folder named after their upload ids; returns the folder."""
    ids = "-".join(str(getattr(f, "file_id", f.name)) for f in files)
    folder = UPLOAD_DIR / f"{key}-{abs(hash(ids)):x}"
    if not folder.is_dir():
        _clean_old_uploads()
        tmp = Path(tempfile.mkdtemp(prefix="partial-", dir=_ensure(UPLOAD_DIR)))
        for f in files:
            name = Path(f.name).name  # never a path from the client
            if name.lower().endswith(".json"):
                name = "adapter_config.json"
            with open(tmp / name, "wb") as out:
                out.write(f.getbuffer())
        os.replace(tmp, folder)
    return folder


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_upload_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


SOURCES = ("Upload a .zip", "Upload the PEFT files", "A stored run", "A local path")


def adapter_picker(
    key: str, title: str = "Adapter", runs=None, default_source: int = 0
) -> AdapterChoice | None:
    """Let the user choose an adapter four ways; returns the choice, or None (with a hint shown) until one is made.

    runs : the run store's frame (asymviz.runs list) for the "A stored run" option, or None to read the store
    """
    source = st.radio(title, SOURCES, index=default_source, key=f"{key}_source", horizontal=True)
    limit = max_upload_mb()
    if source == SOURCES[0]:
        up = st.file_uploader(
            "A .zip of a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)",
            type=["zip"], key=f"{key}_zip", help=f"At most {limit:,} MB.",
        )  # fmt: skip
        if up is None:
            return None
        if up.size > limit * 1024**2:
            st.error(
                f"{up.name} is {up.size / 1024**2:,.0f} MB, over the {limit:,} MB limit. Upload a smaller file."
            )
            return None
        folder = _save_uploads([up], key)
        path = folder / Path(up.name).name
        return AdapterChoice(str(path), Path(up.name).stem, path.parent.name)
    if source == SOURCES[1]:
        ups = st.file_uploader(
            "adapter_model.safetensors (or .bin) and, if you have it, adapter_config.json",
            type=["safetensors", "bin", "json"], accept_multiple_files=True, key=f"{key}_files",
        )  # fmt: skip
        if not ups:
            return None
        weights = [u for u in ups if not u.name.lower().endswith(".json")]
        configs = [u for u in ups if u.name.lower().endswith(".json")]
        if len(weights) != 1 or len(configs) > 1:
            st.error(
                "Upload exactly one weights file (.safetensors or .bin) and at most one adapter_config.json "
                f"(got {len(weights)} weights file(s) and {len(configs)} .json file(s))."
            )
            return None
        if not configs:
            st.warning("Without adapter_config.json lora_alpha is unknown: ΔW is shown with scaling 1.")
        folder = _save_uploads([*weights, *configs], key)
        path = folder / Path(weights[0].name).name
        return AdapterChoice(str(path), Path(weights[0].name).stem, folder.name)
    if source == SOURCES[2]:
        return stored_run_adapter(key, runs)
    text = st.text_input(
        "Path on the server: a PEFT folder, a .zip, or a .safetensors / .bin file", key=f"{key}_path"
    )
    if not text.strip():
        return None
    path = Path(text.strip()).expanduser()
    if not path.exists():
        st.error(
            f"{path}: no such file or folder on the server. Check the path (it is read by the app's machine)."
        )
        return None
    run = run_folder_of(path)
    return choice_for(path, run.name if run is not None and run != path else path.name)


def stored_run_adapter(key: str, runs=None) -> AdapterChoice | None:
    """Pick a run of the store that has an adapter/ folder."""
    from app import cached

    runs = cached.all_runs(str(store_path())) if runs is None else runs
    runs = runs[runs["has_adapter"]] if "has_adapter" in runs else runs
    if runs.empty:
        st.info(f"No stored run with an adapter in {store_path()}. Train one on the Live fine-tune page.")
        return None
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key=f"{key}_run")
    if run_id is None:
        return None
    path = adapter_dir(runs.set_index("run_id").loc[run_id, "path"])
    return choice_for(path, str(run_id))


# ------------------------------------------------------------------------------------------------------------
# downloads


def download_frame(frame, name: str, key: str, label: str = "CSV") -> None:
    st.download_button(
        f":material/download: {label}", data=lambda: frame.to_csv(index=False).encode(), file_name=f"{name}.csv",
        mime="text/csv", key=f"dl_csv_{key}", on_click="ignore",
    )  # fmt: skip


def download_figure(fig, name: str, key: str) -> None:
    """HTML (standalone, offline) and PNG (rendered through kaleido + Chromium on click) buttons."""
    from asymviz.figures import figure_html, figure_png

    row = st.container(horizontal=True)
    with row:
        st.download_button(
            ":material/download: HTML", data=lambda: figure_html(fig).encode(), file_name=f"{name}.html",
            mime="text/html", key=f"dl_html_{key}", on_click="ignore",
        )  # fmt: skip
        reason = png_unavailable()
        st.download_button(
            ":material/download: PNG", data=lambda: figure_png(fig), file_name=f"{name}.png",
            mime="image/png", key=f"dl_png_{key}", on_click="ignore", disabled=reason is not None,
            help=reason or "Rendered on the server by kaleido with a local Chromium (takes a few seconds).",
        )  # fmt: skip


@st.cache_resource(show_spinner=False)
def png_unavailable() -> str | None:
    """Why PNG export cannot work here (kaleido or a Chrome/Chromium missing), or None when it can."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        return "PNG export needs the kaleido package (pip install kaleido); use HTML instead."
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
    if not (os.environ.get("BROWSER_PATH") or any(shutil.which(n) for n in names)):
        return "PNG export needs a Chrome or Chromium on the server (e.g. apt-get install chromium); use HTML instead."
    return None


def figure(fig, name: str, key: str, what: str) -> None:
    """A figure, its caption and its download buttons."""
    st.plotly_chart(fig, key=f"fig_{key}", theme=None, config={"displaylogo": False})
    caption(what)
    download_figure(fig, name, key)
