"""st.cache_* wrappers over asymviz calls, shared by the pages; nothing else (no widgets, no app imports).

Arguments are plain values (paths as str plus a file signature) so the cache keys are cheap and a changed file
gives a new entry: st.cache_data for frames, st.cache_resource for loaded adapters and built figures (shared,
read-only: pages never mutate them). Heavy modules are imported inside the functions, never at module level.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import streamlit as st

from asymviz.runs import MECHANISM_FILE  # noqa: F401  (a group's mechanism table; app/replication.py names it)
from asymviz.runs.layout import RUN_FILE

# ------------------------------------------------------------------------------------------------------------
# theory


@st.cache_data(max_entries=64, show_spinner=False)
def theory(d_in, d_out, r, spectrum, k, decay, delta_rank, draws, seed):
    """(draws, expected, comparison, by_rank, lam) for one TheoryConfig."""
    from asymviz import theory as th

    cfg = th.TheoryConfig(d_in=d_in, d_out=d_out, r=r, spectrum=spectrum, k=k, decay=decay,
                          delta_rank=delta_rank, draws=draws, seed=seed)  # fmt: skip
    draws_frame = th.simulate_excess_loss(cfg)
    expected = th.expected_excess_loss(cfg)
    return (
        draws_frame,
        expected,
        th.compare_with_closed_form(draws_frame, expected),
        th.expected_by_rank(cfg),
        th.input_spectrum(cfg),
    )


@st.cache_resource(max_entries=32, show_spinner=False)
def theory_figures(d_in, d_out, r, spectrum, k, decay, delta_rank, draws, seed):
    """The Theory page's three simulation figures, built once per setting (building a Plotly figure costs
    ~0.1 s; shared read-only objects, never mutated by the pages)."""
    from asymviz import figures as F

    draws_frame, expected, _, by_rank, lam = theory(
        d_in, d_out, r, spectrum, k, decay, delta_rank, draws, seed
    )
    return (
        F.excess_loss_figure(draws_frame, expected),
        F.rank_curve_figure(by_rank, r_marker=r),
        F.input_spectrum_figure(lam),
    )


@st.cache_data(max_entries=64, show_spinner=False)
def bound(shapes: tuple[tuple[int, int, int], ...], n: int, q: float, sigma: float):
    from asymviz.bound import generalization_bound

    return generalization_bound(list(shapes), n=n, q=q, sigma=sigma)


@st.cache_resource(max_entries=32, show_spinner=False)
def bound_figure(
    shapes: tuple[tuple[int, int, int], ...], n: int, q: float, sigma: float, title: str | None = None
):
    from asymviz import figures as F

    frame = bound(shapes, n, q, sigma)
    return F.bound_figure(frame, title=title) if title else F.bound_figure(frame)


# ------------------------------------------------------------------------------------------------------------
# one adapter


@st.cache_resource(max_entries=16, show_spinner=False)
def load_adapter(path: str, signature: str):
    """One LoraAdapter per file version; raises AdapterError (shown by components.guard)."""
    from asymviz.adapters import load_adapter as load

    return load(path)


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_summary(path: str, signature: str):
    """(module summary frame, problems list, config dict or None, extras dict)."""
    adapter = load_adapter(path, signature)
    config = dict(adapter.config.raw) if adapter.config is not None else None
    return adapter.summary(), list(adapter.problems), config, dict(adapter.extras)


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_card(path: str, signature: str) -> dict:
    """asymviz.card.adapter_card(path).to_dict(): {"adapter": summary, "modules": rows}. A run's adapter/ folder
    is measured against the run's init/ (exact drift of A); other adapters against the null of their init."""
    from asymviz.card import adapter_card as card

    return card(path).to_dict()


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_format(path: str, signature: str) -> str | None:
    """The file format the loader detected (LoraAdapter.format), or None where the loader does not say."""
    return getattr(load_adapter(path, signature), "format", None)


@st.cache_data(max_entries=32, show_spinner=False)
def spectrum(path: str, signature: str):
    """(singular_spectrum frame, spectrum_summary frame, problems) for every module and factor."""
    from asymviz.spectra import singular_spectrum, spectrum_summary

    adapter = load_adapter(path, signature)
    return singular_spectrum(adapter), spectrum_summary(adapter), list(adapter.problems)


@st.cache_resource(max_entries=32, show_spinner=False)
def spectrum_figure(path: str, signature: str, y: str, log_y: bool, kinds: tuple[str, ...], title: str):
    from asymviz import figures as F

    frame = spectrum(path, signature)[0]
    return F.spectrum_figure(frame[frame["kind"].isin(kinds)], y=y, log_y=log_y, title=title)


@st.cache_resource(max_entries=64, show_spinner=False)
def heatmap_figure(path: str, signature: str, metric: str, which: str, label: str):
    from asymviz import figures as F

    return F.layer_module_heatmap(spectrum(path, signature)[1], metric, which, label)


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_bound(path: str, signature: str, n: int, q: float, sigma: float):
    from asymviz.bound import generalization_bound

    return generalization_bound(load_adapter(path, signature), n=n, q=q, sigma=sigma)


@st.cache_data(max_entries=32, show_spinner=False)
def similarity(
    paths: tuple[str, ...], signatures: tuple[str, ...], names: tuple[str, ...], pairs: str = "upper"
):
    """pairwise_similarity of A, B and ΔW between adapters (modules matched by name)."""
    from asymviz.similarity import pairwise_similarity

    adapters = [load_adapter(p, s) for p, s in zip(paths, signatures, strict=True)]
    return pairwise_similarity(adapters, names=list(names), pairs=pairs)


@st.cache_data(max_entries=16, show_spinner=False)
def collection(paths: tuple[str, ...], signatures: tuple[str, ...], names: tuple[str, ...]):
    """asymviz.collection.analyze_collection of several adapters (modules matched by name): the frames
    (similarity, mean, shared, clusters)."""
    from asymviz.collection import analyze_collection

    adapters = [load_adapter(p, s) for p, s in zip(paths, signatures, strict=True)]
    result = analyze_collection(adapters, names=list(names))
    return result.similarity, result.mean, result.shared, result.clusters


@st.cache_data(max_entries=16, show_spinner=False)
def report_html(
    path: str, signature: str, against: tuple[str, str] | None = None, show_paths: bool = True
) -> bytes:
    """The standalone HTML report of asymviz.report for one adapter (optionally against a second)."""
    from asymviz.report import render_report

    adapter = load_adapter(path, signature)
    other = load_adapter(*against) if against else None
    return render_report(adapter, against=other, show_paths=show_paths).encode("utf-8")


# ------------------------------------------------------------------------------------------------------------
# the run store (asymviz.runs)


STAMP_S = 1.0  # a store's stamp is taken again after this many seconds (one scan per page run, not per call)
_stamps: dict[str, tuple[float, str]] = {}
_stamps_lock = threading.Lock()


def file_stamp(info: os.stat_result) -> tuple[int, int, int, int]:
    """(size, mtime, ctime, inode) of a stat result: what tells a file's version apart. mtime and size alone miss
    a rewrite of the same size whose mtime was set back (touch -d, cp -p, tar, rsync -t) or fell in the same
    clock tick; the status-change time (ctime) moves on every write and utime and cannot be set back."""
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


def store_stamp(store: str) -> str:
    """A signature of what the pages read from a run store: the name and file_stamp of each run
    folder's run.json and the folder's own modification time (a new adapter/ or init/ sub-folder), in the store
    and in its group folders (the layout asymviz.runs.RunStore reads). About 5 ms for the 1,150 shipped runs,
    against 0.1-0.4 s to read them; taken at most once per STAMP_S per store. A run that starts, finishes,
    appears or is deleted changes it, so the cached frames below are read again then, and only then."""
    now = time.monotonic()
    with _stamps_lock:
        taken = _stamps.get(store)
        if taken is not None and now - taken[0] < STAMP_S:
            return taken[1]
    digest = hashlib.blake2b(digest_size=16)
    root = os.path.expanduser(store)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return "no store"
    folders = [(root, entries)]
    for entry in entries:  # a sub-folder without run.json is a group folder (RunStore._groups)
        if (
            not entry.name.startswith(".")
            and entry.is_dir()
            and not os.path.exists(os.path.join(entry.path, RUN_FILE))
        ):
            try:
                folders.append((entry.path, sorted(os.scandir(entry.path), key=lambda e: e.name)))
            except OSError:
                continue
    for folder, children in folders:
        for entry in children:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                info = os.stat(os.path.join(entry.path, RUN_FILE))
                digest.update(
                    f"{folder}/{entry.name}|{file_stamp(info)}|{entry.stat().st_mtime_ns}\n".encode()
                )
            except OSError:
                continue
    stamp = digest.hexdigest()
    with _stamps_lock:
        _stamps[store] = (now, stamp)
    return stamp


def all_runs(store: str):
    """asymviz.runs.list_runs plus has_adapter (adapter/adapter_config.json exists) and has_init
    (init/adapter_config.json exists), read again when the store changes (store_stamp), and every 3 s while
    a run of it is running (whether its process is alive changes no file)."""
    stamp = store_stamp(store)
    frame = _all_runs(store, stamp, 0)
    if (frame["status"] == "running").any():
        frame = _all_runs(store, stamp, int(time.time() // 3))
    return frame


@st.cache_data(max_entries=8, show_spinner=False)
def _all_runs(store: str, stamp: str, tick: int):
    from asymviz.runs import list_runs

    return with_files(list_runs(store))


def with_files(frame):
    """has_adapter and has_init columns of a list_runs frame (what the pickers offer)."""
    from asymviz.runs import has_adapter_files, init_dir

    frame["has_adapter"] = frame["has_weights"]  # RunStore.list() checked adapter/adapter_config.json
    frame["has_init"] = [has_adapter_files(init_dir(p)) for p in frame["path"]]
    return frame


def _metrics_of(paths):
    from pathlib import Path

    import pandas as pd

    from asymviz.runs import RunError, RunRecord

    parts = []
    for path in paths:
        try:
            parts.append(RunRecord.load(path).metrics().assign(run_id=Path(path).name))
        except RunError:
            continue  # not started yet
    if not parts:
        return pd.DataFrame(columns=["run_id", "step", "split", "metric", "value"])
    return pd.concat(parts, ignore_index=True)[["run_id", "step", "split", "metric", "value"]]


@st.cache_data(ttl=10, show_spinner=False)
def frozen_norms(run_folder: str) -> dict | None:
    """run.json's frozen_norms (row / column norms of the frozen factor at init, from the training engine), or
    None (mode ab or head_only, or a run written before the engine recorded them)."""
    from asymviz.runs import RunRecord

    return RunRecord.load(run_folder).data.get("frozen_norms")


def linear_probe(store: str, group: str | None):
    """The experiment's linear-probe baselines (asymviz.probes.linear_probe's COLUMNS), read from
    <store>/<group>/linear_probe.csv (or <store>/linear_probe.csv for a flat store); None when there is none;
    read again when the file changes."""
    path = os.path.join(os.path.expanduser(store), group or "", "linear_probe.csv")
    try:
        info = os.stat(path)
    except OSError:
        return None
    return _probe_csv(path, file_stamp(info))


@st.cache_data(max_entries=16, show_spinner=False)
def _probe_csv(path: str, stamp: tuple):
    import pandas as pd

    return pd.read_csv(path)


def run_metrics(paths: tuple[str, ...]):
    """metrics.csv of several runs stacked: columns run_id, step, split, metric, value. Kept until one of the
    files changes (its size or modification time; a few stat calls per rerun instead of reading them all)."""
    from asymviz.runs.layout import METRICS_FILE

    stamps = []
    for path in paths:
        try:
            info = os.stat(os.path.join(path, METRICS_FILE))
            stamps.append(file_stamp(info))
        except OSError:
            stamps.append(None)
    return _run_metrics(paths, tuple(stamps))


@st.cache_data(max_entries=64, show_spinner=False)
def _run_metrics(paths: tuple[str, ...], stamps: tuple):
    return _metrics_of(paths)


@st.cache_resource(max_entries=64, show_spinner=False)
def learning_curve_figure(frame, y_label: str, title: str, y_range: tuple[float, float] | None):
    """asymviz.figures.learning_curve_figure, kept per (frame, labels): a figure of tens of runs took
    0.1-0.3 s to build on every rerun (Plotly validates each trace), hashing its frame a few ms."""
    from asymviz import figures as F

    return F.learning_curve_figure(frame, y_label, title=title, y_range=y_range)


def run_metrics_live(paths: tuple[str, ...]):
    """run_metrics without a cache: the live page polls growing files."""
    return _metrics_of(paths)


@st.cache_data(max_entries=64, show_spinner=False)
def runs_drift(paths: tuple[str, ...]):
    """drift_from_init of each run's adapter/ against its init/ (stacked, with run_id)."""
    from pathlib import Path

    import pandas as pd

    from asymviz.drift import drift_from_init
    from asymviz.runs import RunRecord

    parts = []
    for path in paths:
        run = RunRecord.load(path)
        parts.append(drift_from_init(run.load_adapter(), run.load_init()).assign(run_id=Path(path).name))
    return pd.concat(parts, ignore_index=True)


@st.cache_resource(show_spinner=False)
def demo_preset():
    """The CPU demo preset's configs, one per mode (asymviz.preset("demo"))."""
    from asymviz import preset

    return {c.mode: c for c in preset("demo")}


@st.cache_resource(show_spinner=False)
def task_names() -> tuple[str, ...]:
    from asymviz.base.tasks import TASKS

    return tuple(TASKS)


@st.cache_data(ttl=10, show_spinner=False)
def run_settings(run_folder: str) -> dict:
    """model, task, max_length of a run (asymviz.probes.alignment.run_settings)."""
    from asymviz.probes.alignment import run_settings as settings

    return settings(run_folder)


# ------------------------------------------------------------------------------------------------------------
# the replication's experiments (issue 13): each analysis over the counted runs of its group folders


def group_runs(store: str, groups: tuple[str, ...]):
    """asymviz.results.counted_runs of each group folder of `groups`, stacked (a run of two groups counts in
    each: the head factorial reads exp 1's r = 8 runs as its full-head arm); read again when the store changes."""
    return _group_runs(store, groups, store_stamp(store))


@st.cache_data(max_entries=32, show_spinner=False)
def _group_runs(store: str, groups: tuple[str, ...], stamp: str):
    import pandas as pd

    from asymviz.results import counted_runs

    runs = all_runs(store)
    return pd.concat([counted_runs(runs, group=g) for g in groups], ignore_index=True)


def claims_by_group(store: str, groups: tuple[str, ...], metric: str | None):
    """(claim_table, claim_comparisons) of each group folder, computed apart (as `asymviz runs compare
    --group G` does) and stacked; the metric where the group has it, else results' default. Computed once
    per store content (store_stamp)."""
    return _claims_by_group(store, groups, metric, store_stamp(store))


@st.cache_data(max_entries=16, show_spinner="Comparing the modes of every experiment (paired bootstrap) …")
def _claims_by_group(store: str, groups: tuple[str, ...], metric: str | None, stamp: str):
    import pandas as pd

    from asymviz import results as R

    tables, comparisons = [], []
    for g in groups:
        runs = group_runs(store, (g,))
        if runs.empty:
            continue
        chosen = metric if metric in runs and runs[metric].notna().any() else None
        comp = R.claim_comparisons(runs, chosen)
        if len(comp):
            tables.append(R.claim_table(comp))
            comparisons.append(comp)
    if not tables:
        return pd.DataFrame(columns=list(R.CLAIM_COLUMNS)), pd.DataFrame()
    return pd.concat(tables, ignore_index=True), pd.concat(comparisons, ignore_index=True)


@st.cache_data(max_entries=32, show_spinner=False)
def claims(runs, metric: str | None):
    """(asymviz.results.claim_comparisons, claim_table of them) of a run frame (the Overview's model), once
    per frame and metric: the paired bootstraps and the table took ~0.25 s on every rerun."""
    from asymviz.results import claim_comparisons, claim_table

    comparisons = claim_comparisons(runs, metric)
    return comparisons, claim_table(comparisons)


def rank_sweep(store: str, group: str, metric: str | None):
    """(rank_sweep_table, rank_trend_table) of the d/r sweep's counted runs (asymviz.rank_sweep); d_in is read
    from any run of the store with the same model and targets that kept its adapter (a slimmed sweep ships
    none of its own). Computed once per store content (store_stamp)."""
    return _rank_sweep(store, group, metric, store_stamp(store))


@st.cache_data(max_entries=16, show_spinner="Comparing the modes at every rank …")
def _rank_sweep(store: str, group: str, metric: str | None, stamp: str):
    from asymviz.rank_sweep import rank_sweep_table, rank_trend_table

    runs, store_runs = group_runs(store, (group,)), all_runs(store)
    return rank_sweep_table(runs, metric, source=store_runs), rank_trend_table(
        runs, metric, source=store_runs
    )


def head_factorial(store: str, groups: tuple[str, ...], metric: str | None):
    """(head_factorial_table, head_interaction_table) of the counted runs of both arms (asymviz.head_factorial;
    exp 1's runs are the full-head arm, at its default rank 8). Computed once per store content."""
    return _head_factorial(store, groups, metric, store_stamp(store))


@st.cache_data(max_entries=16, show_spinner="Comparing the modes with either head …")
def _head_factorial(store: str, groups: tuple[str, ...], metric: str | None, stamp: str):
    from asymviz.head_factorial import head_factorial_table, head_interaction_table

    runs = group_runs(store, groups)
    return head_factorial_table(runs, metric), head_interaction_table(runs, metric)


def mechanism_file(store: str, group: str):
    """The mechanism table the experiment ships (<store>/<group>/mechanism.csv, asymviz.mechanism's columns,
    written by `asymviz mechanism`), or None when there is none; read again when the file changes."""
    from pathlib import Path

    path = Path(store) / group / MECHANISM_FILE
    if not path.is_file():
        return None
    return _mechanism_csv(str(path), file_stamp(path.stat())).copy()


@st.cache_data(max_entries=16, show_spinner=False)
def _mechanism_csv(path: str, stamp: tuple):
    from asymviz.mechanism import read_mechanism_file

    return read_mechanism_file(path)


@st.cache_data(show_spinner=False)
def mechanism(store: str, group: str):
    """asymviz.mechanism.mechanism_table of the group folder, measured now: loads the base model and runs the
    training split through it on the CPU (about a minute for MiniLM); cached for the server's life."""
    from pathlib import Path

    from asymviz.mechanism import mechanism_table

    return mechanism_table(Path(store) / group)


def similarity_2x2(store: str, group: str):
    """(similarity_2x2, similarity_contrasts) of the group's adapters (asymviz.similarity_design: design_runs,
    then similarity_pairs once for both); computed once per store content (the adapters are shipped, not
    grown)."""
    return _similarity_2x2(store, group, store_stamp(store))


@st.cache_data(
    max_entries=8,
    show_spinner="Comparing the adapters of the 2×2 design (each pair of runs, module by module) …",
)
def _similarity_2x2(store: str, group: str, stamp: str):
    from asymviz.similarity_design import design_runs, similarity_2x2, similarity_contrasts, similarity_pairs

    runs = all_runs(store)
    pairs = similarity_pairs(design_runs(runs[runs["group"] == group]))
    return similarity_2x2(pairs), similarity_contrasts(pairs)


# ------------------------------------------------------------------------------------------------------------
# figures


@st.cache_resource(max_entries=64, show_spinner=False)
def figure(builder: str, *args, **kwargs):
    """asymviz.figures.<builder>(*args, **kwargs), built once per arguments (frames are hashed by value): a
    Plotly figure took 0.05-0.35 s to build on every rerun (Plotly validates each trace, shape and
    annotation). Shared, read-only objects: pages never mutate them."""
    from asymviz import figures as F

    return getattr(F, builder)(*args, **kwargs)
