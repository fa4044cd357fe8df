"""app/cached.py's change signatures: a run store's stamp and the per-file stamps of linear_probe.csv and
mechanism.csv must change whenever what the pages read changes, or the Overview keeps showing old numbers as
current. The hard case: a rewrite of the same size whose modification time is set back (touch -d, cp -p, tar,
rsync -t) or falls in the same clock tick."""

from __future__ import annotations

import json
import os

import pytest

from app import cached


@pytest.fixture(autouse=True)
def fresh_stamps(monkeypatch):
    monkeypatch.setattr(cached, "STAMP_S", 0.0)  # take the stamp again on every call
    monkeypatch.setattr(cached, "_stamps", {})


def _rewrite_keeping_mtime(path, old: str, new: str) -> None:
    """Replace `old` by `new` (same length) in the file, then set its and its folder's times back."""
    assert len(old) == len(new)
    info, folder = os.stat(path), os.stat(os.path.dirname(path))
    text = open(path).read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.utime(os.path.dirname(path), ns=(folder.st_atime_ns, folder.st_mtime_ns))
    assert os.stat(path).st_size == info.st_size and os.stat(path).st_mtime_ns == info.st_mtime_ns


def test_a_same_size_edit_with_its_mtime_set_back_changes_the_store_stamp(tmp_path):
    run = tmp_path / "exp" / "run_a"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "run_a", "metrics": {"test_accuracy": 0.794}}))
    before = cached.store_stamp(str(tmp_path))
    assert cached.store_stamp(str(tmp_path)) == before  # nothing changed: the same stamp
    _rewrite_keeping_mtime(run / "run.json", "0.794", "0.111")
    assert cached.store_stamp(str(tmp_path)) != before


def test_a_same_size_edit_with_its_mtime_set_back_rereads_the_linear_probe(tmp_path):
    path = tmp_path / "exp" / "linear_probe.csv"
    path.parent.mkdir()
    path.write_text("task,test_accuracy\nsst2,0.794\n")
    assert cached.linear_probe(str(tmp_path), "exp")["test_accuracy"].tolist() == [0.794]
    _rewrite_keeping_mtime(path, "0.794", "0.111")
    assert cached.linear_probe(str(tmp_path), "exp")["test_accuracy"].tolist() == [0.111]


def test_a_same_size_edit_with_its_mtime_set_back_rereads_run_metrics(tmp_path):
    run = tmp_path / "run_a"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "run_a"}))
    (run / "metrics.csv").write_text("step,split,metric,value\n1,train,loss,0.794\n")
    assert cached.run_metrics((str(run),))["value"].tolist() == [0.794]
    _rewrite_keeping_mtime(run / "metrics.csv", "0.794", "0.111")
    assert cached.run_metrics((str(run),))["value"].tolist() == [0.111]
