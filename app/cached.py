"""st.cache_* wrappers over asymviz calls, shared by the pages; nothing else (no widgets, no app imports).

Arguments are plain values (paths as str plus a file signature) so the cache keys are cheap and a changed file
gives a new entry: st.cache_data for frames, st.cache_resource for loaded adapters and built figures (shared,
read-only: pages never mutate them). Heavy modules are imported inside the functions, never at module level.
"""

from __future__ import annotations

import os

import streamlit as st

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


@st.cache_data(ttl=3, show_spinner=False)
def all_runs(store: str):
    """asymviz.runs.list_runs, cached for 3 s (finished live runs show up on the other pages within seconds),
    plus has_adapter (adapter/adapter_config.json exists) and has_init (init/adapter_config.json exists)."""
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


@st.cache_data(ttl=60, show_spinner=False)
def linear_probe(store: str, group: str | None):
    """The experiment's linear-probe baselines (asymviz.probes.linear_probe's COLUMNS), read from
    <store>/<group>/linear_probe.csv (or <store>/linear_probe.csv for a flat store); None when there is none."""
    from pathlib import Path

    import pandas as pd

    path = Path(store) / (group or "") / "linear_probe.csv"
    return pd.read_csv(path) if path.is_file() else None


def run_metrics(paths: tuple[str, ...]):
    """metrics.csv of several runs stacked: columns run_id, step, split, metric, value. Kept until one of the
    files changes (its size or modification time; a few stat calls per rerun instead of reading them all)."""
    from asymviz.runs.layout import METRICS_FILE

    stamps = []
    for path in paths:
        try:
            info = os.stat(os.path.join(path, METRICS_FILE))
            stamps.append((info.st_size, info.st_mtime_ns))
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
