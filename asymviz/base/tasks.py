"""Tasks: the vendored data sets (asymviz/data/) or a user's CSV / JSONL, with fixed seeded splits.

    task = load_task("fine_foods")            # TaskData: .train / .validation / .test frames, .labels
    task = load_task("my_reviews.csv")        # columns text,label (classification) or text,answer (causal LM)

Splits are fixed by `split_seed` (0 unless asked), never by the run's training seed, so runs with different seeds
see the same examples. Splits are made over UNIQUE texts, stratified by label (scikit-learn's
`train_test_split`), so that no repeated text can decide a verdict (chatterbot repeats a question up to 121
times): each text lands in one split, and each split keeps one row per unique text (a causal-LM task keeps all
answers of its training questions, one row per question in validation and test); classification drops the few
texts that carry two labels. Every class with at least three unique texts appears in every split. A file with a
`split` column (train / validation / test) keeps it: fine_foods keeps its published 4000 / 1000 train / test
split (the 6 reviews the publication puts in both are kept in test only) and its validation set is carved out of
train. Otherwise texts are split `1 - 2·holdout / holdout / holdout` (default 80 / 10 / 10 %).
`TaskData.split_summary()` and `task_table()` say what each split holds (rows, unique texts, classes, the
largest share of one item, the majority-class baseline): `asymviz tasks` prints it.

Every frame has the columns `row` (row number in the file), `text`, and `label` (str) + `y` (int, index into
`TaskData.labels`) for classification or `answer` (str) for causal LM.

Image tasks (task_type `image_classification`, 28 × 28 grey images from .npz files) have frames with `row`, `label`,
`y` and the pixels in `TaskData.images[split]` ((N, 28, 28) uint8, in frame order):
- `fashion_mnist`: the Fashion-MNIST subset (12,000 train / 2,000 test as shipped; validation = `holdout` of
  train, stratified by class, seeded); the ViT pretraining task (asymviz.training.vit).
- `mnist`: the 5,000 MNIST digits, split stratified by class and seeded: `1 - 2·holdout / holdout / holdout`
  (4000 / 500 / 500 by default). It also has a held-out domain, split `heldout`: the test digits rotated by
  `HELDOUT_ROTATION` degrees (bilinear, about the centre, zero fill), the same rows and labels as `test`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.base.splits import split_unique_texts
from asymviz.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
KINDS = ("classification", "causal_lm", "image_classification")
HELDOUT_ROTATION = 30.0  # degrees (counter-clockwise) of mnist's held-out domain
FASHION_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")  # fmt: skip
_PART_SEED = {"train": 1, "validation": 2, "test": 3}


@dataclass(frozen=True)
class TaskSpec:
    """A named task over a vendored file."""

    name: str  # "chatterbot_topic"
    file: str  # "chatterbot_qa.jsonl.gz" (under asymviz/data/)
    task_type: str  # "classification" | "causal_lm" | "image_classification"
    description: str


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "fine_foods", "fine_foods.jsonl.gz", "classification", "Amazon food review -> great / other"
        ),
        TaskSpec("tweet_source", "tweet_source.jsonl.gz", "classification", "tweet -> android / iphone"),
        TaskSpec("word_polarity", "word_polarity.jsonl.gz", "classification", "word -> positive / negative"),
        TaskSpec("word_pos", "word_pos.jsonl.gz", "classification", "word -> part of speech (7)"),
        TaskSpec("chatterbot_topic", "chatterbot_qa.jsonl.gz", "classification", "question -> topic (21)"),
        TaskSpec(
            "chatterbot_qa", "chatterbot_qa.jsonl.gz", "causal_lm", "question -> answer (LM loss on answer)"
        ),
        TaskSpec(
            "fashion_mnist", "fashion_mnist_subset.npz", "image_classification", "28x28 clothes -> class (10)"
        ),
        TaskSpec("mnist", "mnist_5k.npz", "image_classification", "28x28 digit -> digit (10), + 30° rotated"),
    )
}


def is_classification(kind: str) -> bool:
    """True for the kinds scored by accuracy / macro-F1 (text or image classification)."""
    return kind in ("classification", "image_classification")


@dataclass(frozen=True)
class TaskData:
    """One task, split. Frames: row, text, label, y (classification) or row, text, answer (causal LM)."""

    name: str  # "fine_foods" or the user's file name
    task_type: str  # "classification" | "causal_lm" | "image_classification"
    source: str  # the file read
    labels: tuple[str, ...]  # class names, index = y; () for causal LM
    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)
    split_seed: int = 0
    split_method: str = ""  # how the splits were made, in words
    heldout: pd.DataFrame | None = field(default=None, repr=False)  # a held-out domain (mnist), else None
    images: dict[str, np.ndarray] | None = field(default=None, repr=False)  # image tasks: split -> (N, H, W)
    heldout_method: str = ""  # how the held-out domain was made, in words

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this task has: train, validation, test (+ heldout)."""
        return ("train", "validation", "test") + (("heldout",) if self.heldout is not None else ())

    def split(self, name: str) -> pd.DataFrame:
        if name == "heldout" and self.heldout is not None:
            return self.heldout
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def record(self) -> dict:
        """What run.json stores about the data: source, sizes, seed and a hash of each split's row ids."""
        out = {
            "task": self.name,
            "task_type": self.task_type,
            "kind": self.task_type,  # the old name of task_type, kept readable for one release
            "source": self.source,
            "labels": list(self.labels),
            "split_seed": self.split_seed,
            "split_method": self.split_method,
        }
        if self.heldout is not None:
            out["heldout_method"] = self.heldout_method
        for name in self.splits:
            rows = self.split(name)["row"].tolist()
            out[f"n_{name}"] = len(rows)
            out[f"rows_sha1_{name}"] = hashlib.sha1(",".join(map(str, rows)).encode()).hexdigest()[:16]
        return out

    def split_summary(self) -> dict[str, dict]:
        """What each split holds, to judge how much one item can move a score: split -> {

        - rows: examples in the split,
        - unique_texts: distinct inputs (texts; images: distinct pixel arrays),
        - classes: distinct labels present (None for a causal-LM task),
        - largest_item_share: the largest share of the rows taken by one unique input (1 / rows when no input
          repeats; a verdict resting on a share s can flip when that one item flips),
        - majority_accuracy: the accuracy of always answering the TRAINING split's most frequent class, scored
          on this split (the constant baseline a model has to beat; None for a causal-LM task)}.
        """
        import pandas as pd

        classify = is_classification(self.task_type)
        majority = int(self.train["y"].value_counts().idxmax()) if classify else None
        out = {}
        for name in self.splits:
            frame = self.split(name)
            if "text" in frame.columns:
                items = frame["text"]
            else:  # images: identical pixel arrays are the same item
                flat = self.images[name].reshape(len(frame), -1)
                items = pd.Series([hashlib.sha1(row.tobytes()).hexdigest() for row in flat])
            counts = items.value_counts()
            n = len(frame)
            out[name] = {
                "rows": n,
                "unique_texts": int(counts.size),
                "classes": int(frame["y"].nunique()) if classify else None,
                "largest_item_share": float(counts.iloc[0] / n) if n else None,
                "majority_accuracy": float((frame["y"] == majority).mean()) if classify and n else None,
            }
        return out

    def row_ids(self) -> dict[str, list[int]]:
        """Row numbers (in the source file) of each split, as written to the run's split.json."""
        return {name: self.split(name)["row"].tolist() for name in self.splits}


SUMMARY_COLUMNS = ("task", "task_type", "split", "rows", "unique_texts", "classes", "largest_item_share",
                   "majority_accuracy")  # fmt: skip


def task_table(names: tuple[str, ...] | None = None, split_seed: int = 0) -> pd.DataFrame:
    """One row per (bundled task, split) with `TaskData.split_summary()`'s numbers, columns `SUMMARY_COLUMNS`
    (task_type: classification, causal_lm or image_classification). Reads the data files only (no model); about a second for all tasks."""
    import pandas as pd

    rows = []
    for name in names or tuple(TASKS):
        task = load_task(name, split_seed=split_seed)
        for split, numbers in task.split_summary().items():
            rows.append({"task": name, "task_type": task.task_type, "split": split, **numbers})
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return frame.astype({"classes": "Int64"})


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or JSON-lines file (optionally .gz) into a frame."""
    import pandas as pd

    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext == ".csv":
        return pd.read_csv(path)
    if ext in (".jsonl", ".json", ".ndjson"):
        return pd.read_json(path, lines=ext != ".json" or _looks_like_lines(path))
    raise ConfigError(f"task: cannot read {path.name!r}: use .csv or .jsonl (optionally .gz)")


def _looks_like_lines(path: Path) -> bool:
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt") as f:
        return not f.read(1).startswith("[")


def load_task(
    task: str | Path,
    split_seed: int = 0,
    holdout: float = 0.1,
    max_train: int | None = None,
    max_validation: int | None = None,
    max_test: int | None = None,
) -> TaskData:
    """Load a task by name (see `TASKS`) or from a CSV / JSONL file, split with a fixed seed.

    `holdout` is the validation fraction (and test fraction where the file has no test split). `max_*`
    keep a seeded random subset of a split (the same rows for the same seed), for quick runs.
    """
    import numpy as np

    if isinstance(task, str) and task in TASKS:
        spec = TASKS[task]
        path, name, kind = DATA_DIR / spec.file, spec.name, spec.task_type
        source = f"asymviz/data/{spec.file}"
        if not path.exists():
            raise ConfigError(f"task: the packaged data file {path} is missing (broken install?)")
        if kind == "image_classification":
            return _load_images(spec, split_seed, holdout, max_train, max_validation, max_test)
    else:
        path = Path(task)
        if not path.exists():
            known = ", ".join(TASKS)
            raise ConfigError(f"task: {str(task)!r} is neither a known task ({known}) nor an existing file")
        name, kind, source = path.name, None, str(path.resolve())
    if not 0 < holdout < 0.5:
        raise ConfigError(f"holdout: must be in (0, 0.5), got {holdout}")

    frame = read_table(path)
    if "text" not in frame.columns:
        raise ConfigError(
            f"task: {path.name} has no 'text' column (columns: {', '.join(map(str, frame.columns))})"
        )
    if kind is None:
        if "label" in frame.columns:
            kind = "classification"
        elif "answer" in frame.columns:
            kind = "causal_lm"
        else:
            raise ConfigError(
                f"task: {path.name} needs a 'label' column (classification) or 'answer' (causal LM)"
            )
    frame = frame.reset_index(drop=True)
    frame.insert(0, "row", np.arange(len(frame)))
    frame["text"] = frame["text"].astype(str)
    keep = ["row", "text"]
    labels: tuple[str, ...] = ()
    if kind == "classification":
        frame = frame[frame["label"].notna()]
        frame["label"] = frame["label"].astype(str)
        labels = tuple(sorted(frame["label"].unique()))
        if len(labels) < 2:
            raise ConfigError(f"task: {path.name} has fewer than two distinct labels")
        frame["y"] = frame["label"].map({lab: i for i, lab in enumerate(labels)}).astype("int64")
        keep += ["label", "y"]
    else:
        frame = frame[frame["answer"].notna()]
        frame["answer"] = frame["answer"].astype(str)
        keep += ["answer"]
    if len(frame) < 10:
        raise ConfigError(f"task: {path.name} has {len(frame)} usable rows; need at least 10")

    frame, split, method = split_unique_texts(frame, kind, holdout, split_seed)
    parts = {}
    for part, cap in (("train", max_train), ("validation", max_validation), ("test", max_test)):
        sub = frame.loc[split == part, keep].reset_index(drop=True)
        if cap is not None and cap < len(sub):
            pick = np.sort(
                np.random.default_rng([split_seed, _PART_SEED[part]]).choice(len(sub), cap, replace=False)
            )
            sub = sub.iloc[pick].reset_index(drop=True)
            method += f"; {part} capped at {cap} (seeded)"
        if len(sub) == 0:
            raise ConfigError(f"task: the {part} split of {path.name} is empty")
        parts[part] = sub
    return TaskData(
        name, kind, source, labels, parts["train"], parts["validation"], parts["test"], split_seed, method
    )


# ----------------------------------------------------------------------------------------------------------
# image tasks


def _stratified(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask picking round(fraction · n_c) random rows of every class c."""
    import numpy as np

    pick = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        pick[rng.permutation(rows)[: int(round(fraction * len(rows)))]] = True
    return pick


def rotate_images(images: np.ndarray, degrees: float) -> np.ndarray:
    """(N, H, W) uint8 images rotated counter-clockwise about their centre (bilinear, zero fill)."""
    import numpy as np

    n, h, w = images.shape
    t = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # each output pixel reads the input at the inverse rotation of its position
    sx = np.cos(t) * (xx - cx) - np.sin(t) * (yy - cy) + cx
    sy = np.sin(t) * (xx - cx) + np.cos(t) * (yy - cy) + cy
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    src = images.astype(np.float64)
    out = np.zeros((n, h, w))
    for dy, dx, wgt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yi, xi = y0 + dy, x0 + dx
        ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        out[:, ok] += src[:, yi[ok], xi[ok]] * wgt[ok]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _load_images(spec: TaskSpec, split_seed, holdout, max_train, max_validation, max_test) -> TaskData:
    import numpy as np
    import pandas as pd

    if not 0 < holdout < 0.5:
        raise ConfigError(f"holdout: must be in (0, 0.5), got {holdout}")
    with np.load(DATA_DIR / spec.file) as f:
        arrays = {k: f[k] for k in f.files}
    rng = np.random.default_rng(split_seed)
    if spec.name == "fashion_mnist":  # shipped train / test; validation carved out of train
        x = np.concatenate([arrays["x_train"], arrays["x_test"]])
        y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype("int64")
        split = np.array(["train"] * len(arrays["y_train"]) + ["test"] * len(arrays["y_test"]), dtype=object)
        is_train = split == "train"
        val = _stratified(y[is_train], holdout, rng)
        split[np.flatnonzero(is_train)[val]] = "validation"
        labels = FASHION_LABELS
        method = f"the shipped train/test split; validation = {holdout:.0%} of train (stratified, seed {split_seed})"
    else:  # mnist: one pool of digits
        x, y = arrays["x"], arrays["y"].astype("int64")
        split = np.full(len(y), "train", dtype=object)
        held = _stratified(y, 2 * holdout, rng)
        split[held] = "test"
        held_rows = np.flatnonzero(held)
        split[held_rows[_stratified(y[held_rows], 0.5, rng)]] = "validation"
        labels = tuple(str(d) for d in range(10))
        method = f"stratified by class, {1 - 2 * holdout:.0%}/{holdout:.0%}/{holdout:.0%}, seed {split_seed}"
    parts, images = {}, {}
    for part, cap in (("train", max_train), ("validation", max_validation), ("test", max_test)):
        rows = np.flatnonzero(split == part)
        if cap is not None and cap < len(rows):
            pick = np.random.default_rng([split_seed, _PART_SEED[part]]).choice(len(rows), cap, replace=False)
            rows = rows[np.sort(pick)]
            method += f"; {part} capped at {cap} (seeded)"
        parts[part] = pd.DataFrame({"row": rows, "label": [labels[i] for i in y[rows]], "y": y[rows]})
        images[part] = x[rows]
    heldout, heldout_method = None, ""
    if spec.name == "mnist":
        heldout = parts["test"].copy()
        images["heldout"] = rotate_images(images["test"], HELDOUT_ROTATION)
        heldout_method = f"the test digits rotated {HELDOUT_ROTATION:g} degrees counter-clockwise (bilinear)"
    return TaskData(spec.name, spec.task_type, f"asymviz/data/{spec.file}", labels, parts["train"],
                    parts["validation"], parts["test"], split_seed, method, heldout, images,
                    heldout_method)  # fmt: skip
