"""Hostile and unusual adapter files (asymviz issue 11): every variant from fuzz_corpus gets either a CSV
(exit 0) or exactly one `error:` line (exit 2); never a traceback, a hang, code execution or a write outside
the variant's folder. In-process through asymviz.cli.main.main for speed; special files (FIFOs, device
links) and a sample of the rest through a real subprocess with a timeout and an RLIMIT_AS memory cap."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_corpus import MARKER_ENV, build_bases, classify, run_cli, write_corpus  # noqa: E402

N_VARIANTS = 300
N_SUBPROCESS = 6  # besides the special files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    bases = build_bases(root / "bases")
    variants = write_corpus(bases, root / "variants", n=N_VARIANTS, seed=0)
    return root, variants


def _listing(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def _in_process(target: Path) -> tuple[int, str, str]:
    from asymviz.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["spectra", str(target), "--format", "csv"])
    return code, out.getvalue(), err.getvalue()


def test_corpus_is_seeded_and_covers_every_kind(corpus):
    _, variants = corpus
    kinds = {v.kind.split("-")[0] for v in variants}
    assert {"truncate", "header", "values", "config", "pickle", "torch", "zip", "fifo", "link"} <= kinds
    assert len(variants) == N_VARIANTS


def test_every_variant_gets_a_csv_or_one_error_line(corpus, tmp_path, monkeypatch):
    root, variants = corpus
    marker = tmp_path / "pwned"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    monkeypatch.setenv("ASYMVIZ_NO_PROGRESS", "1")
    failures, counts = [], {}
    before = _listing(root.parent)
    for v in variants:
        if v.special:
            continue
        code, out, err = _in_process(v.target)
        outcome = classify(code, out, err)
        if outcome == "ok" and not v.may_succeed:
            outcome = "ok-but-should-fail"
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome not in ("ok", "error-line"):
            failures.append((v.folder.name, outcome, code, err.strip()[-300:]))
    assert not marker.exists(), "a pickle ran code"
    folders = tuple(str(v.folder) for v in variants)
    outside = sorted(p for p in _listing(root.parent) - before if not p.startswith(folders))
    assert not outside, f"written outside the variants' folders: {outside[:5]}"
    assert not failures, f"{counts}: {failures[:5]}"
    assert counts.get("error-line", 0) > 100 and counts.get("ok", 0) > 10  # the corpus holds both kinds


def test_legal_unusual_files_load(corpus):
    """Header lengths that start with a pickle's bytes, compressed and big-endian torch zips, Parameters."""
    _, variants = corpus
    legal = [
        v for v in variants if v.kind.startswith("torch-") or v.kind.removeprefix("header-len-").isdigit()
    ]
    assert len(legal) >= 12
    for v in legal:
        code, out, err = _in_process(v.target)
        assert code == 0 and out.startswith("module,"), (v.folder.name, err)


def test_special_files_and_a_sample_in_real_subprocesses(corpus, tmp_path):
    """FIFOs and device links would block or never end: the real CLI, under a timeout and a 2 GiB cap."""
    _, variants = corpus
    special = [v for v in variants if v.special]
    sample = [v for v in variants if v.kind in ("pickle-os-system", "zip-bomb", "header-deep", "config-regex",
                                                "pickle-expanded-view", "zip-many-members")][:N_SUBPROCESS]  # fmt: skip
    marker = tmp_path / "pwned"
    env = {**os.environ, MARKER_ENV: str(marker), "ASYMVIZ_NO_PROGRESS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}  # fmt: skip
    results = {}
    for v in special + sample:
        outcome, rc, out, err, _secs = run_cli(v.target, timeout=60, mem_gib=2.0, env=env)
        results[v.folder.name] = (outcome, err.strip()[-200:])
    assert not marker.exists()
    bad = {k: r for k, r in results.items() if r[0] != "error-line"}
    assert not bad, bad
    assert len(special) >= 8
