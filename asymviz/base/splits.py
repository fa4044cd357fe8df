"""How a text task is split: over unique texts, stratified by label, so that no repeated text decides a verdict.

    frame, split, method = split_unique_texts(frame, "classification", holdout=0.1, split_seed=0)

Why: chatterbot repeats a question up to 121 times; a split that kept the repeats put 63 % of a test split on
two questions, and one question right or wrong decided "B only fails". Used by asymviz.base.tasks.load_task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asymviz.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def split_unique_texts(
    frame: pd.DataFrame, kind: str, holdout: float, split_seed: int
) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Split a text task over its unique texts: returns (the rows kept, their split names, the method in words).

    1. Every unique text gets one split; its stratum is its label (most frequent label, ties: the first in
       sorted order; a causal-LM file without labels is not stratified).
    2. A file's own `split` column is kept (a text in both train and test is kept in test only); otherwise
       test = round(holdout · U) and then validation = round(holdout · U) unique texts are drawn, stratified
       by label with scikit-learn's `train_test_split` (seeded by `split_seed`). A validation split the file
       lacks is drawn the same way from its training texts. Each draw then adds one text of every class it
       missed that still has two texts in the pool, so every class with at least three unique texts appears
       in train, validation and test; classes with fewer unique texts are left out of the draws (train).
    3. Rows kept: one per unique text per split (its first row in the file), so no repeated text can decide
       a verdict; a causal-LM task keeps all rows of its training texts (one question, several answers are
       all learned) but one row per text in validation and test. Classification drops texts that carry more
       than one label (no model can get them right).
    """
    import numpy as np
    import pandas as pd

    texts = frame["text"].to_numpy()
    uniq, inverse = np.unique(texts, return_inverse=True)
    strata = None
    if "label" in frame.columns and frame["label"].notna().any():
        counts = frame.groupby(["text", "label"]).size().reset_index(name="n")
        counts = counts.sort_values(["text", "n", "label"], ascending=[True, False, True])
        top = counts.drop_duplicates("text").set_index("text")["label"]
        strata = top.reindex(uniq).astype(str).to_numpy()
    rng = np.random.default_rng(split_seed)
    where, given = f"seed {split_seed}", None
    if "split" in frame.columns and set(frame["split"].astype(str)) <= {"train", "validation", "test"}:
        given = frame["split"].astype(str).to_numpy()
        text_split = np.full(len(uniq), "train", dtype=object)
        for part in ("validation", "test"):  # a text the file puts in train and test counts as test
            text_split[np.unique(inverse[given == part])] = part
        method = "the file's split column, one row per unique text (a text in train and test kept in test)"
        if not (text_split == "validation").any():
            pool = np.flatnonzero(text_split == "train")
            n_val = int(round(holdout * len(pool)))
            text_split[stratified_draw(pool, strata, n_val, rng)] = "validation"
            method += f"; validation = {holdout:.0%} of train's unique texts (stratified by label, {where})"
    else:
        text_split = np.full(len(uniq), "train", dtype=object)
        n_out = int(round(holdout * len(uniq)))
        for part in ("test", "validation"):
            pool = np.flatnonzero(text_split == "train")
            text_split[stratified_draw(pool, strata, n_out, rng)] = part
        how = "stratified by label" if strata is not None else "not stratified (no labels)"
        method = (
            f"unique texts {1 - 2 * holdout:.0%}/{holdout:.0%}/{holdout:.0%}, {how}, {where}; "
            "one row per unique text"
        )
    row_split = text_split[inverse]
    # the first row of every unique text (among the rows the file itself puts in that text's split)
    match = np.ones(len(frame), dtype=bool)
    if given is not None:  # (validation carved out of train: the file says train)
        match = (given == row_split) | ((given == "train") & (row_split == "validation"))
    keep = match & ~pd.Series(np.where(match, texts, None)).duplicated().to_numpy()
    if kind == "causal_lm":
        keep |= row_split == "train"
        method += " (train keeps every answer of its questions)"
    else:
        ambiguous = frame.groupby("text")["label"].nunique().reindex(uniq).to_numpy() > 1
        keep &= ~ambiguous[inverse]
        if ambiguous.any():
            method += f"; {int(ambiguous.sum())} text(s) with conflicting labels dropped"
    return frame[keep], row_split[keep], method


def stratified_draw(pool: np.ndarray, strata: np.ndarray | None, n_out: int, rng: np.random.Generator):
    """`n_out` items of `pool` (indices) drawn with `train_test_split`, stratified by `strata[pool]` over the
    classes with at least two items in the pool; then one item of each such class the draw missed is added."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    seed = int(rng.integers(2**31 - 1))
    if strata is None:
        if n_out <= 0 or n_out >= len(pool):
            raise ConfigError(f"task: cannot draw {n_out} of {len(pool)} texts for a split (too few texts)")
        return train_test_split(pool, test_size=n_out, random_state=seed)[1]
    labels = strata[pool]
    classes, counts = np.unique(labels, return_counts=True)
    eligible = np.isin(labels, classes[counts >= 2])
    candidates, stratum = pool[eligible], labels[eligible]
    n_classes = len(np.unique(stratum))
    n_out = max(n_out, n_classes)  # every class needs a seat
    if n_out < 1 or n_out > len(candidates) - n_classes:
        raise ConfigError(
            f"task: too few texts to split: {len(candidates)} texts in {n_classes} classes, "
            f"{n_out} to draw for a split and one of each class to keep for training"
        )
    drawn = train_test_split(candidates, test_size=n_out, stratify=stratum, random_state=seed)[1]
    missed = np.setdiff1d(np.unique(stratum), strata[drawn])
    extra = [rng.choice(np.setdiff1d(candidates[stratum == c], drawn)) for c in missed]
    return np.concatenate([drawn, np.asarray(extra, dtype=pool.dtype)])
