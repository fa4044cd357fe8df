"""asymviz.spectra: known answers, and agreement with densified ΔW."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_factors

from asymviz.adapters import load_adapter
from asymviz.spectra import group_summary, singular_spectrum, spectrum_summary


def one_module(make_adapter, A, B, **config):
    return load_adapter(make_adapter({"model.layers.0.self_attn.q_proj": (A, B)}, config))


def test_rank_one_product_has_one_nonzero_singular_value(make_adapter):
    u, v = torch.randn(40, 1), torch.randn(1, 30)
    A = torch.cat([v, 2 * v, -v, 0.5 * v])  # (4, 30), rank 1
    B = torch.cat([u, u, u, u], dim=1)  # (40, 4), rank 1
    adapter = one_module(make_adapter, A, B, r=4, lora_alpha=4)
    spec = singular_spectrum(adapter, which="delta")
    sigma = spec["sigma"].to_numpy()
    expected = float(torch.linalg.norm(B @ A, 2))
    assert sigma[0] == pytest.approx(expected, rel=1e-5)
    assert (sigma[1:] < 1e-5 * sigma[0]).all()
    summary = spectrum_summary(adapter, which="delta")
    assert summary["rank"].item() == 1 and summary["stable_rank"].item() == pytest.approx(1.0, rel=1e-4)


def test_matches_dense_svd_for_every_factor(llama_like):
    adapter = load_adapter(llama_like)
    spec = singular_spectrum(adapter)
    for m in adapter:
        for which, M in (
            ("A", torch.from_numpy(m.A)),
            ("B", torch.from_numpy(m.B)),
            ("delta", torch.from_numpy(m.delta_weight())),
        ):
            got = spec[(spec.module == m.name) & (spec.which == which)]["sigma"].to_numpy()
            want = torch.linalg.svdvals(M.double())[: m.r].numpy()
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_doubling_alpha_doubles_delta_spectrum_only(make_adapter):
    A, B = random_factors(4, 24, 20)
    one = singular_spectrum(one_module(make_adapter, A, B, r=4, lora_alpha=8))
    two = singular_spectrum(one_module(make_adapter, A, B, r=4, lora_alpha=16))
    for which, factor in (("delta", 2.0), ("A", 1.0), ("B", 1.0)):
        np.testing.assert_allclose(
            two[two.which == which]["sigma"], factor * one[one.which == which]["sigma"], rtol=1e-5
        )


def test_rslora_scales_by_alpha_over_sqrt_r(make_adapter):
    A, B = random_factors(16, 24, 20)
    plain = singular_spectrum(one_module(make_adapter, A, B, r=16, lora_alpha=16), which="delta")["sigma"]
    rs = singular_spectrum(
        one_module(make_adapter, A, B, r=16, lora_alpha=16, use_rslora=True), which="delta"
    )["sigma"]
    np.testing.assert_allclose(rs, plain * (16 / 4) / (16 / 16), rtol=1e-5)  # α/√r = 4 vs α/r = 1


def test_columns_and_cumulative_energy(llama_like):
    spec = singular_spectrum(load_adapter(llama_like))
    assert list(spec.columns) == ["module", "layer", "kind", "which", "k", "sigma", "sigma_rel", "energy_cum"]
    last = spec.groupby(["module", "which"])["energy_cum"].last()
    np.testing.assert_allclose(last, 1.0, rtol=1e-6)
    assert (spec.groupby(["module", "which"])["sigma"].apply(lambda s: (np.diff(s) <= 1e-6).all())).all()
    assert spec["layer"].dtype == "Int64" and set(spec["layer"]) == {0, 1}


def test_summary_known_answers(make_adapter):
    # B with orthogonal columns of equal norm, A with orthonormal rows: all singular values equal
    Q, _ = torch.linalg.qr(torch.randn(30, 4))
    A = Q.T.contiguous()  # (4, 30) orthonormal rows
    B = 3 * torch.linalg.qr(torch.randn(20, 4))[0]  # (20, 4), σ = 3
    s = spectrum_summary(one_module(make_adapter, A, B, r=4, lora_alpha=4), top_k=2).set_index("which")
    assert s.loc["A", "effective_rank"] == pytest.approx(4, rel=1e-5)
    assert s.loc["B", "spectral_norm"] == pytest.approx(3, rel=1e-5)
    assert s.loc["delta", "fro_norm"] == pytest.approx(3 * math.sqrt(4), rel=1e-5)
    assert s.loc["delta", "energy_top_k"] == pytest.approx(0.5, rel=1e-5)
    assert (s.loc["delta", "rows"], s.loc["delta", "cols"]) == (20, 30)


def test_zero_b_has_empty_spectrum_measures(make_adapter):
    A, _ = random_factors(4, 24, 20)
    s = spectrum_summary(one_module(make_adapter, A, torch.zeros(20, 4))).set_index("which")
    assert (
        s.loc["B", "rank"] == 0
        and s.loc["delta", "effective_rank"] == 0
        and math.isnan(s.loc["delta", "energy_top1"])
    )


def test_group_summary_by_layer_and_kind(llama_like):
    summary = spectrum_summary(load_adapter(llama_like))
    by_layer = group_summary(summary, "layer")
    assert set(by_layer["layer"]) == {0, 1} and (by_layer["modules"] == 3).all()
    by_kind = group_summary(summary, "kind")
    assert set(by_kind["kind"]) == {"q_proj", "v_proj", "down_proj"} and (by_kind["modules"] == 2).all()
    with pytest.raises(ValueError):
        group_summary(summary, "module")


def test_single_and_multi_worker_agree(llama_like):
    adapter = load_adapter(llama_like)
    np.testing.assert_allclose(
        singular_spectrum(adapter, workers=1)["sigma"], singular_spectrum(adapter, workers=4)["sigma"]
    )


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16, torch.float64])
def test_spectra_command_never_imports_torch(make_adapter, tmp_path, dtype):
    """`asymviz spectra` on a safetensors adapter (float32, bfloat16, float16, float64 files) reads and
    analyses it on numpy: no torch (most of a small command's time), nor transformers, peft, streamlit,
    plotly, scipy or sklearn; measured with python -X importtime, and the numbers are the dense SVD's."""
    import os
    import subprocess
    import sys

    A, B = random_factors(4, 32, 24, seed=5)
    folder = make_adapter({"model.layers.0.self_attn.q_proj": (A, B)}, {"lora_alpha": 8}, dtype=dtype)
    env = dict(os.environ, ASYMVIZ_NO_PROGRESS="1")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "asymviz", "spectra", str(folder), "--format", "csv"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert {"numpy", "pandas", "asymviz"} <= imported
    assert not imported & {"torch", "transformers", "peft", "streamlit", "plotly", "scipy", "sklearn"}
    frame = pd.read_csv(io.StringIO(out.stdout), comment="#")
    stored_A, stored_B = (M.to(dtype or M.dtype).double() for M in (A, B))  # what the file holds, exactly
    for which, M in (("A", stored_A), ("B", stored_B), ("delta", 2.0 * stored_B @ stored_A)):
        want = torch.linalg.svdvals(M)[:4].numpy()
        got = frame[frame["which"] == which]["sigma"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == torch.float64 else 1e-4)


def test_spectra_are_computed_once_per_adapter(llama_like, monkeypatch):
    adapter = load_adapter(llama_like)
    spectrum = singular_spectrum(adapter, which=("delta", "A"))
    assert list(dict.fromkeys(spectrum["which"])) == ["delta", "A"]  # the order asked for

    def no_more_reads(spec):
        raise AssertionError(f"{spec.name} read again")

    monkeypatch.setattr(adapter, "_load", no_more_reads)
    summary = spectrum_summary(adapter)  # from the first call's spectra
    fresh = spectrum_summary(load_adapter(llama_like))
    pd.testing.assert_frame_equal(summary, fresh)
