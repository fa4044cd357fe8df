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


def test_lr_grid_is_chosen_on_validation_then_used_by_every_seed(tmp_path, tiny_config):
    import json

    import pandas as pd

    from asymviz.training.sweep import read_sweeps

    cfgs = [tiny_config(mode=m, seed=s, steps=2) for s in (0, 1) for m in ("ab", "b_only")]
    store = RunStore(tmp_path)
    lrs = [1e-4, 1e-2]
    frame = sweep(cfgs, store, lrs=lrs, lr_extensions=0, name="grid")  # extensions: test_plan.py
    assert (frame["status"] == "completed").all()
    table = pd.read_csv(tmp_path / "lr_selection.csv")
    # 2 modes x 2 lrs at seed 0, and the head_only control's grid that chooses the head's lr for both
    assert len(table) == 6 and set(table["lr"]) == set(lrs)
    head = table[table["mode"] == "head_only"]
    assert len(head) == 2 and head["chosen"].sum() == 1
    head_lr = head[head["chosen"]]["lr"].iloc[0]
    assert set(frame[frame["mode"] != "head_only"]["head_lr"]) == {head_lr}
    assert (frame[frame["mode"] == "head_only"]["role"] == "lr_grid").all()  # not asked for: grid runs only
    for mode, rows in table[table["mode"] != "head_only"].groupby("mode"):
        chosen = rows[rows["chosen"]]
        assert len(chosen) == 1
        best = rows.sort_values(["value", "lr"], ascending=[False, True]).iloc[0]
        assert chosen["value"].iloc[0] == best["value"]  # the best validation accuracy wins
        mains = frame[(frame["mode"] == mode) & (frame["role"] == "main")]
        assert sorted(mains["seed"]) == [0, 1] and set(mains["lr"]) == {chosen["lr"].iloc[0]}
        loser = rows[~rows["chosen"]]["run_id"].iloc[0]
        data = json.loads((store.path(loser) / "run.json").read_text())
        assert data["role"] == "lr_grid" and data["lr_selection"]["chosen"] is False
    lora = frame[frame["mode"] != "head_only"]
    assert (lora["role"] == "lr_grid").sum() == 2  # the chosen grid run is seed 0's main run, not retrained
    entry = read_sweeps(store).iloc[-1]
    assert (
        entry["name"] == "grid"
        and entry["wall_s"] > 0
        and len(entry["trained"]) == 8
        and entry["examples"] > 0
    )

    # resumed with every run done: nothing trains, and the main runs are still released and reported
    started = {r.run_id: r.data["started_at"] for r in store.records()}
    again = sweep(cfgs, store, lrs=lrs, lr_extensions=0, name="resume")
    assert sorted(again["run_id"]) == sorted(frame["run_id"])
    assert {r.run_id: r.data["started_at"] for r in store.records()} == started
    assert read_sweeps(store).iloc[-1]["trained"] == []


def test_a_new_lr_choice_supersedes_the_main_runs_of_the_old_one(tmp_path, tiny_config):
    cfgs = [tiny_config(mode="b_only", seed=s, steps=2) for s in (0, 1)]
    store = RunStore(tmp_path)
    first = sweep(cfgs, store, lrs=[1e-6])  # a grid of one: the choice is forced
    first = first[first["mode"] == "b_only"]  # (the head_only control's grid chose the head's lr)
    assert set(first["role"]) == {"main"} and set(first["lr"]) == {1e-6}
    frame = sweep(cfgs, store, lrs=[5e-2])  # another grid of one: the choice moves
    frame = frame[frame["mode"] == "b_only"]
    assert set(frame[frame["role"] == "main"]["lr"]) == {5e-2} and len(frame) == 2
    for run_id in first["run_id"]:
        record = store.get(run_id)
        assert record.data["role"] == "lr_superseded" and record.data["superseded_by_lr"] == 5e-2
    listed = store.list()
    listed = listed[listed["mode"] == "b_only"]
    assert sorted(listed["role"]) == ["lr_superseded", "lr_superseded", "main", "main"]


def test_runs_of_a_sweep_without_grid_are_superseded_when_a_grid_chooses_another_lr(tmp_path, tiny_config):
    cfgs = [tiny_config(mode="ab", seed=s, steps=2, lr=1e-6) for s in (0, 1)]
    store = RunStore(tmp_path)
    plain = sweep(cfgs, store)  # no grid: no role
    assert plain["role"].isna().all()
    frame = sweep(cfgs, store, lrs=[5e-2])  # a grid of one other lr: the choice moves
    assert set(frame["lr"]) == {5e-2} and set(frame["head_lr"]) == {5e-2}
    for run_id in plain["run_id"]:
        assert store.get(run_id).data["role"] == "lr_superseded"
