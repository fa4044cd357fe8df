"""Cached asymviz calls shared by the pages: st.cache_data around calls that return frames.

Arguments are plain values (paths as str plus a file signature) so the cache keys are cheap and a changed
file gives a new entry. Heavy modules are imported inside the functions, never at module level.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

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
    from asymviz.report import render_report

    adapter = load_adapter_cached(path, signature)
    other = load_adapter_cached(*against) if against else None
    return render_report(adapter, against=other).encode("utf-8")


# ------------------------------------------------------------------------------------------------------------
# the run store (asymviz.runs)

TEST_METRICS = ("test_accuracy", "test_macro_f1", "test_loss", "test_perplexity")
LOWER_IS_BETTER = ("test_loss", "test_perplexity")
_METRIC_LABELS = {
    "test_accuracy": "test accuracy (fraction correct)",
    "test_macro_f1": "test macro-F1 (0–1)",
    "test_loss": "test loss (nats)",
    "test_perplexity": "test perplexity",
}


def metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, metric.replace("_", " "))


def short(name) -> str:
    """A model or task as people read it: a local path by its last part, a hub id or task name as is."""
    text = str(name)
    if text.startswith(("/", "./", "../", "~")) or "\\" in text:
        from pathlib import Path

        return Path(text.rstrip("/")).name or text
    return text


@st.cache_data(ttl=3, show_spinner=False)
def all_runs(store: str):
    """runs_now, cached for 3 s: finished live runs show up on the other pages within seconds."""
    return runs_now(store)


def runs_now(store: str):
    """Every run of the store: asymviz.runs.list_runs (LIST_COLUMNS) plus has_adapter, has_init and label."""

    from asymviz.runs import has_adapter_files, init_dir, list_runs

    frame = list_runs(store)
    frame["has_adapter"] = frame["has_weights"]  # RunStore.list() checked adapter/adapter_config.json
    frame["has_init"] = [has_adapter_files(init_dir(p)) for p in frame["path"]]
    frame["label"] = [
        f"{short(task)} · {short(model)} · {mode} · r={rank} · seed {seed} ({status})"
        for task, model, mode, rank, seed, status in zip(
            frame["task"],
            frame["model"],
            frame["mode"],
            frame["rank"],
            frame["seed"],
            frame["status"],
            strict=True,
        )
    ]
    return frame


def finished_runs(store: str):
    """The completed runs the pages count (asymviz.results.counted_runs): those of the sidebar's experiment
    (group folder) when the store has groups, without lr-grid runs or runs superseded by a later lr choice,
    and for B only with several frozen-A inits, the sidebar's init (default orthogonal)."""
    from app.components import ALL_GROUPS
    from asymviz.results import b_only_inits, counted_runs

    group = st.session_state.get("group")
    group = group if group and group != ALL_GROUPS else None
    runs = counted_runs(all_runs(store), group=group, a_init=None)
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


def summary_by_mode(runs, metric: str, by=("task", "mode")):
    """asymviz.results.summary_table (mean ± s.e. of `metric` over seeds per group, canonical mode order, the
    group's median trainable LoRA and head parameters) plus trainable_params (= trainable_lora, what the bar
    chart's hover shows): columns *by, mean, se, n, trainable_lora, trainable_head, trainable_params."""
    from asymviz.results import summary_table

    summary = summary_table(runs, metric, by=by)
    summary["trainable_params"] = summary["trainable_lora"]
    return summary


def mode_table(summary):
    """The summary as people read it: one row per (task, mode) with 'mean ± s.e.' text."""
    from asymviz.figures import format_mean_se, mode_label

    out = summary.copy()
    out["mode"] = out["mode"].map(mode_label)
    out["mean ± s.e."] = [format_mean_se(m, s) for m, s in zip(out["mean"], out["se"], strict=True)]
    out["seeds"] = out["n"].astype(int)
    out["LoRA params"] = out["trainable_lora"].map(_count)
    out["head params"] = out["trainable_head"].map(_count)
    drop = ("mean", "se", "n", "trainable_params", "trainable_lora", "trainable_head")
    return out[[c for c in out.columns if c not in drop]]


def _count(v) -> str:
    return "–" if v is None or v != v else f"{int(v):,}"


def signatures(paths) -> tuple[str, ...]:
    from app.components import choice_for

    return tuple(choice_for(p).signature for p in paths)


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


@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def run_metrics(paths: tuple[str, ...]):
    """metrics.csv of several runs stacked: columns run_id, step, split, metric, value."""
    return _metrics_of(paths)


def run_metrics_live(paths: tuple[str, ...]):
    """run_metrics without a cache: the live page polls growing files."""
    return _metrics_of(paths)


def curve_label(split: str, metric: str) -> str:
    units = {"loss": "(nats)", "accuracy": "(fraction correct)", "macro_f1": "(0–1)", "perplexity": "",
             "examples_per_s": "(examples/s)", "tokens_per_s": "(tokens/s)"}  # fmt: skip
    return f"{split} {metric.replace('_', ' ')} {units.get(metric, '')}".strip()


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


def comparison_table(runs, metric: str, q: float, sigma: float):
    """One row per (task, mode, rank): metric mean ± s.e., seeds, trainable parameters (LoRA and head), wall
    time, peak memory and the generalisation bound for the LoRA parameters and the training-set size."""
    import pandas as pd

    from asymviz.bound import bound_value
    from asymviz.figures import MODES, format_mean_se, mode_label

    rows = []
    for (task, mode, rank), g in runs.groupby(["task", "mode", "rank"], sort=True):
        vals = g[metric].dropna()
        se = vals.std() / len(vals) ** 0.5 if len(vals) > 1 else float("nan")
        lora, n_train = g["trainable_lora"].median(), g["n_train"].median()
        ok = lora == lora and n_train == n_train and n_train > 0
        rows.append({
            "task": short(task), "mode": mode_label(mode), "rank": int(rank),
            metric.removeprefix("test_").replace("_", " "): format_mean_se(vals.mean(), se) if len(vals) else "–",
            "seeds": len(vals),
            "LoRA params": _count(lora),
            "head params": _count(g["trainable_head"].median()),
            "wall (s)": round(float(g["wall_s"].mean()), 1) if g["wall_s"].notna().any() else None,
            "peak mem (MiB)": round(float(g["peak_memory_mb"].mean())) if g["peak_memory_mb"].notna().any() else None,
            "bound": round(bound_value(int(lora), int(n_train), q, sigma), 4) if ok else None,
            "n train": int(n_train) if n_train == n_train else None,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if not table.empty:
        order = {mode_label(m): i for i, m in enumerate(MODES)}
        table = table.sort_values(
            ["task", "rank", "mode"], key=lambda c: c.map(order) if c.name == "mode" else c
        )
    return table


# ------------------------------------------------------------------------------------------------------------
# live fine-tunes (asymviz.preset / TrainConfig; started through asymviz.jobs as `asymviz sweep` command lines)


def safe_name(text: str) -> str:
    """A file-name-safe short form of a model id, path or task."""
    import re

    base = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:40] or "x"


@st.cache_resource(show_spinner=False)
def demo_preset():
    """The CPU demo preset's configs, one per mode (asymviz.preset("demo"))."""
    from asymviz import preset

    return {c.mode: c for c in preset("demo")}


@st.cache_resource(show_spinner=False)
def task_names() -> tuple[str, ...]:
    from asymviz.base.tasks import TASKS

    return tuple(TASKS)


def live_configs(model, task, modes, rank, steps, seed, device, use_demo: bool):
    """The TrainConfig of each chosen mode: the demo preset's (its per-mode learning rates, top layers and
    frozen-prefix cache) or the engine's defaults, with the user's model, task, rank, steps, seed and device.
    Validation runs at a third and two thirds of the steps and at the end, so the metric curve moves live."""
    from asymviz import TrainConfig, preset

    changes = dict(model=model, task=task, rank=int(rank), steps=int(steps), seed=int(seed), device=device,
                   eval_every=max(1, int(steps) // 3))  # fmt: skip
    if use_demo:
        by_mode = {c.mode: c for c in preset("demo", **changes)}
        return [by_mode[m] for m in modes]
    return [TrainConfig(mode=m, **changes) for m in modes]


# ------------------------------------------------------------------------------------------------------------
# alignment and diagnostics (asymviz.probes.alignment, asymviz.probes.diagnostics): background jobs in the server process
#
# Aligning an adapter loads its base model and runs a data sample through it (MiniLM: about a minute on a
# 2-core CPU), too long for a script run that any widget change interrupts. Each computation runs once in a
# server thread, one at a time, shared by every session that asks for the same thing (same file version and
# settings); pages poll it with a fragment and show its progress. Finished jobs are the cache.

MAX_FINISHED_JOBS = 64


@dataclass
class AnalysisJob:
    """One alignment or diagnostics computation in a server thread."""

    key: tuple
    label: str  # what it computes, for the progress line
    stage: str = "queued"  # queued | loading | data | subspaces | diagnostics | done | failed
    done: int = 0  # steps of the current stage done, of `total`
    total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: object = None
    error: BaseException | None = None
    notes: list = field(default_factory=list)  # the library's warnings while it ran (e.g. a random head)
    info: dict = field(default_factory=dict)  # facts about the computation (e.g. examples used)

    @property
    def running(self) -> bool:
        return self.finished is None

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def fraction(self) -> float:
        """Rough share done: loading 0-10 %, data 10-85 %, subspaces/diagnostics 85-100 %."""
        if not self.running:
            return 1.0
        part = self.done / self.total if self.total else 0.0
        return {"queued": 0.0, "loading": 0.05, "data": 0.10 + 0.75 * part, "subspaces": 0.85 + 0.15 * part,
                "diagnostics": 0.10 + 0.90 * part}.get(self.stage, 0.0)  # fmt: skip

    def status(self) -> str:
        what = {"queued": "waiting for another computation to finish",
                "loading": "loading the base model, the adapter and the data",
                "data": f"running the sample through the model: batch {self.done} of {self.total}",
                "subspaces": f"comparing subspaces: module {self.done} of {self.total}",
                "diagnostics": f"diagnosing: module {self.done} of {self.total}",
                "done": "done", "failed": "failed"}.get(self.stage, self.stage)  # fmt: skip
        return f"{self.label}: {what} · {self.elapsed():.0f} s"

    def value(self):
        """The result; raises the job's error (show it with components.guard)."""
        if self.error is not None:
            raise self.error
        return self.result


@st.cache_resource(show_spinner=False)
def _analysis_jobs() -> dict:
    """The server's analysis jobs by key, a lock for the registry and a gate that lets one job compute."""
    return {"jobs": {}, "lock": threading.Lock(), "gate": threading.Lock()}


def _job(key: tuple, label: str, work, start: bool) -> AnalysisJob | None:
    """The job for `key` (started if `start` and it is new or failed before), or None."""
    reg = _analysis_jobs()
    with reg["lock"]:
        job = reg["jobs"].get(key)
        if not start or (job is not None and job.error is None):
            return job
        job = reg["jobs"][key] = AnalysisJob(key, label)
        finished = [k for k, j in reg["jobs"].items() if not j.running]
        for old in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del reg["jobs"][old]

    def target():
        import logging

        class Notes(logging.Handler):
            def emit(self, record):
                if record.levelno >= logging.WARNING and threading.current_thread() is worker:
                    job.notes.append(record.getMessage())

        handler = Notes()
        with reg["gate"]:
            job.started, job.stage = time.time(), "loading"
            logging.getLogger("asymviz").addHandler(handler)
            try:
                job.result = work(job)
                job.stage = "done"
            except BaseException as exc:  # noqa: BLE001  kept for the page to show (guard)
                job.error, job.stage = exc, "failed"
                if not isinstance(exc, Exception):
                    raise
            finally:
                job.finished = time.time()
                logging.getLogger("asymviz").removeHandler(handler)

    worker = threading.Thread(target=target, name=f"asymviz-{label}", daemon=True)
    worker.start()
    return job


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def alignment_job(path: str, signature: str, base: str, task: str, samples: int, k: int, labels: bool = True,
                  start: bool = False) -> AnalysisJob | None:  # fmt: skip
    """asymviz.probes.alignment.align on a run folder (adds its init) or a PEFT adapter folder, in the background.

    signature : the adapter file's version (components.choice_for), part of the key
    """
    key = ("align", path, signature, base, task, int(samples), int(k), bool(labels))

    def work(job):
        from asymviz.probes.alignment import align, load_sample

        _quiet_transformers()

        def progress(stage, done, total):
            job.stage, job.done, job.total = stage, done, total

        job.info["examples"] = len(load_sample(task, int(samples)))  # the same seeded draw as align's
        return align(path, base=base, task=task, samples=int(samples), k=int(k), labels=bool(labels),
                     progress=progress)  # fmt: skip

    return _job(key, f"alignment of {_name_of(path)}", work, start)


def diagnostics_job(path: str, signature: str, base: str, k: int = 10, eps: float = 0.5,
                    start: bool = False) -> AnalysisJob | None:  # fmt: skip
    """asymviz.probes.diagnostics.diagnose of an adapter against its base model's weights, in the background."""
    key = ("diagnose", path, signature, base, int(k), float(eps))

    def work(job):
        from asymviz.adapters import load_adapter
        from asymviz.probes.base_weights import load_base_model
        from asymviz.probes.diagnostics import diagnose

        _quiet_transformers()
        adapter = load_adapter(path)
        model = load_base_model(base, head="base")
        job.stage, job.done, job.total = "diagnostics", 0, len(adapter)

        def progress(done):
            job.done = done

        return diagnose(adapter, model, k=int(k), eps=float(eps), progress=progress)

    return _job(key, f"diagnostics of {_name_of(path)}", work, start)


def _name_of(path: str) -> str:
    """A run's or adapter's short name for progress lines: the run folder's name for a run's adapter/."""
    from pathlib import Path

    from asymviz.runs import run_folder_of

    run = run_folder_of(path)
    return run.name if run is not None else Path(path).name


def run_folder_of(path: str | None):
    """The run folder when `path` is a stored run's adapter/ (run.json next to it), else None."""
    from asymviz import runs

    if not path or runs.is_run_folder(path):
        return None
    return runs.run_folder_of(path)


@st.cache_data(ttl=10, show_spinner=False)
def run_settings(run_folder: str) -> dict:
    """model, task, max_length of a run (asymviz.probes.alignment.run_settings)."""
    from asymviz.probes.alignment import run_settings as settings

    return settings(run_folder)
