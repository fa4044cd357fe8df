"""asymviz.base.splits: stratified draws over unique texts (the load_task-level checks are in test_tasks.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asymviz.base.splits import split_unique_texts, stratified_draw
from asymviz.errors import ConfigError


def test_a_draw_is_stratified_and_seats_every_class_with_two_items():
    # 200 of class a, 3 of b, 2 of c, 1 of d: proportional shares of a 10 % draw would leave b and c out
    strata = np.array(["a"] * 200 + ["b"] * 3 + ["c"] * 2 + ["d"])
    pool = np.arange(len(strata))
    drawn = stratified_draw(pool, strata, 20, np.random.default_rng(0))
    assert len(set(drawn)) == len(drawn) >= 20
    assert set(strata[drawn]) == {"a", "b", "c"}  # d has one item: it stays in the pool (train)
    again = stratified_draw(pool, strata, 20, np.random.default_rng(0))
    assert drawn.tolist() == again.tolist()  # fixed by the seed


def test_a_draw_refuses_what_cannot_be_split():
    with pytest.raises(ConfigError, match="too few texts"):
        stratified_draw(np.arange(4), np.array(list("aabb")), 3, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="too few texts"):
        stratified_draw(np.arange(5), None, 0, np.random.default_rng(0))


def test_repeats_count_once_and_answers_stay_in_train():
    frame = pd.DataFrame(
        {
            "text": [f"q{i}" for i in range(30)] + ["q0"] * 9,
            "answer": [f"a{i}" for i in range(39)],
            "label": ["x", "y", "z"] * 10 + ["x"] * 9,
        }
    )
    kept, split, _ = split_unique_texts(frame, "causal_lm", 0.1, 0)
    by_split = {s: kept[split == s] for s in ("train", "validation", "test")}
    for s in ("validation", "test"):
        assert by_split[s]["text"].is_unique and len(by_split[s]) == 3  # one per class
    q0 = frame.index[frame["text"] == "q0"]
    if (split[kept.index.isin(q0)] == "train").all():  # q0 in train: all ten answers kept
        assert kept.index.isin(q0).sum() == 10
    else:  # held out: its first row only
        assert kept.index.isin(q0).sum() == 1 and kept.index[kept.index.isin(q0)][0] == q0[0]
    cls, split_c, _ = split_unique_texts(frame, "classification", 0.1, 0)
    assert cls["text"].is_unique and len(cls) == 30
