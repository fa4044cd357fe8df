"""asymviz.bound: the paper's Lemma 4.5 bound, by mode."""

from __future__ import annotations

import math

import pytest

from asymviz.bound import bound_value, generalization_bound
from asymviz.errors import ConfigError


def test_known_value_and_mode_order():
    shapes = [(8, 384, 384)] * 12  # MiniLM q, v at r = 8
    frame = generalization_bound(shapes, n=4000, q=32, sigma=0.5).set_index("mode")
    expected_ab = math.sqrt(2 * 8 * 32 * 0.25 * math.log(2) / 4000 * 12 * (384 + 384))
    assert frame.loc["ab", "bound"] == pytest.approx(expected_ab)
    assert frame.loc["b_only", "bound"] == pytest.approx(expected_ab / math.sqrt(2))
    assert frame.loc["ab", "trainable_params"] == 12 * 8 * 768
    assert frame.loc["ab", "sum_dims"] == 12 * 768


def test_b_only_is_tighter_when_d_out_smaller():
    frame = generalization_bound([(4, 100, 10)], n=10).set_index("mode")
    assert frame.loc["b_only", "bound"] < frame.loc["a_only", "bound"] < frame.loc["ab", "bound"]


@pytest.mark.parametrize(
    "kwargs, field", [({"n": 0}, "n"), ({"n": 10, "q": -1}, "q"), ({"n": 10, "sigma": float("nan")}, "sigma")]
)
def test_bad_inputs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"^{field} must be"):
        generalization_bound([(4, 8, 8)], **kwargs)


def test_bound_value_scales_with_sqrt_params():
    assert bound_value(400, n=100) == pytest.approx(2 * bound_value(100, n=100))
