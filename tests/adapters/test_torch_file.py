"""asymviz.adapters.torch_file: legal torch.save variants load to the same numbers; hostile ones get one line."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_corpus import _big_endian_torch_zip, _compressed_torch_zip, _System, _torch_bytes  # noqa: E402

from asymviz.adapters.torch_file import torch_load  # noqa: E402
from asymviz.errors import AdapterError  # noqa: E402


@pytest.fixture
def state():
    g = torch.Generator().manual_seed(0)
    return {"base_model.model.l.0.q.lora_A.weight": torch.randn(4, 16, generator=g),
            "base_model.model.l.0.q.lora_B.weight": torch.randn(8, 4, generator=g)}  # fmt: skip


@pytest.mark.parametrize(
    "write",
    [
        lambda s: _torch_bytes(s, zip_format=True),
        lambda s: _torch_bytes(s, zip_format=False),  # the pre-1.6 single-stream format
        _compressed_torch_zip,  # records deflated: read through mmap these were garbage
        _big_endian_torch_zip,  # byteorder "big", data byte-swapped
        lambda s: _torch_bytes({k: torch.nn.Parameter(v) for k, v in s.items()}, zip_format=True),
        lambda s: _torch_bytes({"state_dict": s}, zip_format=True),
    ],
    ids=["zip", "legacy", "compressed", "big-endian", "parameters", "state_dict"],
)
def test_legal_checkpoints_give_the_saved_values(tmp_path, state, write):
    path = tmp_path / "adapter_model.bin"
    path.write_bytes(write(state))
    loaded = torch_load(path)
    assert set(loaded) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(loaded[key].detach(), value, rtol=0, atol=0)


def test_a_blocked_global_is_named_and_no_unpickling_advice(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = tmp_path / "adapter_model.bin"
    for data in (
        pickle.dumps({"x": _System(f"touch {marker}")}),
        _torch_bytes({"x": _System(f"touch {marker}")}, True),
    ):
        path.write_bytes(data)
        with pytest.raises(AdapterError) as err:
            torch_load(path)
        assert (
            str(err.value)
            == "adapter_model.bin: refused: the pickle asks for os.system; asymviz loads tensors only"
        )
    assert not marker.exists()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x02" + b"]" * 100_000 + b".", "not a readable PyTorch checkpoint"),
        (pickle.dumps(5), "not a readable PyTorch checkpoint"),
        (b"hello", "not a PyTorch checkpoint"),
    ],
)
def test_malformed_pickles_are_one_line(tmp_path, data, message):
    path = tmp_path / "adapter_model.bin"
    path.write_bytes(data)
    with pytest.raises(AdapterError, match=message) as err:
        torch_load(path)
    assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)


def test_a_zip_bomb_inside_a_checkpoint_is_refused_before_inflating(tmp_path):
    import zipfile

    out = io.BytesIO()
    src = zipfile.ZipFile(io.BytesIO(_torch_bytes({"a": torch.zeros(2)}, True)))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            data = src.read(info)
            zf.writestr(
                info.filename, data + (b"\0" * 50 * 2**20 if info.filename.endswith("/data/0") else b"")
            )
    path = tmp_path / "bomb.bin"
    path.write_bytes(out.getvalue())
    with pytest.raises(AdapterError, match="zip bomb"):
        torch_load(path)


def test_a_strided_view_that_would_expand_is_refused(tmp_path):
    from asymviz.adapters.tensors import DictReader

    huge = torch.zeros(4).as_strided((10**6, 10**6), (0, 0))  # 10¹² elements over 16 bytes
    path = tmp_path / "adapter_model.bin"
    path.write_bytes(_torch_bytes({"base_model.model.x.lora_A.weight": huge}, True))
    with pytest.raises(AdapterError, match="storage holds 16"):
        DictReader(torch_load(path), "adapter_model.bin")
