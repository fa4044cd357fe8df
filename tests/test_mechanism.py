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
    effective_rank,
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


def test_expected_a_only_share_under_curvature_is_the_mean_of_realised_ones():
    rng = np.random.default_rng(8)
    d_in, d_out, r = 16, 32, 4
    sigma = np.diag(rng.uniform(0.2, 2.0, d_in))
    G = _rotation(d_out, 9) @ np.diag(np.arange(1, d_out + 1, dtype=float) ** -1.5) @ _rotation(d_out, 9).T
    delta = rng.standard_normal((d_out, d_in))
    draws = [realised_share(sigma, delta, "a_only", _haar_rows(r, d_out, rng).T, G) for _ in range(3000)]
    predicted, exact = predicted_share(sigma, delta, "a_only", r, G)
    assert not exact and predicted == pytest.approx(np.mean(draws), rel=0.05)
    assert predicted > 2 * r / d_out  # curvature on few output directions: far above the paper's r/d_out


def test_a_rank_r_delta_is_all_kept_by_ab():
    rng = np.random.default_rng(5)
    delta = rng.standard_normal((10, 2)) @ rng.standard_normal((2, 14))
    assert predicted_share(np.diag(rng.uniform(0.1, 2, 14)), delta, "ab", 2)[0] == pytest.approx(1.0)
    assert predicted_share(np.eye(14), delta, "ab", 1)[0] < 1.0


# ---- end to end: a store of tiny-BERT runs and the CLI ----------------------------------------------------


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
