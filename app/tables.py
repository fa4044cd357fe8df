"""Runs and their numbers as the pages show them: metric and curve labels, short names, run labels, and the
summary tables (mean ± s.e. from asymviz.results, formatted here; rounding and labels belong to the app).

    table = tables.mode_table(tables.summary_by_mode(runs, "test_accuracy"))   # one row per (task, mode)
"""

from __future__ import annotations

import re
from pathlib import Path

TEST_METRICS = ("test_accuracy", "test_macro_f1", "test_loss", "test_perplexity")
LOWER_IS_BETTER = ("test_loss", "test_perplexity")
_METRIC_LABELS = {
    "test_accuracy": "test accuracy (fraction correct)",
    "test_macro_f1": "test macro-F1 (0–1)",
    "test_loss": "test loss (nats)",
    "test_perplexity": "test perplexity",
}
_CURVE_UNITS = {"loss": "(nats)", "accuracy": "(fraction correct)", "macro_f1": "(0–1)", "perplexity": "",
                "examples_per_s": "(examples/s)", "tokens_per_s": "(tokens/s)"}  # fmt: skip


def metric_label(metric: str) -> str:
    return _METRIC_LABELS.get(metric, metric.replace("_", " "))


def curve_label(split: str, metric: str) -> str:
    """'validation accuracy (fraction correct)': a metrics.csv curve's axis title."""
    return f"{split} {metric.replace('_', ' ')} {_CURVE_UNITS.get(metric, '')}".strip()


def short(name) -> str:
    """A model or task as people read it: a local path by its last part, a hub id ("org/name") or task name as
    is. A relative path with two slashes or more (".gpu_store/models/vit-fmnist", as a GPU store names its
    local models) is a path too: a hub id has one."""
    text = str(name)
    if text.startswith(("/", "./", "../", "~")) or "\\" in text or text.count("/") > 1:
        return Path(text.rstrip("/")).name or text
    return text


def safe_name(text: str) -> str:
    """A file-name-safe short form of a model id, path or task."""
    base = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)[:40] or "x"


def with_labels(runs):
    """The run frame with a `label` column: 'task · model · mode · r=8 · seed 0 (status)'."""
    return runs.assign(label=[
        f"{short(task)} · {short(model)} · {mode} · r={rank} · seed {seed} ({status})"
        for task, model, mode, rank, seed, status in zip(
            runs["task"], runs["model"], runs["mode"], runs["rank"], runs["seed"], runs["status"], strict=True
        )
    ])  # fmt: skip


def runs_now(store: str):
    """Every run of the store, read now (no cache: the live page polls growing runs), with files and labels."""
    from app.cached import with_files
    from asymviz.runs import list_runs

    return with_labels(with_files(list_runs(store)))


def summary_by_mode(runs, metric: str, by=("task", "mode")):
    """asymviz.results.summary_table (mean ± s.e. of `metric` over seeds per group, canonical mode order, the
    group's median trainable LoRA and head parameters) plus trainable_params (= trainable_lora, what the bar
    chart's hover shows): columns *by, mean, se, n, trainable_lora, trainable_head, trainable_params.

    Raises ValueError for runs of several group folders (experiments) without "group" in `by`: a mean over
    two experiments is a number nobody measured."""
    from asymviz.results import summary_table

    if "group" in runs and "group" not in by and runs["group"].nunique() > 1:
        raise ValueError(
            f"runs of {runs['group'].nunique()} experiments ({', '.join(sorted(runs['group'].dropna().unique()))})"
            " would be averaged together: show one experiment at a time"
        )
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
    out["LoRA params"] = out["trainable_lora"].map(count)
    out["head params"] = out["trainable_head"].map(count)
    drop = ("mean", "se", "n", "trainable_params", "trainable_lora", "trainable_head")
    return out[[c for c in out.columns if c not in drop]]


def count(v) -> str:
    """'12,288', or '–' for a missing count."""
    return "–" if v is None or v != v else f"{int(v):,}"


def comparison_table(runs, metric: str, q: float, sigma: float):
    """One row per (task, mode, rank) in canonical order: metric mean ± s.e. (asymviz.results.summary_table),
    seeds, trainable parameters (LoRA and head), wall time, peak memory and the generalisation bound for the
    LoRA parameters and the training-set size."""
    import pandas as pd

    from asymviz.bound import bound_value
    from asymviz.figures import format_mean_se, mode_label
    from asymviz.results import summary_table

    summary = summary_table(runs, metric, by=("task", "rank", "mode"))
    if summary.empty:
        return pd.DataFrame()
    extra = runs.groupby(["task", "rank", "mode"], dropna=False).agg(
        n_train=("n_train", "median"), wall_s=("wall_s", "mean"), peak=("peak_memory_mb", "mean")
    )
    summary = summary.join(extra, on=["task", "rank", "mode"])
    rows = []
    for row in summary.itertuples(index=False):
        lora, n_train = row.trainable_lora, row.n_train
        ok = lora == lora and n_train == n_train and n_train > 0
        rows.append({
            "task": short(row.task), "mode": mode_label(row.mode), "rank": int(row.rank),
            metric.removeprefix("test_").replace("_", " "): format_mean_se(row.mean, row.se),
            "seeds": int(row.n),
            "LoRA params": count(lora),
            "head params": count(row.trainable_head),
            "wall (s)": round(float(row.wall_s), 1) if row.wall_s == row.wall_s else None,
            "peak mem (MiB)": round(float(row.peak)) if row.peak == row.peak else None,
            "bound": round(bound_value(int(lora), int(n_train), q, sigma), 4) if ok and lora > 0 else None,
            "n train": int(n_train) if n_train == n_train else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


def probe_rows(probe, model, metric: str, rank_runs=None):
    """The linear-probe rows of one model and test metric as ``task, value`` (tasks by their short name, as the
    Overview shows them), or None when there is no probe file or no such metric. Rows of other models, and
    tasks without runs in `rank_runs`, are left out."""
    if probe is None or metric not in probe.columns:
        return None
    rows = probe[probe["model"].map(short) == short(model)]
    rows = rows.assign(task=rows["task"].map(short), value=rows[metric])[["task", "value"]].dropna()
    if rank_runs is not None:
        rows = rows[rows["task"].isin(set(rank_runs["task"].map(short)))]
    return rows.drop_duplicates("task", keep="last")


def shared_by_k(shared):
    """asymviz.collection's shared-direction curves, mean over modules per (which, k): columns which, k,
    variance_explained, random_baseline, modules."""
    return (
        shared.groupby(["which", "k"], sort=False)
        .agg(variance_explained=("variance_explained", "mean"), random_baseline=("random_baseline", "mean"),
             modules=("module", "nunique"))
        .reset_index()
    )  # fmt: skip


def clusters_table(clusters):
    """One row per adapter, its cluster by A and by B (asymviz.collection's clusters, pivoted)."""
    wide = clusters.pivot(index="adapter", columns="which", values="cluster")
    wide = wide.reindex(list(dict.fromkeys(clusters["adapter"])))
    return wide.rename(columns=lambda w: f"cluster by {w}").reset_index()


def live_configs(model, task, modes, rank, steps, seed, device, use_demo: bool, threads: int | None = None):
    """The TrainConfig of each chosen mode: the demo preset's (its per-mode learning rates, top layers and
    frozen-prefix cache) or the engine's defaults, with the user's model, task, rank, steps, seed and device.
    Validation runs at a third and two thirds of the steps and at the end, so the metric curve moves live."""
    from asymviz import TrainConfig, preset

    changes = dict(model=model, task=task, rank=int(rank), steps=int(steps), seed=int(seed), device=device,
                   eval_every=max(1, int(steps) // 3), threads=threads)  # fmt: skip
    if use_demo:
        by_mode = {c.mode: c for c in preset("demo", **changes)}
        return [by_mode[m] for m in modes]
    return [TrainConfig(mode=m, **changes) for m in modes]
