"""asymviz.training.sweep: grids, resumability, worker processes, the demo table."""

from __future__ import annotations

from asymviz.runs import RunStore
from asymviz.training.config import MODES, TrainConfig
from asymviz.training.sweep import comparison_table, expand, pending, sweep


def test_expand_is_the_full_grid_modes_innermost():
    grid = expand(TrainConfig(), tasks=["a.csv", "b.csv"], modes=MODES, seeds=[0, 1], ranks=[4])
    assert len(grid) == 12
    assert [c.mode for c in grid[:3]] == list(MODES)
    assert {(c.task, c.seed, c.rank) for c in grid} == {(t, s, 4) for t in ("a.csv", "b.csv") for s in (0, 1)}


def test_pending_drops_duplicates_and_completed(tmp_path, tiny_config):
    cfgs = [tiny_config(mode="ab"), tiny_config(mode="ab"), tiny_config(mode="b_only")]
    store = RunStore(tmp_path)
    assert len(pending(cfgs, store)) == 2
    sweep(cfgs[:1], store)
    assert [c.mode for c in pending(cfgs, store)] == ["b_only"]


def test_worker_processes_run_a_queue(tmp_path, tiny_config):
    cfgs = [tiny_config(mode=m, steps=2) for m in MODES]
    seen = []
    frame = sweep(
        cfgs, tmp_path / "store", devices=["cpu"], jobs_per_device=2, on_run=lambda r: seen.append(r.run_id)
    )
    assert sorted(frame["mode"]) == sorted(MODES) and (frame["status"] == "completed").all()
    assert sorted(seen) == sorted(c.run_id() for c in cfgs)
    queue = next((tmp_path / "store" / ".sweep").iterdir())
    assert not list(queue.glob("*.json"))  # every config was claimed


def test_comparison_table_in_mode_order(tmp_path, tiny_config):
    cfgs = [tiny_config(mode=m, steps=2, lr=1e-3 * (i + 1)) for i, m in enumerate(reversed(MODES))]
    table = comparison_table(sweep(cfgs, tmp_path))
    assert table["mode"].tolist() == list(MODES)
    assert table["lr"].tolist() == [3e-3, 2e-3, 1e-3]
    assert {"trainable_lora", "trainable_head", "test_accuracy", "wall_s"} <= set(table.columns)


def test_forked_cpu_jobs_match_one_after_another(tmp_path, tiny_config):
    cfgs = [tiny_config(mode=m, steps=3, top_layers=1, cache_prefix=True) for m in MODES]
    seq = sweep(cfgs, tmp_path / "seq").set_index("mode")
    events = []
    par = sweep(cfgs, tmp_path / "par", cpu_jobs=3, progress=events.append).set_index("mode")
    assert (par["status"] == "completed").all()
    for mode in MODES:
        assert par.loc[mode, "test_loss"] == seq.loc[mode, "test_loss"]
    assert events and events[-1].total_steps == 9
