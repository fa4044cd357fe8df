"""The mechanism test (asymviz.mechanism): closed forms, dense least-squares references, the observed-share
arithmetic and Fieller's interval, and the table end to end on runs of the tiny BERT."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from asymviz.mechanism import (
    EXTRA_COLUMNS,
    MECHANISM_COLUMNS,
    MechanismError,
    effective_rank,
    fieller_ratio,
    observed_shares,
    predicted_share,
    realised_share,
)
from asymviz.theory import TheoryConfig, expected_excess_loss, input_spectrum, target_update


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _flat(d: int, k: int, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    """Σ (d, d) with eigenvalue `scale` on k random directions and 0 elsewhere."""
    V = _rotation(d, seed)[:, :k]
    return scale * V @ V.T


def _haar_rows(r: int, d: int, rng) -> np.ndarray:
    q, upper = np.linalg.qr(rng.standard_normal((d, r)))
    return (q * np.sign(np.diag(upper))).T  # (r, d)


# ---- the theory on measured matrices -------------------------------------------------------------------


@pytest.mark.parametrize("r,k", [(2, 8), (4, 8), (8, 8), (12, 8), (3, 24)])
def test_flat_inputs_give_the_closed_forms(r, k):
    d_in, d_out = 24, 16
    sigma = _flat(d_in, k, seed=k)
    delta = np.random.default_rng(1).standard_normal((d_out, d_in))
    share, exact = predicted_share(sigma, delta, "b_only", r)
    assert exact and share == pytest.approx(min(r, k) / k, abs=1e-9)
    share, exact = predicted_share(sigma, delta, "a_only", r)
    assert exact and share == pytest.approx(r / d_out)
    assert effective_rank(sigma) == pytest.approx(k)


def test_flat_output_curvature_makes_a_only_the_mirror_image():
    d_in, d_out, r, k_out = 20, 30, 3, 6
    sigma = np.diag(np.linspace(3.0, 0.1, d_in))  # any Σ: A only's share does not see it
    delta = np.random.default_rng(2).standard_normal((d_out, d_in))
    share, exact = predicted_share(sigma, delta, "a_only", r, G=_flat(d_out, k_out, seed=5))
    assert exact and share == pytest.approx(r / k_out, abs=1e-9)
    same, _ = predicted_share(sigma, delta, "b_only", r, G=np.eye(d_out))  # G = I is the paper's
    assert same == pytest.approx(predicted_share(sigma, delta, "b_only", r)[0])


def test_b_only_share_matches_theory_expected_excess_loss():
    cfg = TheoryConfig(d_in=48, d_out=32, r=4, spectrum="power_law", decay=1.5)
    lam, delta = input_spectrum(cfg), target_update(cfg)
    ref = expected_excess_loss(cfg).set_index("mode")["relative_expected"]
    R = _rotation(cfg.d_in, 7)  # a rotated Σ with Δ rotated alike: the same problem
    share, exact = predicted_share(R @ np.diag(lam) @ R.T, delta @ R.T, "b_only", cfg.r)
    assert not exact and share == pytest.approx(1 - ref["b_only"], rel=1e-6)
    assert predicted_share(np.diag(lam), delta, "ab", cfg.r)[0] == pytest.approx(1 - ref["ab"], rel=1e-9)


def test_realised_shares_equal_dense_least_squares():
    rng = np.random.default_rng(3)
    d_in, d_out, r = 12, 9, 3
    X = rng.standard_normal((200, d_in)) * np.linspace(2, 0.2, d_in)
    sigma = X.T @ X
    delta = rng.standard_normal((d_out, d_in))
    Y = rng.standard_normal((50, d_out)) * np.linspace(1.5, 0.1, d_out)
    G = Y.T @ Y
    Gh, Sh = np.linalg.cholesky(G).T, np.linalg.cholesky(sigma).T  # GhᵀGh = G, ShᵀSh = Σ
    total = np.sum((Gh @ delta @ Sh.T) ** 2)
    A, B = _haar_rows(r, d_in, rng), _haar_rows(r, d_out, rng).T
    # B only: min over B of ‖Gh (Δ − B A) Shᵀ‖², solved as a least squares in vec(B)
    design = np.kron(A @ Sh.T, Gh).T  # vec(Gh B A Shᵀ) = ((A Shᵀ)ᵀ ⊗ Gh) vec(B)
    target = (Gh @ delta @ Sh.T).reshape(-1, order="F")
    resid = np.linalg.lstsq(design, target, rcond=None)[1][0]
    assert realised_share(sigma, delta, "b_only", A, G) == pytest.approx(1 - resid / total, rel=1e-8)
    design = np.kron(Sh, Gh @ B)  # vec(Gh B A Shᵀ) = (Sh ⊗ Gh B) vec(A)
    resid = np.linalg.lstsq(design, target, rcond=None)[1][0]
    assert realised_share(sigma, delta, "a_only", B, G) == pytest.approx(1 - resid / total, rel=1e-8)
    # G = I: the paper's A only keeps ‖UᵀΔΣ^½‖² / T
    plain = np.sum((B.T @ delta @ Sh.T) ** 2) / np.sum((delta @ Sh.T) ** 2)
    assert realised_share(sigma, delta, "a_only", B) == pytest.approx(plain, rel=1e-10)


def test_expected_b_only_share_is_the_mean_of_realised_ones():
    rng = np.random.default_rng(4)
    d, r = 32, 4
    sigma = np.diag(np.arange(1, d + 1, dtype=float) ** -1.0)
    delta = rng.standard_normal((d, d))
    draws = [realised_share(sigma, delta, "b_only", _haar_rows(r, d, rng)) for _ in range(3000)]
    predicted, exact = predicted_share(sigma, delta, "b_only", r)
    assert not exact
    assert predicted == pytest.approx(np.mean(draws), rel=0.05)  # the deterministic equivalent's accuracy
    flat = [realised_share(np.eye(d), delta, "a_only", _haar_rows(r, d, rng).T) for _ in range(2000)]
    assert np.mean(flat) == pytest.approx(r / d, abs=4 * np.std(flat) / np.sqrt(2000))


def test_a_rank_r_delta_is_all_kept_by_ab():
    rng = np.random.default_rng(5)
    delta = rng.standard_normal((10, 2)) @ rng.standard_normal((2, 14))
    assert predicted_share(np.diag(rng.uniform(0.1, 2, 14)), delta, "ab", 2)[0] == pytest.approx(1.0)
    assert predicted_share(np.eye(14), delta, "ab", 1)[0] < 1.0


# ---- the observed share ----------------------------------------------------------------------------------


def test_fieller_interval_solves_its_defining_equation():
    rng = np.random.default_rng(6)
    den = rng.normal(1.0, 0.1, 6)
    num = 0.4 * den + rng.normal(0, 0.05, 6)
    ratio, low, high, reason = fieller_ratio(num, den)
    assert ratio == pytest.approx(num.mean() / den.mean()) and reason == "" and low < ratio < high
    from scipy import stats

    cov = np.cov(num, den, ddof=1) / 6
    t2 = stats.t.ppf(0.975, 5) ** 2
    for rho in (low, high):  # (ā − ρb̄)² = t²·Var(ā − ρb̄) at both ends
        var = cov[0, 0] - 2 * rho * cov[0, 1] + rho**2 * cov[1, 1]
        assert (num.mean() - rho * den.mean()) ** 2 == pytest.approx(t2 * var, rel=1e-9)
    exact = fieller_ratio(0.5 * den, den)  # no noise in the ratio: the interval is the point
    assert exact[1] == pytest.approx(0.5) and exact[2] == pytest.approx(0.5)


def test_fieller_says_when_it_has_no_interval():
    assert np.isnan(fieller_ratio(np.array([1.0, 2.0]), np.array([-1.0, 1.2]))[1])  # gain not significant
    assert "not significantly" in fieller_ratio(np.array([1.0, 2.0]), np.array([-1.0, 1.2]))[3]
    assert np.isnan(fieller_ratio(np.array([1.0]), np.array([-1.0]))[0])  # A&B no better: nothing to share
    ratio, low, _, reason = fieller_ratio(np.array([1.0]), np.array([2.0]))
    assert ratio == 0.5 and np.isnan(low) and reason == "a single seed: no interval"


def _runs(losses: dict, metric: str = "test_loss") -> pd.DataFrame:
    rows = [{"model": "m", "group": "", "task": "t", "mode": mode, "rank": 4, "seed": s, "init_seed": s, metric: v}
            for mode, values in losses.items() for s, v in enumerate(values) if v is not None]  # fmt: skip
    return pd.DataFrame(rows)


def test_observed_shares_on_a_synthetic_run_frame():
    losses = {"head_only": [1.0, 1.1, 0.9, 1.0], "ab": [0.6, 0.8, 0.5, None],  # seed 3: no ab, not paired
              "b_only": [0.7, 0.85, 0.6, 0.1], "a_only": [0.9, 1.0, 0.8, 0.2]}  # fmt: skip
    out = observed_shares(_runs(losses)).set_index("mode")
    gain_ab = np.array([0.4, 0.3, 0.4])
    assert out.loc["b_only", "observed"] == pytest.approx(np.array([0.3, 0.25, 0.3]).sum() / gain_ab.sum())
    assert out.loc["a_only", "observed"] == pytest.approx(0.3 / gain_ab.sum())
    assert (out["n_seeds"] == 3).all() and out.loc["b_only", "gain_ab"] == pytest.approx(gain_ab.mean())
    assert out.loc["b_only", "gap_observed"] == pytest.approx((0.2 + 0.15 + 0.2) / gain_ab.sum())
    assert (
        out.loc["b_only", "observed_low"] < out.loc["b_only", "observed"] < out.loc["b_only", "observed_high"]
    )
    acc = {m: [1 - v if v is not None else None for v in vals] for m, vals in losses.items()}
    flipped = observed_shares(_runs(acc, "test_accuracy"), "test_accuracy").set_index("mode")
    assert flipped["observed"].to_numpy() == pytest.approx(out["observed"].to_numpy())  # oriented alike


def test_observed_shares_refuse_two_ranks_of_one_mode():
    frame = _runs({"head_only": [1.0, 1.0], "ab": [0.5, 0.5], "b_only": [0.6, 0.6]})
    frame.loc[frame["mode"] == "b_only", "rank"] = [4, 8]
    with pytest.raises(MechanismError, match="several ranks"):
        observed_shares(frame)


# ---- end to end: a store of tiny-BERT runs and the CLI ----------------------------------------------------


@pytest.fixture(scope="module")
def mechanism_store(tmp_path_factory, train_assets):
    from asymviz.training.config import TrainConfig
    from asymviz.training.loop import train

    store = tmp_path_factory.mktemp("mechanism_store")
    for mode in ("head_only", "ab", "b_only", "a_only"):
        for seed in (0, 1, 2):
            cfg = TrainConfig(model=str(train_assets["bert"]), task=str(train_assets["task"]), mode=mode, rank=2,
                              alpha=4.0, targets=("value",), top_layers=1, head=("classifier",), steps=4,
                              batch_size=4, lr=5e-2, seed=seed, device="cpu", threads=1)  # fmt: skip
            train(cfg, store / cfg.run_id())
    return store


def test_mechanism_table_on_tiny_bert_runs(mechanism_store):
    from asymviz.mechanism import mechanism_lines, mechanism_table

    frame = mechanism_table(mechanism_store)
    assert list(frame.columns) == [*MECHANISM_COLUMNS, *EXTRA_COLUMNS]
    assert list(frame["mode"]) == ["b_only", "a_only"]
    row = frame.iloc[0]
    assert row["module"].endswith("layer.1.attention.self.value") and (row["d_in"], row["d_out"]) == (32, 32)
    assert row["rank"] == 2 and row["d_over_r"] == 16 and row["n_seeds"] == 3 and row["n_delta"] == 3
    assert row["n_realised"] == 3 and 0 <= row["realised"] <= 1 and row["predicted_ab"] == pytest.approx(1.0)
    assert frame.iloc[1]["predicted"] == pytest.approx(2 / 32) and frame.iloc[1]["exact"]
    assert frame["gap_predicted"].iloc[0] == pytest.approx(frame["predicted"].iloc[0] - 2 / 32)
    lines = mechanism_lines(frame)
    assert len(lines) == 1 and f"{row['predicted']:.2f}" in lines[0] and "B only − A only" in lines[0]


def test_run_moments_are_the_previous_layers_output_tokens(mechanism_store, train_assets):
    """Σ of the top value projection = Σ over real tokens of the layer below's output, on the training split."""
    import torch

    from asymviz.base.models import load_model, resolve_model
    from asymviz.mechanism import mechanism_runs, run_moments
    from asymviz.runs import RunRecord
    from asymviz.training.config import TrainConfig
    from asymviz.training.workspace import Workspace

    runs = mechanism_runs(mechanism_store)
    run = RunRecord.load(runs.loc[runs["mode"] == "ab", "path"].iloc[0])
    mom = run_moments(run, batch_size=5)
    config = TrainConfig.from_dict(run.config)
    ws = Workspace()
    task = ws.task(config)
    model, tokenizer = load_model(resolve_model(config.model), "classification", num_labels=2)
    enc = ws.encoded(config, task, tokenizer, resolve_model(config.model))["train"]
    with torch.no_grad():
        hidden = model.eval()(
            input_ids=enc.ids, attention_mask=enc.mask, output_hidden_states=True
        ).hidden_states
    x = hidden[1][enc.mask.bool()].double()  # (tokens, 32): the input of layer 1
    assert mom.n_tokens == x.shape[0]
    torch.testing.assert_close(
        mom.inputs, x.T @ x, rtol=1e-4, atol=1e-4 * float(x.square().sum()) / x.shape[0]
    )


def _main(argv, capsys):
    from asymviz.cli.main import main

    status = main(argv)
    return status, capsys.readouterr()


def test_cli_errors_on_a_store_without_mechanism_runs(tmp_path, capsys):
    run = tmp_path / "store" / "fine_foods_minilm_ab_r8_s0_x"
    run.mkdir(parents=True)
    config = {"targets": ["query", "value"], "top_layers": None, "mode": "ab", "task": "fine_foods"}
    (run / "run.json").write_text(json.dumps({"status": "completed", "mode": "ab", "task": "fine_foods",
                                              "model": "minilm", "rank": 8, "seed": 0, "config": config}))  # fmt: skip
    for store in (tmp_path / "store", tmp_path / "missing"):
        status, out = _main(["mechanism", str(store)], capsys)
        assert status == 2 and out.out == ""
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "no mechanism-test runs" in _main(["mechanism", str(tmp_path / "store")], capsys)[1].err


def test_cli_prints_the_table_as_csv(mechanism_store, capsys):
    status, out = _main(
        ["mechanism", str(mechanism_store), "--format", "csv", "--max-examples", "20"], capsys
    )
    assert status == 0
    frame = pd.read_csv(__import__("io").StringIO(out.out))
    assert list(frame.columns) == [*MECHANISM_COLUMNS, *EXTRA_COLUMNS] and len(frame) == 2


def test_base_model_of_finds_a_shipped_models_folder(tmp_path):
    from asymviz.mechanism import base_model_of
    from asymviz.runs import RunRecord

    run_dir = tmp_path / "cached_runs" / "vit_mechanism" / "mnist_run"
    run_dir.mkdir(parents=True)
    run = RunRecord(run_dir, {"config": {"model": ".gpu_store/models/vit-fmnist"}})
    with pytest.raises(MechanismError, match="not here"):
        base_model_of(run)
    shipped = tmp_path / "cached_runs" / "models" / "vit-fmnist"
    shipped.mkdir(parents=True)
    (shipped / "config.json").write_text("{}")
    assert base_model_of(run) == str(shipped)
    assert base_model_of(run, "elsewhere") == "elsewhere"
    assert base_model_of(RunRecord(run_dir, {"config": {"model": "minilm"}})) == "minilm"
