"""asymviz.claims: the verdicts on known tables."""

import math

import pandas as pd

from asymviz.claims import claim_lines, compare_modes, verdict


def _summary(rows):
    return pd.DataFrame(rows, columns=["task", "mode", "mean", "se"])


def test_verdict_bands():
    assert verdict(0.004, 0.0) == "within noise"  # under half a point
    assert verdict(0.03, 0.01) == "better"  # beyond 2 se
    assert verdict(-0.03, 0.02) == "within noise"  # inside 2 se
    assert verdict(-0.03, float("nan")) == "worse"


def test_known_table():
    s = _summary([("t1", "ab", 0.90, 0.003), ("t1", "b_only", 0.892, 0.004), ("t1", "a_only", 0.80, 0.004),
                  ("t2", "ab", 0.90, 0.001), ("t2", "b_only", 0.70, 0.001), ("t2", "a_only", 0.70, 0.001)])  # fmt: skip
    v = compare_modes(s)
    assert len(v) == 6
    row = v[(v["task"] == "t1") & (v["first"] == "b_only") & (v["second"] == "ab")].iloc[0]
    assert math.isclose(row["diff"], -0.008) and math.isclose(row["se"], 0.005)
    assert row["verdict"] == "within noise"
    assert v.set_index(["task", "first", "second"])["verdict"].to_dict() == {
        ("t1", "b_only", "ab"): "within noise", ("t1", "a_only", "ab"): "worse", ("t1", "b_only", "a_only"): "better",
        ("t2", "b_only", "ab"): "worse", ("t2", "a_only", "ab"): "worse", ("t2", "b_only", "a_only"): "within noise",
    }  # fmt: skip
    lines = claim_lines(v)
    assert "on 1 of 2 task(s)" in lines[0] and "clearly worse on t2" in lines[0]
    assert "better on 1 of 2" in lines[1] and "within noise on 1" in lines[1]


def test_lower_is_better_flips_the_sign():
    s = _summary([("lm", "ab", 2.0, 0.01), ("lm", "b_only", 2.5, 0.01)])
    v = compare_modes(s, lower_is_better=True)
    assert v.iloc[0]["diff"] < 0 and v.iloc[0]["verdict"] == "worse"
    assert "does **not** hold" in claim_lines(v)[0]


def test_a_single_seed_is_called_anecdotal():
    s = pd.DataFrame([("t", "ab", 0.8, float("nan"), 1), ("t", "b_only", 0.8, float("nan"), 1)],
                     columns=["task", "mode", "mean", "se", "n"])  # fmt: skip
    lines = claim_lines(compare_modes(s))
    assert "single seed" in lines[-1]
    s["n"] = 3
    s["se"] = 0.01
    assert not any("single seed" in line for line in claim_lines(compare_modes(s)))
