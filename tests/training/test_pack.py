"""asymviz.training.pack: grouping a sweep's configs into packs, and training sweep jobs pack by pack."""

from __future__ import annotations

import json
from types import SimpleNamespace

from asymviz.runs import RunStore
from asymviz.training.config import TrainConfig
from asymviz.training.pack import pack_key, packs, train_jobs_packed


def test_packs_groups_compatible_configs_evenly():
    base = TrainConfig(steps=10)
    configs = [base.replace(seed=s, mode=m) for s in range(5) for m in ("ab", "b_only", "a_only")]  # 15
    configs += [base.replace(rank=4, seed=s) for s in range(2)]
    configs += [base.replace(top_layers=2, cache_prefix=True)]
    out = packs(configs, 12)
    assert sorted(len(p) for p in out) == [1, 2, 7, 8]
    assert all(len({pack_key(c) for c in p}) == 1 for p in out)
    assert sorted(c.run_id() for p in out for c in p) == sorted(c.run_id() for c in configs)
    assert [len(p) for p in packs(configs[:3], 1)] == [1, 1, 1]


def test_sweep_jobs_train_in_packs_with_their_annotations(tiny_config, tmp_path):
    configs = [tiny_config(mode=m, seed=s) for s, m in enumerate(("ab", "b_only"))]
    configs.append(tiny_config(mode="a_only", batch_size=2))  # another shape: a pack of its own (loop.train)
    jobs = [SimpleNamespace(config=c, annotations={"role": f"r{i}"}) for i, c in enumerate(configs)]
    seen = []
    records = train_jobs_packed(jobs, RunStore(tmp_path), 4, on_run=lambda r: seen.append(r.run_id))
    assert [r.status for r in records] == ["completed"] * 3
    assert sorted(seen) == sorted(c.run_id() for c in configs)
    for i, c in enumerate(configs):
        data = json.loads((tmp_path / c.run_id() / "run.json").read_text())
        assert data["role"] == f"r{i}"
        assert ("pack" in data) == (i < 2)


def test_sweep_with_pack_trains_compatible_runs_together(tiny_config, tmp_path):
    from asymviz.training.sweep import read_sweeps, sweep

    configs = [tiny_config(mode=m, seed=s) for s in (0, 1) for m in ("ab", "b_only", "a_only")]
    frame = sweep(configs, tmp_path, pack=4)
    assert sorted(frame["status"]) == ["completed"] * 6
    sizes = [json.loads((tmp_path / c.run_id() / "run.json").read_text())["pack"]["size"] for c in configs]
    assert sorted(sizes) == [3] * 6  # 6 compatible runs, packs of at most 4: two even packs of 3
    assert len(read_sweeps(tmp_path).iloc[-1]["trained"]) == 6


def test_a_sweep_with_a_grid_packs_the_head_only_control_too(tiny_config, tmp_path):
    """The head-lr grid (head_only runs) trains as one pack, then the LoRA grids, then the main runs."""
    from asymviz.training.sweep import sweep

    configs = [tiny_config(mode=m, seed=s) for s in (0, 1) for m in ("ab", "b_only", "head_only")]
    frame = sweep(configs, tmp_path, pack=12, lrs=[1e-3, 1e-2], lr_extensions=0)
    assert set(frame["status"]) == {"completed"}
    runs = {r: json.loads((tmp_path / r / "run.json").read_text()) for r in frame["run_id"]}
    grid = [d for d in runs.values() if d["config"]["mode"] == "head_only" and d["config"]["seed"] == 0]
    assert len(grid) == 2 and {d["pack"]["size"] for d in grid} == {2}  # the two head lrs (seed 0), one pack
    head_lr = {d["learning_rates"]["head"] for d in runs.values() if d["config"]["mode"] != "head_only"}
    assert len(head_lr) == 1  # every mode's head trains at the one head lr the control chose
    assert all(not d["has_adapter"] for d in runs.values() if d["config"]["mode"] == "head_only")
