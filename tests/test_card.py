"""The adapter card (asymviz.card, asymviz.init_null, asymviz.cli.card): known answers on constructed adapters,
PEFT-made inits, and two shipped runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from asymviz.adapters import load_adapter
from asymviz.card import CARD_COLUMNS, adapter_card
from asymviz.cli import main
from asymviz.init_null import a_features, draw_init, sample_null
from tests.conftest import random_factors, tiny_model, write_adapter

SHIPPED = Path(__file__).resolve().parent.parent / "cached_runs"
# the shipped runs that keep adapter/ and init/ (a b_only run of minilm_tasks ships no init/: its A is adapter/'s)
B_ONLY = (
    SHIPPED / "minilm_mechanism" / "fine_foods_minilm_b_only_r8_s0_e33101a7"
)  # a_init orthogonal, A frozen
AB = SHIPPED / "minilm_tasks" / "fine_foods_minilm_ab_r8_s0_82b7b6a6"


def peft_init(tmp_path, seed: int = 0, **lora_kwargs):
    """A PEFT adapter straight after get_peft_model (PEFT's own init), saved: (folder, PeftModel)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], **lora_kwargs)
    model = get_peft_model(tiny_model("llama"), cfg)
    folder = tmp_path / f"init{seed}"
    model.save_pretrained(folder)
    return folder, model


def edit_factors(folder: Path, out: Path, fn) -> Path:
    """Copy a PEFT folder, replacing each module's (A, B) by fn(name, A, B)."""
    adapter = load_adapter(folder)
    modules = {
        m.name: fn(m.name, torch.from_numpy(m.A.copy()), torch.from_numpy(m.B.copy())) for m in adapter
    }
    return write_adapter(out, modules, adapter.config.raw)


def orthonormal(d: int, k: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(d, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q.float()  # (d, k)


# ---- is A random? --------------------------------------------------------------------------------------------


def test_peft_default_init_reads_random_and_no_update(tmp_path):
    folder, _ = peft_init(tmp_path)
    card = adapter_card(folder)
    assert card.adapter["a_init_family"] == "kaiming"
    assert (card.modules["a_verdict"] == "random").all(), card.modules[["module", "a_percentile"]]
    assert card.modules["a_test"].eq("init_draws").all()
    assert card.modules["no_update"].all()  # PEFT's B starts at zero
    assert (card.modules["update_norm"] == 0).all()
    assert card.modules["suggested_rank"].isna().all()
    assert card.adapter["a_verdict"] == "random" and card.adapter["n_no_update"] == len(card.modules)


def test_peft_gaussian_init_reads_random_under_its_own_law_only(tmp_path):
    folder, _ = peft_init(tmp_path, init_lora_weights="gaussian")
    card = adapter_card(folder)
    assert card.adapter["a_init_family"] == "gaussian_peft"
    assert (card.modules["a_verdict"] == "random").all()
    wrong = adapter_card(folder, a_init="kaiming")  # N(0, 1/r²) is far larger than U(±1/√d_in)
    assert (wrong.modules["a_verdict"] == "learned").all()


@pytest.mark.parametrize(
    "push",
    [
        lambda A: A * 5,  # scaled up
        lambda A: A[:1] + 0.05 * A,  # rows nearly collinear (a low-rank A)
        lambda A: torch.cat([A[:1] * 4, A[1:]]),  # one row grown
    ],
    ids=["scaled_5x", "collinear_rows", "one_row_grown"],
)
def test_a_pushed_off_its_init_reads_learned(tmp_path, push):
    folder, _ = peft_init(tmp_path)
    g = torch.Generator().manual_seed(3)
    pushed = edit_factors(
        folder, tmp_path / "pushed", lambda n, A, B: (push(A), torch.randn(B.shape, generator=g))
    )
    card = adapter_card(pushed)
    assert (card.modules["a_verdict"] == "learned").all(), card.modules[["module", "a_percentile"]]
    assert (card.modules["a_percentile"] > 99).all()
    assert card.adapter["a_verdict"] == "learned"


def test_bare_safetensors_without_config_is_unknown(tmp_path):
    folder, _ = peft_init(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "lora.safetensors").write_bytes((folder / "adapter_model.safetensors").read_bytes())
    card = adapter_card(bare / "lora.safetensors")
    assert card.adapter["a_init_family"] is None and card.adapter["format"] == "safetensors"
    assert (card.modules["a_verdict"] == "unknown").all() and card.modules["a_percentile"].isna().all()
    assert card.adapter["a_verdict"] == "unknown"
    assert card.adapter["alpha_pattern"] == {}  # no lora_alpha known


def test_unknown_init_lora_weights_is_unknown(make_adapter):
    path = make_adapter({"q_proj": random_factors(4, 32, 32)}, {"init_lora_weights": "pissa"})
    card = adapter_card(path)
    assert card.modules["a_verdict"].tolist() == ["unknown"]
    assert "pissa" in card.adapter["a_init_source"]


def test_null_is_calibrated_and_rounding_aware():
    """Fresh draws land above the 99th percentile about 1 % of the time, also for an fp16-rounded
    orthonormal A (whose rounding a float32 null would call structure); a 10 % larger A is caught (the norm of a kaiming 8×256 A varies by ~1 %)."""
    for family, r, d_in, dtype in (("kaiming", 8, 256, "F32"), ("orthogonal", 8, 384, "F16")):
        null = sample_null(family, r, d_in, dtype, seed=0)
        g = torch.Generator().manual_seed(11)
        store = {"F32": torch.float32, "F16": torch.float16}[dtype]
        draws = draw_init(family, 300, r, d_in, g).to(store).float()
        pct = np.array([null.percentile(a_features(A)) for A in draws])
        assert (pct > 99).mean() < 0.04, (family, (pct > 99).mean())
        assert 35 < np.median(pct) < 65
        assert null.percentile(a_features(draws[0] * 1.10)) == 100.0
    assert math.isnan(null.percentile(a_features(torch.zeros(8, 384))))


def test_asymviz_b_only_run_reads_random_with_init_and_against_the_null():
    if not SHIPPED.is_dir():
        pytest.skip("no shipped runs in this checkout")
    card = adapter_card(B_ONLY)  # run folder: exact drift against init/
    assert card.adapter["a_test"] == "init" and card.adapter["a_init_family"] == "orthogonal"
    assert (card.modules["a_verdict"] == "random").all() and (card.modules["a_rel_change"] == 0).all()
    null_only = adapter_card(load_adapter(B_ONLY / "adapter"), a_init="orthogonal")
    assert null_only.modules["a_test"].eq("init_draws").all()
    assert null_only.adapter["a_verdict"] == "random"
    assert (null_only.modules["a_verdict"] == "random").sum() >= len(null_only.modules) - 1


def test_asymviz_ab_run_reads_learned_and_its_init_random():
    if not SHIPPED.is_dir():
        pytest.skip("no shipped runs in this checkout")
    card = adapter_card(AB)
    assert (card.modules["a_verdict"] == "learned").all() and (card.modules["a_rel_change"] > 0.1).all()
    assert not card.modules["no_update"].any()
    init = adapter_card(load_adapter(AB / "init"))  # PEFT's kaiming init saved in fp16: the null agrees
    assert init.adapter["a_verdict"] == "random" and init.modules["no_update"].all()


# ---- did it learn? --------------------------------------------------------------------------------------------


def test_update_norm_matches_dense_and_peft(tmp_path, peft_adapter):
    folder, model = peft_adapter("llama", r=4, lora_alpha=12, target_modules=["q_proj", "v_proj"])
    card = adapter_card(folder)
    adapter = load_adapter(folder)
    for m in adapter:
        row = card.modules.set_index("module").loc[m.name]
        dense = torch.linalg.norm(
            m.scaling * torch.from_numpy(m.B.astype(np.float64) @ m.A.astype(np.float64))
        )
        assert row["update_norm"] == pytest.approx(float(dense), rel=1e-5)
    for name, layer in model.named_modules():
        if hasattr(layer, "get_delta_weight") and "default" in getattr(layer, "lora_A", {}):
            key = name.removeprefix("base_model.model.")
            peft_norm = float(torch.linalg.norm(layer.get_delta_weight("default").detach()))
            assert card.modules.set_index("module").loc[key, "update_norm"] == pytest.approx(
                peft_norm, rel=1e-5
            )


def test_zero_b_module_is_no_update_among_trained_peers(make_adapter):
    modules = {f"model.layers.{i}.self_attn.q_proj": random_factors(4, 32, 32, seed=i) for i in range(4)}
    A, B = modules["model.layers.2.self_attn.q_proj"]
    modules["model.layers.2.self_attn.q_proj"] = (A, torch.zeros_like(B))
    A, B = modules["model.layers.3.self_attn.q_proj"]
    modules["model.layers.3.self_attn.q_proj"] = (A, B * 1e-5)  # negligible next to its peers
    card = adapter_card(make_adapter(modules))
    assert card.modules["no_update"].tolist() == [False, False, True, True]
    assert card.modules["suggested_rank"].isna().tolist() == [False, False, True, True]
    assert card.adapter["n_no_update"] == 2
    assert "model.layers.2.self_attn.q_proj" not in card.adapter["rank_pattern"]


def test_update_rel_against_base_weights(tmp_path):
    from asymviz.probes.base_weights import base_weight

    folder, model = peft_init(tmp_path)
    g = torch.Generator().manual_seed(5)
    trained = edit_factors(folder, tmp_path / "t", lambda n, A, B: (A, torch.randn(B.shape, generator=g)))
    base = tiny_model("llama")
    card = adapter_card(trained, base=base)
    adapter = load_adapter(trained)
    for m in adapter:
        expected = float(
            torch.linalg.norm(torch.from_numpy(m.delta_weight())) / torch.linalg.norm(base_weight(base, m))
        )
        assert card.modules.set_index("module").loc[m.name, "update_rel"] == pytest.approx(expected, rel=1e-5)
    assert card.adapter["base_weights"] is True


# ---- rank use ---------------------------------------------------------------------------------------------------


def test_suggested_rank_reproduces_the_energy_threshold(make_adapter):
    s = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05])  # ΔW's singular values, chosen
    energy = np.cumsum(s.numpy() ** 2) / (s.numpy() ** 2).sum()  # 0.753, 0.941, 0.988, 0.9996, ...
    U, V = orthonormal(48, 8, 1), orthonormal(40, 8, 2)
    B, A = U * s.sqrt(), (V * s.sqrt()).T  # ΔW = U diag(s) Vᵀ with scaling 1 (alpha = r)
    rng = torch.Generator().manual_seed(0)
    # rotate the r-space: ΔW unchanged, A and B no longer balanced
    R = torch.linalg.qr(torch.randn(8, 8, generator=rng))[0]
    B, A = B @ R * 2, R.T @ A / 2
    path = make_adapter({"model.layers.0.mlp.down_proj": (A, B)}, {"lora_alpha": 8})
    row = adapter_card(path).modules.iloc[0]
    expect = {t: int(np.searchsorted(energy, t) + 1) for t in (0.90, 0.95, 0.99)}
    assert (
        (row["energy_rank_90"], row["energy_rank_95"], row["energy_rank_99"])
        == (2, 3, 4)
        == tuple(expect.values())
    )
    assert row["suggested_rank"] == 2
    assert row["stable_rank"] == pytest.approx(float((s**2).sum() / s[0] ** 2), rel=1e-5)
    assert row["utilisation"] == pytest.approx(row["stable_rank"] / 8)
    assert row["suggested_params"] == 2 * (40 + 48)
    assert adapter_card(path, energy=0.99).modules.iloc[0]["suggested_rank"] == 4
    assert row["flags"] == ""  # neither a spike (0.75 < 0.9) nor balanced (rotated and rescaled)


def test_rank_pattern_is_accepted_by_peft(tmp_path):
    from peft import LoraConfig, get_peft_model

    folder, _ = peft_init(tmp_path)
    # ΔW's singular values per kind (A orthonormal rows, B orthogonal columns scaled, scaling 2):
    # q: energy 0.8, 0.99998 -> rank 2; v: rank 1; down: 1, .09, .04, .01 -> 0.877, 0.956 -> rank 2
    spectra = {
        "q_proj": (1.0, 0.5, 0.01, 0.0),
        "v_proj": (1.0, 0.0, 0.0, 0.0),
        "down_proj": (1.0, 0.3, 0.2, 0.1),
    }

    def shaped(name, A, B):
        s = torch.tensor(spectra[name.rsplit(".", 1)[-1]])
        return orthonormal(A.shape[1], 4, 3).T, orthonormal(B.shape[0], 4, 7) * s

    card = adapter_card(edit_factors(folder, tmp_path / "shaped", shaped))
    pattern = card.adapter["rank_pattern"]
    expected = {
        m: {"q_proj": 2, "v_proj": 1, "down_proj": 2}[m.rsplit(".", 1)[-1]] for m in card.modules["module"]
    }
    assert pattern == expected
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], rank_pattern=pattern,
                     alpha_pattern=card.adapter["alpha_pattern"])  # fmt: skip
    model = get_peft_model(tiny_model("llama"), cfg)
    got = {n.removeprefix("base_model.model."): m.r["default"] for n, m in model.named_modules() if hasattr(m, "r")
           and isinstance(getattr(m, "r", None), dict)}  # fmt: skip
    assert {k: got[k] for k in pattern} == pattern
    scal = {n.removeprefix("base_model.model."): m.scaling["default"] for n, m in model.named_modules()
            if isinstance(getattr(m, "scaling", None), dict)}  # fmt: skip
    assert all(scal[k] == pytest.approx(2.0) for k in pattern)  # alpha_pattern keeps α/r = 8/4


# ---- flags ------------------------------------------------------------------------------------------------------


def test_svd_split_adapter_is_flagged_balanced_and_lora_is_not(make_adapter):
    g = torch.Generator().manual_seed(0)
    W = (
        torch.randn(48, 40, generator=g)
        @ torch.diag(torch.logspace(0, -2, 40))
        @ torch.randn(40, 40, generator=g)
    )
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    r = 6
    B, A = U[:, :r] * S[:r].sqrt(), S[:r].sqrt()[:, None] * Vh[:r]  # the √σ split
    lora = random_factors(r, 40, 48, seed=1)
    card = adapter_card(make_adapter({"layers.0.fc1": (A, B), "layers.1.fc1": lora}, {"lora_alpha": r}))
    flags = card.modules.set_index("module")["flags"]
    assert "balanced" in flags["layers.0.fc1"].split(",") and "balanced" not in flags["layers.1.fc1"]
    assert card.modules.set_index("module").loc["layers.0.fc1", "balance_gap"] < 1e-4


def test_spike_and_loud_flags(make_adapter):
    g = torch.Generator().manual_seed(0)
    modules = {}
    for i in range(5):  # rank-1 ΔW: σ₁²/Σσ² = 1
        u, v = torch.randn(32, 1, generator=g), torch.randn(1, 32, generator=g)
        A = torch.cat([v, 1e-3 * torch.randn(3, 32, generator=g)])
        modules[f"model.layers.{i}.self_attn.q_proj"] = (A, torch.cat([u, torch.zeros(32, 3)], 1))
    A, B = random_factors(4, 32, 32, seed=9)  # full-rank and 100x larger than its peers
    modules["model.layers.5.self_attn.q_proj"] = (A, B * 100 / B.norm() * 32)
    card = adapter_card(make_adapter(modules)).modules.set_index("module")["flags"]
    assert all("spike" in card[f"model.layers.{i}.self_attn.q_proj"] for i in range(5))
    assert card["model.layers.5.self_attn.q_proj"] == "loud"
    assert not any("loud" in card[f"model.layers.{i}.self_attn.q_proj"] for i in range(5))


def test_swapped_factors_without_config_are_flagged_orientation(tmp_path):
    A, B = random_factors(4, 32, 32)
    # lora_A (32, 4), lora_B (4, 32)
    swapped = write_adapter(tmp_path / "sw", {"q_proj": (B, A)}, config=False)
    card = adapter_card(swapped / "adapter_model.safetensors")
    assert card.modules.iloc[0]["r"] == 32 and card.modules.iloc[0]["flags"] == "orientation"
    assert card.modules.iloc[0]["a_verdict"] == "unknown"


# ---- output -----------------------------------------------------------------------------------------------------


def test_frame_and_json_layout(llama_like):
    card = adapter_card(llama_like)
    assert list(card.modules.columns[: len(CARD_COLUMNS)]) == CARD_COLUMNS
    data = json.loads(card.to_json())
    assert list(data) == ["adapter", "modules"]
    assert len(data["modules"]) == 6
    for row in data["modules"]:
        assert list(row)[: len(CARD_COLUMNS)] == CARD_COLUMNS
        assert isinstance(row["flags"], list)
    assert {"format", "path", "n_modules", "r", "n_no_update", "a_verdicts"} <= set(data["adapter"])


def test_cli_json_table_and_errors(llama_like, tmp_path, capsys):
    assert main(["card", str(llama_like), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["adapter"]["n_modules"] == 6
    assert main(["card", str(llama_like)]) == 0
    out = capsys.readouterr().out
    assert "a_verdicts:" in out and "suggested_rank" in out
    assert main(["card", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert main(["card", str(llama_like), "--energy", "1.5"]) == 2
    assert capsys.readouterr().err.startswith("error: --energy")
