"""The observed share of A&B's gain (asymviz.gain_share): Fieller's interval against its defining equation, the
paired-seed arithmetic on a synthetic run frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from asymviz.gain_share import fieller_ratio, observed_shares
from asymviz.results import ResultsError


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
    with pytest.raises(ResultsError, match="several ranks"):
        observed_shares(frame)
