"""asymviz.adapters: round trips through PEFT itself, every input form, and a corpus of bad files."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile

import numpy as np
import pytest
import torch
from conftest import random_factors, write_adapter

from asymviz.adapters import from_state_dict, load_adapter, module_name, parse_layer
from asymviz.errors import AdapterError


def peft_deltas(model) -> dict[str, torch.Tensor]:
    """PEFT's own get_delta_weight() per LoRA module, oriented (d_out, d_in) like asymviz's B @ A."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LoraLayer) and "default" in mod.scaling:
            delta = mod.get_delta_weight("default").detach()
            if isinstance(mod.base_layer, torch.nn.Embedding) or getattr(mod, "fan_in_fan_out", False):
                delta = delta.T
            out[name.removeprefix("base_model.model.")] = delta.reshape(delta.shape[0], -1)
    return out


def assert_matches_peft(folder, model, **kwargs):
    adapter = load_adapter(folder, **kwargs)
    expected = peft_deltas(model)
    assert sorted(adapter.names) == sorted(expected)
    for m in adapter:
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), expected[m.name], rtol=1e-5, atol=1e-6)
    return adapter


# ---- round trips through PEFT ---------------------------------------------------------------------------


def test_bert_rank_alpha_patterns_embedding_and_modules_to_save(peft_adapter):
    folder, model = peft_adapter(
        "bert",
        r=4,
        lora_alpha=8,
        target_modules=["query", "value", "word_embeddings"],
        rank_pattern={"layer.1.attention.self.query": 2},
        alpha_pattern={"value": 3},
        modules_to_save=["classifier"],
    )
    adapter = assert_matches_peft(folder, model)
    q1 = adapter.spec("bert.encoder.layer.1.attention.self.query")
    assert (q1.r, q1.scaling) == (2, 4.0)  # rank_pattern: alpha 8 / r 2
    assert adapter.spec("bert.encoder.layer.0.attention.self.value").scaling == pytest.approx(3 / 4)
    emb = adapter.spec("bert.embeddings.word_embeddings")
    assert emb.embedding and (emb.d_in, emb.d_out) == (64, 32)  # A: (r, vocab), B: (hidden, r)
    assert set(adapter.extras) == {"classifier.weight", "classifier.bias"}  # listed, not LoRA
    assert adapter.problems == []


def test_llama_rslora(peft_adapter):
    folder, model = peft_adapter("llama", r=4, lora_alpha=8, use_rslora=True,
                                 target_modules=["q_proj", "v_proj", "down_proj"])  # fmt: skip
    adapter = assert_matches_peft(folder, model)
    assert all(m.scaling == pytest.approx(8 / 2) for m in adapter.modules)  # α/√r
    s = adapter.summary()
    assert list(s["kind"].unique()) == ["q_proj", "v_proj", "down_proj"]
    assert list(s["layer"]) == [0, 0, 0, 1, 1, 1]


def test_gpt2_conv1d_fan_in_fan_out_with_dora(peft_adapter):
    folder, model = peft_adapter("gpt2", r=4, target_modules=["c_attn"], fan_in_fan_out=True, use_dora=True)
    adapter = assert_matches_peft(folder, model)
    m = adapter.module("transformer.h.0.attn.c_attn")
    assert (m.d_in, m.d_out) == (32, 96) and m.fan_in_fan_out
    assert m.magnitude is not None and m.magnitude.shape == (96,)
    assert adapter.summary()["dora"].all()


def test_keys_with_adapter_name_from_live_state_dict(peft_adapter):
    folder, model = peft_adapter("llama", r=4, target_modules=["q_proj"])
    live = {k: v for k, v in model.state_dict().items() if "lora_" in k}  # "...lora_A.default.weight"
    assert any(".default." in k for k in live)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    adapter = from_state_dict(live, cfg)
    expected = peft_deltas(model)
    for m in adapter:
        torch.testing.assert_close(torch.from_numpy(m.delta_weight()), expected[m.name])


def test_named_adapter_subfolders(peft_adapter):
    from peft import LoraConfig

    folder, model = peft_adapter("llama", r=4, target_modules=["q_proj"])
    model.add_adapter("second", LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    multi = folder.parent / "multi"
    model.save_pretrained(multi)
    assert load_adapter(multi).modules[0].r == 4  # the default adapter at the root
    assert load_adapter(multi, adapter_name="second").modules[0].r == 2
    assert load_adapter(multi / "second").modules[0].r == 2
    only_sub = folder.parent / "only_sub"
    shutil.copytree(multi / "second", only_sub / "second")
    assert load_adapter(only_sub).source.endswith("only_sub/second")


def test_zip_bare_safetensors_and_legacy_bin(llama_like, tmp_path):
    ref = load_adapter(llama_like)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in llama_like.iterdir():
            zf.write(f, f"my_adapter/{f.name}")
    zipped = load_adapter(archive)
    assert zipped.names == ref.names and zipped.modules[0].scaling == ref.modules[0].scaling

    bare = tmp_path / "bare" / "weights.safetensors"
    bare.parent.mkdir()
    shutil.copy(llama_like / "adapter_model.safetensors", bare)
    loose = load_adapter(bare)
    assert not loose.scaling_known and loose.modules[0].scaling == 1.0
    assert any("scaling" in p for p in loose.problems)

    from safetensors.torch import load_file

    bin_dir = tmp_path / "legacy"
    bin_dir.mkdir()
    torch.save(load_file(llama_like / "adapter_model.safetensors"), bin_dir / "adapter_model.bin")
    shutil.copy(llama_like / "adapter_config.json", bin_dir)
    legacy = load_adapter(bin_dir)
    for a, b in zip(legacy, ref):
        torch.testing.assert_close(torch.from_numpy(a.delta_weight()), torch.from_numpy(b.delta_weight()))


def test_half_precision_is_read_as_float32(make_adapter):
    folder = make_adapter(
        {"model.layers.0.self_attn.q_proj": random_factors(4, 16, 16)}, dtype=torch.bfloat16
    )
    m = next(iter(load_adapter(folder)))
    assert m.A.dtype == np.float32 and load_adapter(folder).modules[0].dtype == "BF16"


def test_names_and_layers():
    assert (
        module_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
        == "model.layers.0.self_attn.q_proj"
    )
    assert parse_layer("bert.encoder.layer.11.attention.self.query") == 11
    assert parse_layer("encoder.block.3.layer.1.SelfAttention.q") == 3
    assert parse_layer("lm_head") is None


# ---- bad input: one clear line, no crash, no code execution ----------------------------------------------


def _corrupt(folder, data: bytes):
    (folder / "adapter_model.safetensors").write_bytes(data)
    return folder


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupt"),
        (lambda b: struct.pack("<Q", 10**6) + b[8:], "header claims"),
        (lambda b: b"\x00" * 4, "not a safetensors file"),
        (lambda b: struct.pack("<Q", 5) + b"{abc}" + b[13:], "not JSON"),
        (lambda b: struct.pack("<Q", 10**12) + b[8:], "header claims"),
    ],
    ids=["truncated", "header-longer-than-file", "tiny", "bad-json", "absurd-header"],
)
def test_corrupt_safetensors(llama_like, mutate, message):
    data = (llama_like / "adapter_model.safetensors").read_bytes()
    _corrupt(llama_like, mutate(data))
    with pytest.raises(AdapterError, match=message) as err:
        load_adapter(llama_like)
    assert "adapter_model.safetensors" in str(err.value) and "\n" not in str(err.value)


class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['ASYMVIZ_PWNED'], 'w').write('x')",))


def test_pickle_is_never_executed(llama_like, tmp_path, monkeypatch):
    import pickle

    marker = tmp_path / "pwned"
    monkeypatch.setenv("ASYMVIZ_PWNED", str(marker))
    payload = pickle.dumps({"x": _Exploit()})
    # a pickle where safetensors was promised
    _corrupt(llama_like, payload)
    with pytest.raises(AdapterError, match="pickled PyTorch file, not safetensors"):
        load_adapter(llama_like)
    # a malicious legacy .bin: torch.load(weights_only=True) refuses it
    (llama_like / "adapter_model.safetensors").unlink()
    (llama_like / "adapter_model.bin").write_bytes(payload)
    with pytest.raises(AdapterError, match="the pickle asks for builtins.exec; asymviz loads tensors only"):
        load_adapter(llama_like)
    torch.save({"x": _Exploit()}, llama_like / "adapter_model.bin")  # the zip flavour of torch.save
    with pytest.raises(AdapterError, match="the pickle asks for builtins.exec") as err:
        load_adapter(llama_like)
    assert "weights_only=False" not in str(err.value)
    assert not marker.exists()


def test_mismatched_ranks_and_config_rank(make_adapter):
    A, _ = random_factors(4, 16, 16)
    _, B = random_factors(3, 16, 16)
    with pytest.raises(AdapterError, match="mismatched ranks"):
        load_adapter(make_adapter({"model.layers.0.q_proj": (A, B)}, {"r": 4}))
    with pytest.raises(AdapterError, match="config gives r=8"):
        load_adapter(make_adapter({"model.layers.0.q_proj": random_factors(4, 16, 16)}, {"r": 8}))


def test_non_finite_values_are_reported_not_fatal(make_adapter):
    from asymviz.spectra import singular_spectrum

    A, B = random_factors(4, 16, 16)
    A[0, 0] = float("nan")
    folder = make_adapter(
        {"model.layers.0.q_proj": (A, B), "model.layers.1.q_proj": random_factors(4, 16, 16)}
    )
    adapter = load_adapter(folder)
    spectrum = singular_spectrum(adapter)
    assert set(spectrum["module"]) == {"model.layers.1.q_proj"}
    assert any("non-finite" in p and "layers.0" in p for p in adapter.problems)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"r": 4, "lora_alpha": 8, "frobnicate": 1}, "unknown config field.*frobnicate"),
        ({"r": -1}, "r must be a positive integer"),
        ({"r": 4, "lora_alpha": "big"}, "lora_alpha must be"),
        ({"r": 4, "peft_type": "IA3"}, "LoRA adapters only"),
        ({"r": 4, "rank_pattern": {"q": 0}}, "rank_pattern"),
        ({"r": 4, "use_rslora": "yes"}, "use_rslora must be true or false"),
    ],
)
def test_bad_configs(make_adapter, config, message):
    folder = make_adapter({"model.layers.0.q_proj": random_factors(4, 16, 16)}, config)
    with pytest.raises(AdapterError, match=message):
        load_adapter(folder)


def test_unknown_fields_can_be_ignored(make_adapter):
    folder = make_adapter({"model.layers.0.q_proj": random_factors(4, 16, 16)}, {"new_peft_field": True})
    assert len(load_adapter(folder, strict=False)) == 1


def test_config_not_json(llama_like):
    (llama_like / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="adapter_config.json: not valid JSON"):
        load_adapter(llama_like)


def test_missing_partner_and_missing_files(make_adapter, tmp_path):
    from safetensors.torch import save_file

    folder = make_adapter({"model.layers.0.q_proj": random_factors(4, 16, 16)})
    save_file({"base_model.model.model.layers.0.q_proj.lora_A.weight": torch.zeros(4, 16)},
              folder / "adapter_model.safetensors")  # fmt: skip
    with pytest.raises(AdapterError, match="has lora_A but no lora_B"):
        load_adapter(folder)
    save_file({"model.embed.weight": torch.zeros(4, 16)}, folder / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="no LoRA weights found"):
        load_adapter(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="no adapter_model.safetensors"):
        load_adapter(tmp_path / "empty")
    with pytest.raises(AdapterError, match="no such file"):
        load_adapter(tmp_path / "nope")


def test_integer_weights_are_refused(make_adapter):
    A, B = (torch.ones(4, 16, dtype=torch.int32), torch.ones(16, 4, dtype=torch.int32))
    with pytest.raises(AdapterError, match="not a floating-point type"):
        load_adapter(make_adapter({"model.layers.0.q_proj": (A, B)}))


def test_zip_slip_symlink_bomb_and_garbage(llama_like, tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../outside.txt", "x")
    with pytest.raises(AdapterError, match="outside the archive"):
        load_adapter(evil)

    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("adapter_model.safetensors")
        info.external_attr = (0o120777) << 16  # a symlink
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(AdapterError, match="symbolic link"):
        load_adapter(link)

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("adapter_model.safetensors", b"\x00" * (20 * 2**20))
    with pytest.raises(AdapterError, match="zip bomb"):
        load_adapter(bomb)

    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(AdapterError, match="not a readable zip"):
        load_adapter(garbage)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_zip_without_adapter(tmp_path):
    archive = tmp_path / "readme.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("README.md", "hello")
    with pytest.raises(AdapterError, match="holds no adapter_model"):
        load_adapter(archive)


def test_several_adapters_in_keys_need_a_name(tmp_path):
    from safetensors.torch import save_file

    A, B = random_factors(4, 16, 16)
    tensors = {}
    for name in ("one", "two"):
        tensors[f"base_model.model.layers.0.q_proj.lora_A.{name}.weight"] = A.clone()
        tensors[f"base_model.model.layers.0.q_proj.lora_B.{name}.weight"] = B.clone()
    write_adapter(tmp_path / "x", {"layers.0.q_proj": (A, B)})
    save_file(tensors, tmp_path / "x" / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="several lora_A tensors"):
        load_adapter(tmp_path / "x")
    assert len(load_adapter(tmp_path / "x", adapter_name="two")) == 1
    with pytest.raises(AdapterError, match="no adapter named 'three'"):
        load_adapter(tmp_path / "x", adapter_name="three")
