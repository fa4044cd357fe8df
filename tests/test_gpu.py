"""GPU checks (marker `gpu`; run on a CUDA machine with `python -m pytest -m gpu`): each mode trains on CUDA
in bf16 autocast, the frozen factor stays bit-identical, and the stored adapter analyses like any other."""

from __future__ import annotations

import json

import pytest
import torch

from asymviz.spectra import singular_spectrum
from asymviz.training import train
from asymviz.training.config import MODES

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_trains_on_cuda(tmp_path, tiny_config, mode):
    run = train(tiny_config(mode=mode, device="cuda", precision="auto", steps=5), tmp_path / "run")
    data = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run.status == "completed" and data["device"].startswith("cuda")
    assert data["precision"] == "bf16" and data["metrics"]["peak_memory_kind"] != "rss"
    if mode != "ab":
        assert data["frozen_check"]["bit_identical"]
    spectrum = singular_spectrum(run.load_adapter())
    assert spectrum["sigma"].notna().all()


def test_analyses_accept_cuda_built_adapters(tmp_path, tiny_config):
    """An adapter trained on the GPU reloads on the CPU with the same ΔW spectrum as its tensors say."""
    run = train(tiny_config(mode="ab", device="cuda", steps=3), tmp_path / "run")
    adapter = run.load_adapter()
    module = next(iter(adapter))
    dense = torch.linalg.svdvals(torch.from_numpy(module.delta_weight()).double())[: module.r]
    got = singular_spectrum(adapter, which="delta")
    got = got[got.module == module.name]["sigma"].to_numpy()
    assert got == pytest.approx(dense.numpy(), rel=1e-4, abs=1e-6)
