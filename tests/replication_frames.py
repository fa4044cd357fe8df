"""Frames in the columns of the replication's contracts (/work/notes/v2_spec.md, issue 13), with numbers chosen
so that a figure or a page drawing them can be checked against them: tests of asymviz.figures.replication and of
the Overview's replication sections."""

from __future__ import annotations

import numpy as np
import pandas as pd


def rank_sweep_frame() -> pd.DataFrame:
    """rank_sweep_table's columns (v2 spec): two tasks, ranks 1..64, four comparisons (two are not drawn)."""
    rng = np.random.default_rng(1)
    rows = []
    for task in ("fine_foods", "word_pos"):
        for rank in (1, 2, 4, 8, 16, 32, 64):
            for mode, baseline in (
                ("b_only", "a_only"),
                ("b_only", "ab"),
                ("a_only", "ab"),
                ("ab", "head_only"),
            ):
                diff = rng.normal(0.01, 0.02)
                half = abs(rng.normal(0.01, 0.003))
                rows.append({"task": task, "rank": rank, "d_in": 384, "d_over_r": 384 / rank, "mode": mode,
                             "baseline": baseline, "n_pairs": 5, "diff_mean": diff, "ci_low": diff - half,
                             "ci_high": diff + 1.5 * half, "p_holm": 0.2, "margin": 0.01,
                             "verdict": "better" if diff - half > 0 else "inconclusive"})  # fmt: skip
    return pd.DataFrame(rows)


def head_frame() -> pd.DataFrame:
    rows = []
    tasks = ("fine_foods", "tweet_source", "word_pos")
    for i, task in enumerate(tasks):
        for j, head in enumerate(("pooler+classifier", "classifier")):
            for k, (mode, baseline) in enumerate(
                (("b_only", "a_only"), ("b_only", "ab"), ("ab", "head_only"))
            ):
                diff = 0.01 * (i + 1) - 0.02 * j + 0.005 * k
                rows.append({"task": task, "head": head, "mode": mode, "baseline": baseline, "n_pairs": 5,
                             "diff_mean": diff, "ci_low": diff - 0.004, "ci_high": diff + 0.006,
                             "verdict": "inconclusive" if j else "better"})  # fmt: skip
    return pd.DataFrame(rows)


def mechanism_frame() -> pd.DataFrame:
    rows = []
    for model, task in (("minilm", "fine_foods"), ("minilm", "word_pos"), ("vit-fmnist", "mnist")):
        for mode, predicted in (("b_only", 0.10), ("a_only", 0.40)):
            observed = predicted * (1.2 if task == "word_pos" else 0.9)
            rows.append({"model": model, "task": task, "module": "layer.5.value", "d_in": 384, "d_out": 384,
                         "rank": 8, "d_over_r": 48.0, "mode": mode, "observed": observed,
                         "observed_low": observed - 0.02, "observed_high": observed + 0.03, "predicted": predicted,
                         "exact": True, "n_seeds": 5, "quantity": "relative excess loss"})  # fmt: skip
    return pd.DataFrame(rows)


def similarity_frame() -> pd.DataFrame:
    rows = []
    for which in ("A", "B"):
        for same_init in (True, False):
            for same_task in (True, False):
                mean = (
                    (0.9 if same_init else 0.2) + (0.05 if same_task else 0.0) - (0.1 if which == "B" else 0)
                )
                rows.append({"which": which, "same_init": same_init, "same_task": same_task, "n_pairs": 12,
                             "mean": mean, "ci_low": mean - 0.02, "ci_high": mean + 0.01,
                             "random_baseline": 0.021 if which == "A" else 0.022, "k": 8})  # fmt: skip
    return pd.DataFrame(rows)


def head_interaction_frame() -> pd.DataFrame:
    """head_interaction_table's columns: the classifier-only gap minus the full-head gap, per task and contrast."""
    rows = []
    for task in ("fine_foods", "tweet_source", "word_pos"):
        for contrast, full, cls in (("b_only - a_only", 0.01, 0.03), ("b_only - ab", -0.002, 0.004)):
            rows.append({"task": task, "contrast": contrast, "diff_full_head": full, "diff_classifier_head": cls,
                         "interaction": cls - full, "ci_low": cls - full - 0.01, "ci_high": cls - full + 0.012,
                         "verdict": "inconclusive"})  # fmt: skip
    return pd.DataFrame(rows)
