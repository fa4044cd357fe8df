"""asymviz.adapters.safetensors_file and files: structure before sniffing, bounded headers, regular files only."""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_corpus import deep, join_safetensors, pad_header, split_safetensors  # noqa: E402

from asymviz.adapters import load_adapter  # noqa: E402
from asymviz.adapters.files import open_regular  # noqa: E402
from asymviz.adapters.safetensors_file import check_safetensors  # noqa: E402
from asymviz.errors import AdapterError, display_name  # noqa: E402


@pytest.mark.parametrize("length", [640, 896, 1152, 1408, 640 + 65536])
def test_headers_whose_length_looks_like_a_pickle_load(llama_like, length):
    """A header of 640 bytes starts the file with 80 02: a pickle's first bytes. Structure decides first."""
    path = llama_like / "adapter_model.safetensors"
    header, body = split_safetensors(path.read_bytes())
    data = pad_header(header, body, length)
    assert data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    path.write_bytes(data)
    kept = json.loads(data[8 : 8 + length])
    adapter = load_adapter(llama_like)
    assert len(adapter) == len(kept) // 2 and len(adapter) >= 1
    from safetensors.torch import load_file

    reference = load_file(path)  # the safetensors library agrees it is a valid file
    for m in adapter:
        torch.testing.assert_close(
            torch.from_numpy(m.A), reference[f"base_model.model.{m.name}.lora_A.weight"]
        )


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h, b: join_safetensors(h, b + b"\0" * 8), "trailing bytes"),
        (lambda h, b: join_safetensors(('{"__metadata__": ' + deep(5000) + "}").encode(), b), "nested too deeply"),
        (lambda h, b: join_safetensors(json.dumps(h)[:-1].encode() + b', "x": ' + b"9" * 5000 + b"}", b), "digits"),
        (lambda h, b: join_safetensors(json.dumps(h)[:-1].encode() + b', "__metadata__": {}}', b), "appears twice"),
        (lambda h, b: join_safetensors({k: {**v, "dtype": ["F32"]} if k != "__metadata__" else v for k, v in h.items()}, b),
         "unknown dtype"),
    ],
    ids=["trailing", "deep", "bignum", "duplicate-key", "dtype-list"],
)  # fmt: skip
def test_hostile_headers_are_one_line(llama_like, mutate, message):
    path = llama_like / "adapter_model.safetensors"
    header, body = split_safetensors(path.read_bytes())
    header.setdefault("__metadata__", {"format": "pt"})
    path.write_bytes(mutate(header, body))
    with pytest.raises(AdapterError, match=message) as err:
        check_safetensors(path)
    assert "\n" not in str(err.value)


@pytest.fixture
def no_hang():
    def fail(*_):
        raise TimeoutError("blocked")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifo_and_devices_are_refused_without_blocking(tmp_path, no_hang):
    fifo = tmp_path / "adapter_model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(AdapterError, match="FIFO"):
        open_regular(fifo)
    with pytest.raises(AdapterError, match="FIFO"):
        load_adapter(fifo)
    (tmp_path / "dev.safetensors").symlink_to("/dev/zero")
    with pytest.raises(AdapterError, match="character device"):
        load_adapter(tmp_path / "dev.safetensors")
    with pytest.raises(AdapterError, match="/proc"):
        open_regular("/proc/self/status")


def test_display_name_keeps_messages_on_one_line():
    assert display_name("x\ny.safetensors") == "x\\ny.safetensors"
    long = display_name("a" * 4000)
    assert len(long) == 119 and "…" in long
    path = Path("/tmp") / "x\ny.safetensors"
    assert "\n" not in display_name(path.name)


def test_pickle_renamed_safetensors_is_still_named(llama_like):
    path = llama_like / "adapter_model.safetensors"
    path.write_bytes(b"\x80\x02}q\x00." + struct.pack("<Q", 0))
    with pytest.raises(AdapterError, match="pickled PyTorch file"):
        check_safetensors(path)
