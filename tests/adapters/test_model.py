"""asymviz.adapters.model: the non-finite check every loaded module goes through."""

import pytest
import torch

from asymviz.adapters.model import MAX_ABS, count_nonfinite


def _reference(t: torch.Tensor) -> int:
    """The definition: entries that are NaN, ±inf or beyond ±MAX_ABS."""
    return int(sum(1 for x in t.reshape(-1).tolist() if not abs(x) <= MAX_ABS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "bad",
    [[], [float("nan")], [float("inf"), -float("inf")], [2 * MAX_ABS], [-3e20, 1e30], [float("nan"), 5e15]],
)
def test_count_nonfinite_matches_the_definition(dtype, bad):
    t = torch.randn(64, 300, generator=torch.Generator().manual_seed(0), dtype=dtype)
    for i, value in enumerate(bad):
        t[i, 7 * i] = value
    assert count_nonfinite(t) == _reference(t) == len(bad)
    assert count_nonfinite(t.T) == len(bad)  # a transposed view (mlx-lm's layout)
    assert count_nonfinite(t[:, ::2]) == _reference(t[:, ::2])  # a strided view: the exact count


def test_many_large_finite_values_are_not_counted():
    # Σt² overflows float32 and exceeds MAX_ABS², yet every entry is within range: the exact count says 0
    t = torch.full((1000, 10), 0.9 * MAX_ABS, dtype=torch.float32)
    assert count_nonfinite(t) == 0
    t[3, 3] = 1.1 * MAX_ABS
    assert count_nonfinite(t) == 1
    assert count_nonfinite(torch.zeros(0, 5)) == 0
