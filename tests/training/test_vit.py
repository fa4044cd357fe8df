"""asymviz.training.vit and the image path of the engine: a tiny ViT pretrained for one epoch on a few
Fashion-MNIST images, then LoRA-adapted to the mnist task in every mode (held-out rotated digits included)."""

from __future__ import annotations

import json

import pytest
import torch

from asymviz.training.config import TrainConfig
from asymviz.training.loop import train
from asymviz.training.vit import VitConfig, pretrain_vit

TINY = VitConfig(hidden=16, layers=2, heads=2, mlp=32, patch=7, epochs=1, batch_size=32, max_train=96,
                 threads=1, device="cpu")  # fmt: skip


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    out = tmp_path_factory.mktemp("vit") / "vit-tiny"
    record = pretrain_vit(TINY, out)
    return out, record


def test_pretraining_writes_a_small_fp16_checkpoint_with_its_card(tiny_vit):
    from safetensors import safe_open
    from transformers import ViTForImageClassification

    out, record = tiny_vit
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json",
                                               "README.md", "pretraining.json"}  # fmt: skip
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    saved = json.loads((out / "pretraining.json").read_text())
    assert saved["test_accuracy"] == record["test_accuracy"] and 0 <= record["test_accuracy"] <= 1
    assert saved["data"]["n_train"] == 96 and len(saved["curves"]) == 1
    card = (out / "README.md").read_text()
    for words in (
        "asymviz pretrain-vit",
        "--max-train 96",
        "float16",
        f"{record['params']:,}",
        "Fashion-MNIST",
    ):
        assert words in card
    model = ViTForImageClassification.from_pretrained(out, dtype=torch.float32)
    assert model.config.num_channels == 1 and model.config.image_size == 28 and model.config.num_labels == 10
    assert sum(p.numel() for p in model.parameters()) == record["params"]


def test_pretraining_is_seeded(tiny_vit, tmp_path):
    _, record = tiny_vit
    again = pretrain_vit(TINY, tmp_path / "again")
    assert again["curves"] == record["curves"]


def _mnist(tiny_vit, **changes):
    base = dict(model=str(tiny_vit[0]), task="mnist", targets=("query", "value"), rank=2, alpha=4.0, steps=3,
                batch_size=8, max_train=64, max_validation=32, max_test=40, device="cpu", threads=1)  # fmt: skip
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("mode", ["ab", "b_only", "a_only"])
def test_lora_on_the_vit_in_every_mode(tiny_vit, tmp_path, mode):
    run = train(_mnist(tiny_vit, mode=mode), tmp_path / mode)
    assert run.status == "completed", run.error
    d, m = run.data, run.final_metrics
    assert d["data"]["kind"] == "image_classification" and d["head_modules"] == ["classifier"]
    assert d["targets"] in (["query", "value"], ["q_proj", "v_proj"])  # as this transformers names them
    assert d["trainable_params"]["head"] == 16 * 10 + 10
    for key in (
        "test_accuracy",
        "test_macro_f1",
        "heldout_accuracy",
        "heldout_macro_f1",
        "validation_accuracy",
    ):
        assert 0 <= m[key] <= 1
    assert d["data"]["n_heldout"] == 40 and "rotated" in d["data"]["heldout_method"]
    assert set(run.metrics().query("step == 3")["split"]) == {"train", "validation", "test", "heldout"}
    if mode != "ab":
        assert d["frozen_check"]["bit_identical"]
    split = json.loads((run.path / "split.json").read_text())
    assert split["heldout"] == split["test"]


def test_vit_adapter_reloads_in_peft_and_the_head_is_redrawn(tiny_vit, tmp_path):
    from peft import PeftModel
    from transformers import ViTForImageClassification

    from asymviz.base.batches import encode_images
    from asymviz.base.tasks import load_task
    from asymviz.training.loop import evaluate

    cfg = _mnist(tiny_vit, mode="b_only", steps=4)
    run = train(cfg, tmp_path / "run")
    task = load_task("mnist", max_train=64, max_validation=32, max_test=40)
    base = ViTForImageClassification.from_pretrained(tiny_vit[0], dtype=torch.float32)
    pretrained_head = base.classifier.weight.detach().clone()
    model = PeftModel.from_pretrained(base, run.adapter_path).eval()
    for split in ("test", "heldout"):
        enc = encode_images(task.images[split], task.split(split)["y"])
        values = evaluate(lambda idx, e=enc: model(**e.batch(idx)), enc, "image_classification")
        assert values["accuracy"] == run.final_metrics[f"{split}_accuracy"]
        assert values["loss"] == pytest.approx(run.final_metrics[f"{split}_loss"], abs=1e-5)
    init = run.load_init()
    assert len(init) == 4  # query and value of 2 layers
    from safetensors.torch import load_file

    saved = load_file(run.path / "init" / "adapter_model.safetensors")
    head = saved["base_model.model.classifier.weight"]
    assert not torch.allclose(head, pretrained_head)  # the 10-way head starts afresh, from the init seed


def test_cache_prefix_is_refused_for_images(tiny_vit, tmp_path):
    from asymviz.errors import ConfigError

    with pytest.raises(ConfigError, match="cache_prefix"):
        train(_mnist(tiny_vit, top_layers=1, cache_prefix=True), tmp_path / "x")


def test_pretrain_vit_command(tmp_path, capsys):
    from asymviz.cli.main import main

    out = tmp_path / "cli-vit"
    args = ["pretrain-vit", "--out", str(out), "--hidden", "8", "--layers", "1", "--heads", "2", "--mlp", "16",
            "--patch", "7", "--epochs", "1", "--max-train", "32", "--threads", "1", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "test accuracy" in capsys.readouterr().err
    assert (out / "README.md").exists()
