"""Cached asymviz calls shared by the pages: st.cache_data around calls that return frames.

Arguments are plain values (paths as str plus a file signature) so the cache keys are cheap and a changed
file gives a new entry. Heavy modules are imported inside the functions, never at module level.
"""

from __future__ import annotations

import streamlit as st

from app.components import load_adapter_cached

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


@st.cache_data(max_entries=32, show_spinner=False)
def adapter_summary(path: str, signature: str):
    """(module summary frame, problems list, config dict or None, extras dict)."""
    adapter = load_adapter_cached(path, signature)
    config = dict(adapter.config.raw) if adapter.config is not None else None
    return adapter.summary(), list(adapter.problems), config, dict(adapter.extras)


@st.cache_data(max_entries=32, show_spinner=False)
def spectrum(path: str, signature: str):
    """(singular_spectrum frame, spectrum_summary frame, problems) for every module and factor."""
    from asymviz.spectra import singular_spectrum, spectrum_summary

    adapter = load_adapter_cached(path, signature)
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

    return generalization_bound(load_adapter_cached(path, signature), n=n, q=q, sigma=sigma)


@st.cache_data(max_entries=32, show_spinner=False)
def similarity(
    paths: tuple[str, ...], signatures: tuple[str, ...], names: tuple[str, ...], pairs: str = "upper"
):
    """pairwise_similarity of A, B and ΔW between adapters (modules matched by name)."""
    from asymviz.similarity import pairwise_similarity

    adapters = [load_adapter_cached(p, s) for p, s in zip(paths, signatures, strict=True)]
    return pairwise_similarity(adapters, names=list(names), pairs=pairs)


@st.cache_data(max_entries=16, show_spinner=False)
def report_html(path: str, signature: str, against: tuple[str, str] | None = None) -> bytes:
    """The standalone HTML report of asymviz.report for one adapter (optionally against a second)."""
    import tempfile
    from pathlib import Path

    from asymviz.report import write_report

    adapter = load_adapter_cached(path, signature)
    other = load_adapter_cached(*against) if against else None
    with tempfile.TemporaryDirectory() as tmp:
        out = write_report(adapter, Path(tmp) / "report.html", against=other)
        return Path(out).read_bytes()


# ------------------------------------------------------------------------------------------------------------
# the run store

TEST_METRICS = ("test_accuracy", "test_macro_f1", "test_loss", "test_perplexity")
LOWER_IS_BETTER = ("test_loss", "test_perplexity")
_METRIC_LABELS = {
    "test_accuracy": "test accuracy (fraction correct)",
    "test_macro_f1": "test macro-F1 (0–1)",
    "test_loss": "test loss (nats per token)",
    "test_perplexity": "test perplexity",
}
RUN_COLUMNS = ["run_id", "model", "task", "mode", "rank", "seed", "status", "trainable_params", "wall_s",
               *TEST_METRICS]  # fmt: skip


def metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, metric.replace("_", " "))


@st.cache_data(ttl=3, show_spinner=False)
def all_runs(store: str):
    """Every run of the store (asymviz.runs), one row each, with at least RUN_COLUMNS."""
    import importlib
    import importlib.util

    import pandas as pd

    if importlib.util.find_spec("asymviz.runs") is None:  # the run store is not part of this checkout yet
        return pd.DataFrame(columns=RUN_COLUMNS)
    frame = importlib.import_module("asymviz.runs").list_runs(store)
    for col in RUN_COLUMNS:
        if col not in frame:
            frame[col] = None
    return frame


def finished_runs(store: str):
    runs = all_runs(store)
    return runs[runs["status"] == "completed"].reset_index(drop=True)


def summary_by_mode(runs, metric: str, by=("task", "mode")):
    """mean ± s.e. of `metric` over seeds per group, with the (median) trainable parameters of the group."""
    from asymviz.figures import mean_se

    summary = mean_se(runs, list(by), metric)
    params = runs.groupby(list(by), sort=False)["trainable_params"].median().rename("trainable_params")
    return summary.merge(params.reset_index(), on=list(by), how="left")


def mode_table(summary):
    """The summary as people read it: one row per (task, mode) with 'mean ± s.e.' text."""
    from asymviz.figures import format_mean_se, mode_label

    out = summary.copy()
    out["mode"] = out["mode"].map(mode_label)
    out["mean ± s.e."] = [format_mean_se(m, s) for m, s in zip(out["mean"], out["se"], strict=True)]
    out["seeds"] = out["n"].astype(int)
    out["trainable params"] = out["trainable_params"].map(
        lambda v: f"{int(v):,}" if v == v and v is not None else "–"
    )
    return out[[c for c in out.columns if c not in ("mean", "se", "n", "trainable_params")]]


def signatures(paths) -> tuple[str, ...]:
    from app.components import choice_for

    return tuple(choice_for(p).signature for p in paths)


@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def run_metrics(paths: tuple[str, ...]):
    """metrics.csv of several runs stacked: columns run_id, step, split, metric, value."""
    from pathlib import Path

    import pandas as pd

    parts = []
    for path in paths:
        try:
            frame = pd.read_csv(Path(path) / "metrics.csv")
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        parts.append(frame.assign(run_id=Path(path).name))
    if not parts:
        return pd.DataFrame(columns=["run_id", "step", "split", "metric", "value"])
    return pd.concat(parts, ignore_index=True)[["run_id", "step", "split", "metric", "value"]]


def curve_label(split: str, metric: str) -> str:
    units = {"loss": "(nats)", "accuracy": "(fraction correct)", "macro_f1": "(0–1)", "perplexity": "",
             "lr": "(learning rate)", "examples_per_s": "(examples/s)", "tokens_per_s": "(tokens/s)"}  # fmt: skip
    return f"{split} {metric.replace('_', ' ')} {units.get(metric, '')}".strip()


@st.cache_data(max_entries=64, show_spinner=False)
def runs_drift(paths: tuple[str, ...]):
    """drift_from_init of each run's adapter/ against its init/ (stacked, with run_id)."""
    from pathlib import Path

    import pandas as pd

    from asymviz.adapters import load_adapter
    from asymviz.drift import drift_from_init

    parts = []
    for path in paths:
        run = Path(path)
        init = run / "init" / "adapter_model.safetensors"
        parts.append(drift_from_init(load_adapter(run / "adapter"), load_adapter(init if init.exists() else run / "init"))
                     .assign(run_id=run.name))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def comparison_table(runs, metric: str, q: float, sigma: float):
    """One row per (task, mode, rank): metric mean ± s.e., seeds, trainable params, wall time, peak memory, bound."""
    import pandas as pd

    from asymviz.bound import bound_value
    from asymviz.figures import format_mean_se, mode_label

    rows = []
    for (task, mode, rank), g in runs.groupby(["task", "mode", "rank"], sort=True):
        vals = g[metric].dropna()
        se = vals.std() / len(vals) ** 0.5 if len(vals) > 1 else float("nan")
        params = g["trainable_params"].median()
        n_train = g["n_train"].median() if "n_train" in g else float("nan")
        bound = (
            bound_value(int(params), int(n_train), q, sigma)
            if params == params and n_train == n_train and n_train > 0
            else None
        )
        rows.append({
            "task": task, "mode": mode_label(mode), "rank": int(rank),
            metric_label(metric): format_mean_se(vals.mean(), se) if len(vals) else "–",
            "seeds": len(vals),
            "trainable params": f"{int(params):,}" if params == params else "–",
            "wall time (s)": round(float(g["wall_s"].mean()), 1) if g["wall_s"].notna().any() else None,
            "peak memory (MiB)": round(float(g["peak_memory_mb"].mean()), 0)
            if "peak_memory_mb" in g and g["peak_memory_mb"].notna().any() else None,
            "bound": bound,
        })  # fmt: skip
    order = {mode_label(m): i for i, m in enumerate(("ab", "b_only", "a_only"))}
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(
            ["task", "rank", "mode"], key=lambda c: c.map(order) if c.name == "mode" else c
        )
    return table


@st.cache_data(ttl=5, show_spinner=False)
def list_runs(store: str):
    """The store's runs, one row each, with columns run_id, label, path, has_adapter (+ what run.json holds)."""
    import json
    from pathlib import Path

    import pandas as pd

    rows = []
    root = Path(store)
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        info = {}
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            pass
        cfg = info.get("config", {}) if isinstance(info.get("config"), dict) else {}
        label = " · ".join(
            str(x)
            for x in (cfg.get("model"), cfg.get("task"), cfg.get("mode"), cfg.get("seed"))
            if x is not None
        )
        rows.append({"run_id": folder.name, "label": label or folder.name, "path": str(folder),
                     "has_adapter": (folder / "adapter").is_dir()})  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "label", "path", "has_adapter"])


# ------------------------------------------------------------------------------------------------------------
# live fine-tunes


def safe_name(text: str) -> str:
    """A file-name-safe short form of a model id, path or task."""
    import re

    base = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:40] or "x"


def run_metrics_live(paths: tuple[str, ...]):
    """run_metrics without a cache: the live page polls growing files."""
    return run_metrics.__wrapped__(paths)


class _Preset:
    def __init__(self, models, tasks, rank, steps, describe):
        self.models, self.tasks, self.rank, self.steps, self.describe = models, tasks, rank, steps, describe


@st.cache_resource(show_spinner=False)
def demo_preset() -> _Preset:
    """The widgets' defaults: the training engine's CPU demo preset."""
    models = ("minilm", "smollm2")
    tasks = ("fine_foods", "tweet_source", "word_polarity", "word_pos", "chatterbot_topic", "chatterbot_qa")
    return _Preset(models, tasks, 8, 150, "minilm on fine_foods, r=8, 150 steps")
