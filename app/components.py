"""Small shared widgets for the pages: error reporting, the adapter picker (uploads, stored runs, paths), figures
with their captions and downloads.

Nothing here imports torch, transformers or peft at module level: the app's first paint must stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path

import streamlit as st

from app import cached, state
from app.state import store_path
from app.uploads import AdapterChoice, choice_for, save_uploads
from asymviz.errors import first_line
from asymviz.runs import adapter_dir, run_folder_of

log = logging.getLogger("asymviz.app")


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
    line = first_line(exc)
    return without_paths(line) if state.public() else line


def without_paths(text: str) -> str:
    """`text` with every absolute path replaced by its last part (public mode shows no server paths)."""
    return re.sub(r"(?<![\w.])(?:~|/)[^\s:'\"(),]*", lambda m: Path(m.group(0).rstrip("/")).name or "…", text)


PUBLIC_MODELS = ("minilm", "smollm2")  # the base models a public server offers (no free text: no paths)


def base_model_input(where, label: str, value: str, key: str, help: str) -> str:
    """A base-model field: free text locally (a name, hub id or local folder); in public mode a choice among
    PUBLIC_MODELS and `value` (a stored run's own model), shown by its short name."""
    if not state.public():
        return where.text_input(label, value=value, key=key, help=help).strip()
    from app.tables import short

    options = list(dict.fromkeys([*([value] if value else []), *PUBLIC_MODELS]))
    return where.selectbox(label, options, key=key, format_func=short,
                           help="The model the adapter was trained on.")  # fmt: skip


def caption(text: str) -> None:
    """The short 'what am I looking at' line under a figure."""
    st.caption(f":material/info: {text}")


# ------------------------------------------------------------------------------------------------------------
# adapters: pick one, load it once per session (cache), compute frames once per adapter (cache)


def max_upload_mb() -> int:
    """The largest upload: server.maxUploadSize, and in public mode at most Limits.upload_mb."""
    limit = int(st.get_option("server.maxUploadSize"))
    return min(limit, state.limits().upload_mb) if state.public() else limit


SOURCES = ("Upload a .zip", "Upload the PEFT files", "A stored run", "A local path")


def sources() -> tuple[str, ...]:
    """The ways to choose an adapter: no local path in public mode."""
    return SOURCES[:3] if state.public() else SOURCES


def upload_allowed(files) -> bool:
    """Public mode: count this session's distinct uploads and refuse (with a message) past Limits.uploads."""
    if not state.public():
        return True
    seen = st.session_state.setdefault("n_uploads", set())
    ids = "-".join(str(getattr(f, "file_id", f.name)) for f in files)
    cap = state.limits().uploads
    if ids not in seen and len(seen) >= cap:
        st.error(f"This session has used its {cap} uploads. Reload the page for a new session.")
        return False
    seen.add(ids)
    return True


def adapter_picker(
    key: str, title: str = "Adapter", runs=None, default_source: int = 0
) -> AdapterChoice | None:
    """Let the user choose an adapter four ways; returns the choice, or None (with a hint shown) until one is made.

    runs : the run store's frame (asymviz.runs list) for the "A stored run" option, or None to read the store
    """
    options = sources()
    source = st.radio(title, options, index=min(default_source, len(options) - 1), key=f"{key}_source",
                      horizontal=True)  # fmt: skip
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
        if not upload_allowed([up]):
            return None
        folder = save_uploads([up], key, state.upload_folder())
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
        if not upload_allowed(ups):
            return None
        folder = save_uploads([*weights, *configs], key, state.upload_folder())
        path = folder / Path(weights[0].name).name
        return AdapterChoice(str(path), Path(weights[0].name).stem, folder.name)
    if source == SOURCES[2]:
        return stored_run_adapter(key, runs)
    if state.public():  # never reached: the option is not offered
        return None
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
    from app.tables import with_labels

    runs = with_labels(cached.all_runs(str(store_path()))) if runs is None else runs
    runs = runs[runs["has_adapter"]] if "has_adapter" in runs else runs
    if runs.empty:
        st.info(
            f"No stored run with an adapter in {state.where(store_path())}. Train one on the Live fine-tune page."
        )
        return None
    labels = dict(zip(runs["run_id"], runs["label"], strict=True))
    run_id = st.selectbox("Run", list(labels), format_func=labels.get, key=f"{key}_run")
    if run_id is None:
        return None
    path = adapter_dir(runs.set_index("run_id").loc[run_id, "path"])
    return choice_for(path, str(run_id))


@contextlib.contextmanager
def details(label: str, key: str):
    """An expander whose body runs only while it is open: yields whether it is (session key `key`).

        with details("The numbers", "rep_mech_open") as shown:
            if shown:
                st.dataframe(table)

    A plain st.expander runs its body and the browser draws it even when closed (a table inside cost ~0.05-0.1
    s per page switch); this one reruns the page when it is opened or closed (on_change="rerun")."""
    box = st.expander(label, key=key, on_change="rerun")
    with box:
        yield bool(box.open)


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
