"""Tasks: the vendored data sets (asymviz/data/) or a user's CSV / JSONL, with fixed seeded splits.

    task = load_task("fine_foods")            # TaskData: .train / .validation / .test frames, .labels
    task = load_task("my_reviews.csv")        # columns text,label (classification) or text,answer (causal LM)

Splits are fixed by `split_seed` (0 unless asked), never by the run's training seed, so runs with different seeds
see the same examples. Rows with identical `text` always land in the same split (chatterbot repeats a question
with several answers). A file with a `split` column (train / validation / test) keeps it: fine_foods keeps its
published 4000 / 1000 train / test split (6 reviews occur in both, as published) and its validation set is
carved out of train. Otherwise rows are split
`1 - 2·holdout / holdout / holdout` (default 80 / 10 / 10 %).

Every frame has the columns `row` (row number in the file), `text`, and `label` (str) + `y` (int, index into
`TaskData.labels`) for classification or `answer` (str) for causal LM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
KINDS = ("classification", "causal_lm")
_PART_SEED = {"train": 1, "validation": 2, "test": 3}


@dataclass(frozen=True)
class TaskSpec:
    """A named task over a vendored file."""

    name: str  # "chatterbot_topic"
    file: str  # "chatterbot_qa.jsonl.gz" (under asymviz/data/)
    kind: str  # "classification" | "causal_lm"
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
    )
}


@dataclass(frozen=True)
class TaskData:
    """One task, split. Frames: row, text, label, y (classification) or row, text, answer (causal LM)."""

    name: str  # "fine_foods" or the user's file name
    kind: str  # "classification" | "causal_lm"
    source: str  # the file read
    labels: tuple[str, ...]  # class names, index = y; () for causal LM
    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)
    split_seed: int = 0
    split_method: str = ""  # how the splits were made, in words

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def record(self) -> dict:
        """What run.json stores about the data: source, sizes, seed and a hash of each split's row ids."""
        out = {
            "task": self.name,
            "kind": self.kind,
            "source": self.source,
            "labels": list(self.labels),
            "split_seed": self.split_seed,
            "split_method": self.split_method,
        }
        for name in ("train", "validation", "test"):
            rows = self.split(name)["row"].tolist()
            out[f"n_{name}"] = len(rows)
            out[f"rows_sha1_{name}"] = hashlib.sha1(",".join(map(str, rows)).encode()).hexdigest()[:16]
        return out

    def row_ids(self) -> dict[str, list[int]]:
        """Row numbers (in the source file) of each split, as written to the run's split.json."""
        return {name: self.split(name)["row"].tolist() for name in ("train", "validation", "test")}


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
        path, name, kind = DATA_DIR / spec.file, spec.name, spec.kind
        source = f"asymviz/data/{spec.file}"
        if not path.exists():
            raise ConfigError(f"task: the packaged data file {path} is missing (broken install?)")
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

    rng = np.random.default_rng(split_seed)
    if "split" in frame.columns and set(frame["split"].astype(str)) <= {"train", "validation", "test"}:
        split = frame["split"].astype(str).to_numpy().copy()
        method = "the file's split column"
        if not (split == "validation").any():
            is_train = split == "train"
            split[is_train] = _group_split(frame["text"].to_numpy()[is_train], (holdout, 0.0), rng)
            method += f"; validation = {holdout:.0%} of train (grouped by text, seed {split_seed})"
    else:
        split = _group_split(frame["text"].to_numpy(), (holdout, holdout), rng)
        method = (
            f"random {1 - 2 * holdout:.0%}/{holdout:.0%}/{holdout:.0%}, grouped by text, seed {split_seed}"
        )

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


def _group_split(texts: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Assign 'train' / 'validation' / 'test' to each row; identical texts share a split."""
    import numpy as np

    uniq, inverse = np.unique(texts, return_inverse=True)
    order = rng.permutation(len(uniq))
    n_val = int(round(fractions[0] * len(uniq)))
    n_test = int(round(fractions[1] * len(uniq)))
    group_split = np.full(len(uniq), "train", dtype=object)
    group_split[order[:n_val]] = "validation"
    group_split[order[n_val : n_val + n_test]] = "test"
    return group_split[inverse]
