"""asymviz.adapters.tensors: the readers give numpy arrays with the stored values, and the Arena's slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from asymviz.adapters.tensors import Arena, DictReader, SafetensorsReader


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(5, 7, generator=g),
        "f64": torch.randn(3, 4, generator=g, dtype=torch.float64),
        "f16": torch.randn(6, 2, generator=g).half(),
        "bf16": torch.randn(4, 9, generator=g).bfloat16(),
        "empty": torch.zeros(0, 3),
        "i64": torch.arange(6).reshape(2, 3),
    }


def expected(t: torch.Tensor) -> np.ndarray:
    """The stored values as numpy: bfloat16 widened to float32 (exact), every other dtype as it is."""
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def test_safetensors_reader_gives_the_stored_values_as_numpy(tensors, tmp_path):
    save_file(tensors, tmp_path / "t.safetensors")
    reader = SafetensorsReader(tmp_path / "t.safetensors")
    keys = list(tensors)
    for arena in (None, Arena()):
        for key, got in zip(keys, reader.get_many(keys, arena=arena), strict=True):
            want = expected(tensors[key])
            assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape, key
            np.testing.assert_array_equal(got, want)
    assert reader.dtype("bf16") == "BF16" and reader.shape("bf16") == (4, 9)


def test_dict_reader_converts_once_and_detaches(tensors):
    params = {
        k: torch.nn.Parameter(v, requires_grad=False) for k, v in tensors.items() if v.is_floating_point()
    }
    params["f32"].requires_grad_(True)
    reader = DictReader(params, "<test>")
    keys = list(params)
    for key, got in zip(keys, reader.get_many(keys), strict=True):
        np.testing.assert_array_equal(got, expected(tensors[key]))
    assert reader.dtype("bf16") == "bfloat16"
    (f32,) = reader.get_many(["f32"])
    assert np.shares_memory(f32, params["f32"].detach().numpy())  # no copy where the dtype allows


def test_arena_slices_do_not_overlap_and_survive_growth():
    arena = Arena()
    first = arena.take(100)
    first[:] = 1
    second = arena.take(10_000)  # grows: first stays in the old buffer, untouched
    second[:] = 2
    third = arena.take(7)
    third[:] = 3
    assert (first == 1).all() and (second == 2).all() and (third == 3).all()
    assert all((s.ctypes.data - s.base.ctypes.data) % Arena.ALIGN == 0 for s in (first, second, third))
    arena.reset()
    again = arena.take(10_000)  # after reset: the largest buffer again, from its start, nothing new allocated
    assert again.base is third.base and again.ctypes.data == third.base.ctypes.data
