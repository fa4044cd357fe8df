"""asymviz.similarity_design: the 2×2 cells on adapters whose answer is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from asymviz import similarity_design as S
from asymviz.adapters import load_adapter
from asymviz.results import ResultsError
from asymviz.runs import RunStore
from asymviz.similarity import orthonormal_basis, subspace_similarity
from tests.conftest import write_adapter

D, R_, MODULES = 32, 4, ("layer.0.query", "layer.1.value")
TASKS, INITS, SEEDS = ("t1", "t2"), (0, 1, 2), (0, 1)


def factors(init_seed: int, task: str, seed: int) -> dict:
    """A depends on the init only, B on the task only (seed changes neither): A's similarity is 1 exactly in
    the same-init cells, B's in the same-task cells; across inits (tasks) they are independent Gaussians."""
    out = {}
    for m, name in enumerate(MODULES):
        ga = torch.Generator().manual_seed(int(1000 * init_seed + m))
        gb = torch.Generator().manual_seed(5000 + 100 * TASKS.index(task) + m)
        scale = 1.0 + 0.1 * int(seed)  # the seed rescales, which leaves every subspace as it is
        out[name] = (scale * torch.randn(R_, D, generator=ga), scale * torch.randn(D, R_, generator=gb))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim2x2")
    for task in TASKS:
        for i in INITS:
            for s in SEEDS:
                run_id = f"{task}_i{i}_s{s}"
                folder = root / "similarity" / run_id
                write_adapter(folder / "adapter", factors(i, task, s), {"target_modules": ["query", "value"]})
                data = {"schema": 1, "run_id": run_id, "status": "completed", "model": "tiny", "task": task,
                        "mode": "ab", "rank": R_, "seed": s, "init_seed": i, "role": "main",
                        "config": {"lr": 1e-3}, "metrics": {"test_accuracy": 0.5}}  # fmt: skip
                (folder / "run.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="module")
def pairs(store):
    return S.similarity_pairs(S.design_runs(RunStore(store).list()))


def test_every_pair_is_classified(pairs):
    n = len(TASKS) * len(INITS) * len(SEEDS)
    assert list(pairs.columns) == list(S.PAIR_COLUMNS)
    assert len(pairs) == 2 * n * (n - 1) // 2 and list(dict.fromkeys(pairs["which"])) == ["A", "B"]
    a = pairs[pairs["which"] == "A"]
    same_both = a[a["same_init"] & a["same_task"]]
    assert (same_both["seed_1"] != same_both["seed_2"]).all()  # same init, same task: only the seed differs
    assert len(same_both) == len(TASKS) * len(INITS)
    counts = a.groupby(["same_init", "same_task"]).size().to_dict()
    assert counts == {(True, True): 6, (True, False): 12, (False, True): 24, (False, False): 24}
    assert (pairs["modules"] == 2).all() and (pairs["k"] == R_).all()
    assert np.allclose(pairs["random_baseline"], R_ / D)


def test_pair_similarity_is_the_module_mean_of_the_reference(pairs, tmp_path):
    row = pairs[(pairs["which"] == "B") & ~pairs["same_task"]].iloc[0]
    a1, a2 = (load_adapter(write_adapter(tmp_path / f"a{n}", factors(row[f"init_seed_{n}"], row[f"task_{n}"],
                                                                    row[f"seed_{n}"]))) for n in (1, 2))  # fmt: skip
    ref = np.mean([subspace_similarity(orthonormal_basis(a1.module(n), "B"), orthonormal_basis(a2.module(n), "B"))
                   for n in a1.names])  # fmt: skip
    assert row["similarity"] == pytest.approx(ref, abs=1e-6)
    assert 0.05 < ref < 0.6  # two independent Gaussian B's: not the same-task 1


def test_cells_known_by_construction(pairs):
    cells = S.similarity_2x2(pairs, n_boot=2000)
    assert list(cells.columns) == [*S.CELL_COLUMNS, *S.CELL_EXTRA]
    c = cells.set_index(["which", "same_init", "same_task"])
    for st in (True, False):
        assert c.loc[("A", True, st), "mean"] == pytest.approx(1.0, abs=1e-6)
        assert c.loc[("A", True, st), ["ci_low", "ci_high"]].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    for si in (True, False):
        assert c.loc[("B", si, True), "mean"] == pytest.approx(1.0, abs=1e-6)
    other = c.loc[("A", False, False)]
    assert other["ci_low"] <= other["mean"] <= other["ci_high"] < 0.6  # independent 4-dim subspaces of R^32
    assert (
        other["n_pairs"] == 24 and other["n_runs"] == 12 and other["random_baseline"] == pytest.approx(R_ / D)
    )
    assert ((cells["n_boot"] > 1900) & (cells["n_boot"] <= 2000)).all()  # draws holding a pair of the cell
    again = S.similarity_2x2(pairs, n_boot=2000)
    pd.testing.assert_frame_equal(cells, again)  # seeded: reproducible


def test_contrasts_tell_init_from_task(pairs):
    con = S.similarity_contrasts(pairs, n_boot=2000).set_index(["which", "contrast"])
    assert list(con.columns) == list(S.CONTRAST_COLUMNS[2:])
    assert con.loc[("A", "same init - other init"), "verdict"] == "higher"
    assert con.loc[("B", "same task - other task"), "verdict"] == "higher"
    assert con.loc[("B-A", "B - A, other init, same task"), "verdict"] == "higher"
    assert con.loc[("B-A", "B - A, same init, other task"), "verdict"] == "lower"
    assert con.loc[("A", "same init, other task - random"), "estimate"] == pytest.approx(1 - R_ / D, abs=1e-6)
    cells = S.similarity_2x2(pairs, n_boot=2000).set_index(["which", "same_init", "same_task"])["mean"]
    init_effect = (
        cells["A", True, True] + cells["A", True, False] - cells["A", False, True] - cells["A", False, False]
    ) / 2
    assert con.loc[("A", "same init - other init"), "estimate"] == pytest.approx(init_effect)


def test_vertex_bootstrap_weights_against_explicit_resampling():
    rng = np.random.default_rng(0)
    n = 5
    i, j = np.triu_indices(n, 1)
    values = rng.random(len(i))
    draw = np.array([0, 0, 2, 3, 3])  # run 0 and run 3 drawn twice, runs 1 and 4 not at all
    counts = np.bincount(draw, minlength=n)[None, :].astype(float)
    sim = dict(zip(zip(i, j), values))
    explicit = [sim[min(a, b), max(a, b)] for p, a in enumerate(draw) for b in draw[p + 1 :] if a != b]
    got = S.vertex_bootstrap_means(i, j, values, counts)
    assert got[0] == pytest.approx(np.mean(explicit))
    assert np.isnan(S.vertex_bootstrap_means(i, j, values, np.array([[5.0, 0, 0, 0, 0]])))[0]


def test_design_runs_refuses_what_has_no_cell(store, tmp_path):
    runs = RunStore(store).list()
    with pytest.raises(ResultsError, match="fewer than two"):
        S.design_runs(runs, mode="b_only")
    twice = pd.concat([runs, runs.iloc[[0]].assign(run_id="copy")], ignore_index=True)
    with pytest.raises(ResultsError, match="same configuration twice"):
        S.design_runs(twice)
    with pytest.raises(ResultsError, match="several ranks"):
        S.design_runs(
            pd.concat([runs, runs.iloc[[0]].assign(run_id="r8", rank=8, seed=9)], ignore_index=True)
        )
    with pytest.raises(ResultsError):
        S.similarity_2x2(pd.DataFrame(columns=list(S.PAIR_COLUMNS)))


def test_cli_similarity_2x2_prints_the_library_tables(store, pairs, capsys):
    import io

    from asymviz.cli import main

    for table, want in (("cells", S.similarity_2x2(pairs)), ("contrasts", S.similarity_contrasts(pairs))):
        assert (
            main(["runs", "similarity-2x2", "--store", str(store), "--table", table, "--format", "csv"]) == 0
        )
        got = pd.read_csv(io.StringIO(capsys.readouterr().out))
        assert list(got.columns) == list(want.columns)
        assert np.allclose(got["ci_low"], want["ci_low"]) and np.allclose(got.iloc[:, 4], want.iloc[:, 4])
    assert main(["runs", "similarity-2x2", "--store", str(store), "--mode", "b_only"]) == 2
    assert "fewer than two" in capsys.readouterr().err
