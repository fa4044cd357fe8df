"""asymviz.probes.linear_probe on a tiny BERT built from a config and a synthetic separable task."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_task import write_separable_task, write_tiny_bert_with_vocab

from asymviz.base.tasks import load_task
from asymviz.errors import ConfigError
from asymviz.probes import linear_probe as lp


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return {"bert": str(write_tiny_bert_with_vocab(root)), "task": write_separable_task(root / "sep.csv")}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path / "cache"))


def test_probe_separates_a_separable_task(assets):
    frame = lp.linear_probe(assets["bert"], assets["task"])
    assert tuple(frame.columns) == lp.COLUMNS and len(frame) == 1
    row = frame.iloc[0]
    task = load_task(assets["task"])
    assert (row.n_train, row.n_validation, row.n_test) == (
        len(task.train),
        len(task.validation),
        len(task.test),
    )
    assert row.features == "mean" and row.C in lp.C_GRID and not row.cached
    assert row.validation_accuracy >= 0.95 and row.test_accuracy >= 0.95 and row.test_macro_f1 >= 0.95


def test_pooler_features_are_what_the_classification_head_reads(assets):
    import torch

    from asymviz.base.models import load_model, resolve_model

    model, tok = load_model(resolve_model(assets["bert"]), "classification")
    texts = ["good tea", "bad bad dog not", "cat"]
    pooled = lp.pooled_features(model, tok, texts, "pooler", batch_size=2)  # two batches, sorted by length
    mean = lp.pooled_features(model, tok, texts, "mean", batch_size=2)
    with torch.no_grad():
        for i, text in enumerate(texts):  # one text at a time: no padding
            out = model.base_model(**tok([text], return_tensors="pt"))
            assert np.allclose(pooled[i], out.pooler_output[0].numpy(), atol=1e-5)
            assert np.allclose(mean[i], out.last_hidden_state[0].mean(0).numpy(), atol=1e-5)
    row = lp.linear_probe(assets["bert"], assets["task"], features="pooler").iloc[0]
    assert row.features == "pooler" and 0.5 <= row.test_accuracy <= 1


def _blobs(n, seed, minority=0.5):
    """(x (n, 2), y (n,)): class 1 at x0 = +2, class 0 at x0 = -2, noise 0.5; share `minority` of class 1."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < minority).astype(int)
    x = np.c_[np.where(y == 1, 2.0, -2.0) + 0.5 * rng.standard_normal(n), rng.standard_normal(n)]
    return x, y


def test_c_is_the_smallest_best_on_validation():
    C, table = lp.select_c(_blobs(200, 0), _blobs(100, 1))
    assert table["C"].tolist() == sorted(lp.C_GRID)
    # C = 1e-3 shrinks the slope to ~0 and the (unpenalised) intercept answers the majority class; every larger
    # C separates the blobs: the tie goes to the strongest regularisation among them
    assert table["validation_accuracy"].tolist()[0] < 0.6 and (table["validation_accuracy"][1:] == 1).all()
    assert C == 1e-2


def test_c_is_chosen_on_validation_never_test(monkeypatch, assets):
    data = {"train": _blobs(300, 0, 0.05), "validation": _blobs(300, 1, 0.05), "test": _blobs(300, 2, 0.05)}
    honest = lp.fit_probe(data)
    x, y = data["test"]
    flipped = lp.fit_probe({**data, "test": (x, 1 - y)})  # a test set that rewards the opposite choices
    assert (flipped["C"], flipped["validation_accuracy"]) == (honest["C"], honest["validation_accuracy"])
    assert flipped["test_accuracy"] == pytest.approx(1 - honest["test_accuracy"])
    seen = []
    real = lp.select_c
    monkeypatch.setattr(
        lp, "select_c", lambda train, val, grid: seen.append((train, val)) or real(train, val, grid)
    )
    row = lp.linear_probe(assets["bert"], assets["task"]).iloc[0]
    ((train, val),) = seen
    assert (len(train[0]), len(val[0])) == (row.n_train, row.n_validation)
    task = load_task(assets["task"])
    assert (val[1] == task.validation["y"].to_numpy()).all()


def test_features_are_cached_per_model_task_and_settings(assets, tmp_path):
    first = lp.linear_probe(assets["bert"], assets["task"]).iloc[0]
    again = lp.linear_probe(assets["bert"], assets["task"]).iloc[0]
    assert not first.cached and again.cached
    keep = ["C", "validation_accuracy", "test_accuracy", "test_macro_f1"]
    assert again[keep].tolist() == first[keep].tolist()
    assert not lp.linear_probe(assets["bert"], assets["task"], max_length=8).iloc[0].cached
    assert len(list((tmp_path / "cache" / "linear_probe").glob("*.npz"))) == 2
    assert not lp.linear_probe(assets["bert"], assets["task"], cache=False).iloc[0].cached


def test_refuses_what_it_cannot_compute(assets, tmp_path):
    with pytest.raises(ConfigError, match="features: choose one of"):
        lp.linear_probe(assets["bert"], assets["task"], features="cls")
    with pytest.raises(ConfigError, match="causal_lm task"):
        lp.linear_probe(assets["bert"], "chatterbot_qa")
    with pytest.raises(ConfigError, match="positive values of C"):
        lp.select_c(_blobs(20, 0), _blobs(20, 1), grid=(0.0, 1.0))
