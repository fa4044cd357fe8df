"""Hub repo ids (kind 6), against a fake Hub cache folder with HF_HUB_OFFLINE=1: nothing touches the network."""

from __future__ import annotations

import shutil

import pytest
from conftest import random_factors, write_adapter

from asymviz.adapters import load_adapter
from asymviz.adapters.hub import looks_like_repo_id
from asymviz.errors import AdapterError

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "models--someorg--tiny-lora"
    write_adapter(
        repo / "snapshots" / SHA,
        {"model.layers.0.self_attn.q_proj": random_factors(4, 16, 16)},
        {"lora_alpha": 8},
    )
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return repo


def test_repo_id_from_cache(hub_cache):
    adapter = load_adapter("someorg/tiny-lora")
    assert adapter.source == "someorg/tiny-lora" and adapter.format == "peft"
    assert adapter.spec("model.layers.0.self_attn.q_proj").scaling == 2.0
    assert len(load_adapter(f"someorg/tiny-lora@{SHA}")) == 1


def test_offline_and_not_cached(hub_cache):
    with pytest.raises(AdapterError, match="HF_HUB_OFFLINE is set and the Hub cache has no copy"):
        load_adapter("someorg/other-lora")
    with pytest.raises(AdapterError, match="HF_HUB_OFFLINE is set"):
        load_adapter("someorg/tiny-lora@v2")


def test_what_looks_like_a_repo_id(hub_cache):
    assert looks_like_repo_id("someorg/tiny-lora") and looks_like_repo_id("a/b@main")
    assert (
        not looks_like_repo_id("a/b/c")
        and not looks_like_repo_id("../x")
        and not looks_like_repo_id("x.safetensors")
    )
    (hub_cache.parent.parent / "someorg").mkdir()  # a local folder of that name wins over the Hub
    shutil.copytree(hub_cache / "snapshots" / SHA, hub_cache.parent.parent / "someorg" / "tiny-lora")
    assert not looks_like_repo_id("someorg/tiny-lora")
