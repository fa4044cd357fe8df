"""asymviz.drift: a frozen factor is unchanged and similar to its init; a moved one reports its change."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_factors

from asymviz.adapters import load_adapter
from asymviz.drift import drift_from_init
from asymviz.errors import AdapterError

NAME = "model.layers.0.self_attn.q_proj"


def test_frozen_a_and_trained_b(make_adapter):
    A0, _ = random_factors(4, 32, 24)
    B = torch.randn(24, 4)
    init = load_adapter(make_adapter({NAME: (A0, torch.zeros(24, 4))}))
    trained = load_adapter(make_adapter({NAME: (A0.clone(), B)}))
    d = drift_from_init(trained, init).set_index("which")
    assert d.loc["A", "unchanged"] and d.loc["A", "rel_change"] == 0
    assert d.loc["A", "similarity_to_init"] == pytest.approx(1, abs=1e-5)
    assert not d.loc["B", "unchanged"] and math.isnan(d.loc["B", "rel_change"])  # B0 = 0
    assert d.loc["B", "abs_change"] == pytest.approx(float(torch.linalg.norm(B)), rel=1e-5)
    assert math.isnan(d.loc["B", "similarity_to_init"])


def test_relative_change_known(make_adapter):
    A0, B0 = random_factors(4, 32, 24)
    init = load_adapter(make_adapter({NAME: (A0, B0)}))
    moved = load_adapter(make_adapter({NAME: (1.5 * A0, B0)}))
    d = drift_from_init(moved, init).set_index("which")
    assert d.loc["A", "rel_change"] == pytest.approx(0.5, rel=1e-5)
    assert d.loc["A", "similarity_to_init"] == pytest.approx(1, abs=1e-5)  # same row space


def test_shape_mismatch(make_adapter):
    init = load_adapter(make_adapter({NAME: random_factors(4, 32, 24)}))
    other = load_adapter(make_adapter({NAME: random_factors(4, 16, 24)}))
    with pytest.raises(AdapterError, match="differ"):
        drift_from_init(other, init)
