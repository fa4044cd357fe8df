"""asymviz.theory: the simulation of the paper's linear-regression asymmetry against its closed forms."""

import numpy as np
import pytest

from asymviz.errors import ConfigError
from asymviz.theory import (
    TheoryConfig,
    compare_with_closed_form,
    expected_by_rank,
    expected_excess_loss,
    input_spectrum,
    projection_weights,
    simulate_excess_loss,
    target_update,
)


def _compare(cfg):
    draws = simulate_excess_loss(cfg)
    return compare_with_closed_form(draws, expected_excess_loss(cfg)).set_index("mode"), draws


@pytest.mark.parametrize(
    "cfg",
    [
        TheoryConfig(d_in=32, d_out=48, r=4, spectrum="flat", draws=1500, seed=1),
        TheoryConfig(d_in=48, d_out=32, r=3, spectrum="low_rank", k=12, draws=1500, seed=2),
        TheoryConfig(
            d_in=40, d_out=40, r=5, spectrum="power_law", decay=1.5, delta_rank=6, draws=1500, seed=3
        ),
        TheoryConfig(d_in=40, d_out=24, r=2, spectrum="exponential", decay=2.0, draws=1500, seed=4),
    ],
    ids=["flat", "low_rank", "power_law", "exponential"],
)
def test_simulation_agrees_with_closed_forms(cfg):
    cmp, _ = _compare(cfg)
    # A only: (1 - r/d_out)·T is exact for every spectrum: agreement within sampling noise
    a = cmp.loc["a_only"]
    assert a["exact"]
    assert abs(a["z"]) < 4.5, a
    b = cmp.loc["b_only"]
    if b["exact"]:
        assert abs(b["z"]) < 4.5, b
    else:  # deterministic equivalent: a close approximation, not exact
        assert (
            abs(b["simulated_mean"] - b["closed_form"]) < 0.03 * b["closed_form"] + 4 * b["simulated_se"]
        ), b


def test_known_answers():
    # isotropic inputs, square layer: both frozen-factor solutions lose 1 - r/d in expectation
    exp = expected_excess_loss(TheoryConfig(d_in=64, d_out=64, r=16, spectrum="flat")).set_index("mode")
    assert exp.loc["b_only", "relative_expected"] == pytest.approx(0.75)
    assert exp.loc["a_only", "relative_expected"] == pytest.approx(0.75)
    # inputs on k <= r directions: a random A loses nothing, every draw
    cfg = TheoryConfig(d_in=64, d_out=64, r=8, spectrum="low_rank", k=6, draws=50)
    cmp, draws = _compare(cfg)
    assert np.allclose(draws.loc[draws["mode"] == "b_only", "relative_excess"], 0.0, atol=1e-9)
    assert cmp.loc["b_only", "closed_form"] == 0.0
    # and on k > r directions: 1 - r/k
    exp = expected_excess_loss(TheoryConfig(d_in=64, d_out=64, r=4, spectrum="low_rank", k=16)).set_index(
        "mode"
    )
    assert exp.loc["b_only", "relative_expected"] == pytest.approx(1 - 4 / 16)
    # r = d: both factors square and orthogonal, everything is recovered
    exp = expected_excess_loss(TheoryConfig(d_in=8, d_out=8, r=8, spectrum="power_law")).set_index("mode")
    assert exp["relative_expected"].abs().max() < 1e-12


def test_single_draw_formulas_match_projector_forms():
    """B* = ΔΣQᵀ(QΣQᵀ)⁻¹ gives the projector form ‖ΔΣ^½(I−P)‖², A* = UᵀΔ gives ‖(I−UUᵀ)ΔΣ^½‖²."""
    cfg = TheoryConfig(d_in=12, d_out=10, r=3, spectrum="power_law", draws=1, seed=7)
    lam, delta = input_spectrum(cfg), target_update(cfg)
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((12, 3)))[0].T  # (r, d_in), orthonormal rows
    S = np.diag(lam)
    B = delta @ S @ Q.T @ np.linalg.inv(Q @ S @ Q.T)
    direct = np.trace((delta - B @ Q) @ S @ (delta - B @ Q).T)
    M = delta @ np.sqrt(S)
    Z = np.sqrt(S) @ Q.T
    P = Z @ np.linalg.inv(Z.T @ Z) @ Z.T
    assert direct == pytest.approx(np.linalg.norm(M @ (np.eye(12) - P)) ** 2)
    # B* is the least-squares optimum: any other B does worse
    for _ in range(5):
        B2 = B + 1e-3 * rng.standard_normal(B.shape)
        assert np.trace((delta - B2 @ Q) @ S @ (delta - B2 @ Q).T) > direct


def test_projection_weights():
    p, exact = projection_weights(np.ones(10), 3)
    assert exact and np.allclose(p, 0.3)
    p, exact = projection_weights(np.array([2.0, 2.0, 0.0, 0.0]), 3)
    assert exact and np.allclose(p, [1, 1, 0, 0])
    p, exact = projection_weights(1.0 / np.arange(1, 21), 5)
    assert not exact and p.sum() == pytest.approx(5) and np.all(np.diff(p) <= 0)


def test_frames_and_ab_is_a_lower_bound():
    cfg = TheoryConfig(d_in=24, d_out=16, r=4, spectrum="power_law", draws=30)
    draws = simulate_excess_loss(cfg)
    assert list(draws.columns) == ["draw", "mode", "excess_loss", "relative_excess"]
    assert len(draws) == 60 and set(draws["mode"]) == {"b_only", "a_only"}
    best = expected_excess_loss(cfg).set_index("mode").loc["ab", "relative_expected"]
    assert (draws["relative_excess"] >= best - 1e-9).all()  # no single-factor solution beats Eckart-Young
    curve = expected_by_rank(cfg)
    assert list(curve.columns[:3]) == ["r", "mode", "expected"]
    for mode, part in curve.groupby("mode"):
        assert (np.diff(part["relative_expected"].to_numpy()) <= 1e-12).all(), mode  # more rank never hurts


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="^r:"):
        TheoryConfig(d_in=8, d_out=8, r=9)
    with pytest.raises(ConfigError, match="^spectrum:"):
        TheoryConfig(spectrum="weird")
    with pytest.raises(ConfigError, match="^k:"):
        TheoryConfig(d_in=8, d_out=8, r=2, k=9)
    with pytest.raises(ConfigError, match="^draws:"):
        TheoryConfig(draws=0)
