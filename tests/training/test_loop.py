"""asymviz.training.loop: tiny runs in every mode write a complete, reloadable run folder."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from asymviz.base.batches import batch_order
from asymviz.errors import ConfigError
from asymviz.runs import RunStore
from asymviz.training.loop import evaluate, macro_f1, train
from asymviz.training.workspace import Workspace

MODES = ("ab", "b_only", "a_only")


def _reloaded_eval(run, split="test"):
    """Load the base model fresh, PeftModel.from_pretrained the run's adapter, evaluate `split` (full forward)."""
    from peft import PeftModel

    from asymviz.base.batches import encode
    from asymviz.base.models import load_model, resolve_model
    from asymviz.base.tasks import load_task

    cfg = run.config
    task = load_task(cfg["task"], cfg["split_seed"], cfg["holdout"])
    base, tok = load_model(resolve_model(cfg["model"]), task.task_type, num_labels=max(task.num_labels, 2))
    model = PeftModel.from_pretrained(base, run.adapter_path).eval()
    enc = encode(task.split(split), tok, task.task_type, cfg["max_length"])
    return evaluate(lambda idx: model(**enc.batch(idx)), enc, task.task_type), model, enc


@pytest.mark.parametrize("mode", MODES)
def test_a_tiny_run_writes_everything(tmp_path, tiny_config, mode):
    cfg = tiny_config(mode=mode, eval_every=2)
    run = train(cfg, tmp_path / "run")
    assert run.status == "completed"
    data = json.loads((tmp_path / "run" / "run.json").read_text())
    assert data["progress"] == {"step": 3, "total_steps": 3, "phase": "done"}
    assert data["config"] == cfg.to_dict() and data["seed"] == 0 and data["device"] == "cpu"
    assert set(data["versions"]) >= {"torch", "transformers", "peft", "python"}
    assert data["head_trained"] and data["head_modules"] == ["pooler", "classifier"]
    assert (
        data["trainable_params"]["total"]
        == data["trainable_params"]["lora"] + data["trainable_params"]["head"]
    )
    assert set(data["timings"]) >= {"train_s", "eval_s", "wall_s"}
    for key in ("test_accuracy", "test_macro_f1", "validation_accuracy", "examples_per_s", "peak_memory_mb"):
        assert data["metrics"][key] is not None
    assert data["error"] is None
    if mode == "ab":
        assert data["frozen_check"] is None
    else:
        assert data["frozen_check"] == {
            "factor": "A" if mode == "b_only" else "B",
            "modules": 4,
            "bit_identical": True,
        }

    frame = run.metrics()
    losses = frame[(frame.split == "train") & (frame.metric == "loss")]
    assert losses["step"].tolist() == [1, 2, 3]
    assert set(frame[frame.split == "validation"]["step"]) == {2, 3}
    assert set(frame[frame.split == "test"]["metric"]) == {"accuracy", "macro_f1", "loss"}

    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["train"]) == data["data"]["n_train"]
    adapter_cfg = json.loads((run.adapter_path / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == cfg.model

    trained, init = run.load_adapter(), run.load_init()
    frozen, moving = {"ab": (None, "A"), "b_only": ("A", "B"), "a_only": ("B", "A")}[mode]
    for m_t, m_i in zip(trained, init):
        if frozen:
            assert np.array_equal(getattr(m_t, frozen), getattr(m_i, frozen))
        assert not np.array_equal(getattr(m_t, moving), getattr(m_i, moving))


@pytest.mark.parametrize("cache_prefix", [False, True])
def test_peft_reload_reproduces_the_trained_model(tmp_path, tiny_config, cache_prefix):
    cfg = tiny_config(mode="b_only", top_layers=1, cache_prefix=cache_prefix, steps=4)
    run = train(cfg, tmp_path / "run")
    values, model, enc = _reloaded_eval(run)
    m = run.final_metrics
    assert values["loss"] == pytest.approx(m["test_loss"], abs=1e-5)
    assert values["accuracy"] == m["test_accuracy"]
    # and logits: the reloaded model on the saved adapter equals merging the saved tensors by hand
    with torch.no_grad():
        logits = model(**enc.batch(torch.arange(len(enc)))).logits
    assert torch.isfinite(logits).all()


def test_prefix_cache_gives_the_full_forward_result(tmp_path, tiny_config):
    a = train(tiny_config(mode="ab", top_layers=1, steps=4), tmp_path / "full")
    b = train(tiny_config(mode="ab", top_layers=1, steps=4, cache_prefix=True), tmp_path / "cached")
    # lower layers run without dropout when cached, so training differs a little; evaluation paths agree:
    vb, _, _ = _reloaded_eval(b)
    assert vb["loss"] == pytest.approx(b.final_metrics["test_loss"], abs=1e-5)
    assert a.final_metrics["test_loss"] == pytest.approx(b.final_metrics["test_loss"], abs=0.05)


def test_causal_lm_run(tmp_path, train_assets, tiny_config):
    cfg = tiny_config(model=str(train_assets["llama"]), task=str(train_assets["qa"]), mode="b_only")
    run = train(cfg, tmp_path / "lm")
    m = run.final_metrics
    assert run.status == "completed" and run.data["data"]["kind"] == "causal_lm"
    assert m["test_perplexity"] == pytest.approx(torch.tensor(m["test_loss"]).exp().item(), rel=1e-6)
    assert m["tokens_per_s"] > 0 and "test_accuracy" not in m
    assert run.data["head_modules"] == [] and run.data["trainable_params"]["head"] == 0
    values, _, _ = _reloaded_eval(run)
    assert values["loss"] == pytest.approx(m["test_loss"], abs=1e-5)


def test_answer_only_labels(train_assets):
    from asymviz.base.batches import IGNORE, encode
    from asymviz.base.models import load_tokenizer, resolve_model
    from asymviz.base.tasks import load_task

    task = load_task(str(train_assets["qa"]))
    tok = load_tokenizer(resolve_model(str(train_assets["llama"])))
    enc = encode(task.train.head(3), tok, "causal_lm", 32)
    for i in range(3):
        prompt = len(tok(f"Question: {task.train.text[i]}\nAnswer:", add_special_tokens=False)["input_ids"])
        labelled = (enc.labels[i] != IGNORE).nonzero().flatten()
        assert labelled.min() == prompt and labelled.max() == enc.mask[i].sum() - 1


def test_cancel_file_stops_the_run(tmp_path, tiny_config):
    def progress(event):
        if event.phase == "train" and event.step == 2:
            (tmp_path / "run" / "CANCEL").touch()

    run = train(tiny_config(steps=50), tmp_path / "run", progress=progress)
    assert run.status == "cancelled"
    assert run.progress["step"] == 2
    assert not run.adapter_path.exists() and (run.init_path / "adapter_model.safetensors").exists()


def test_sigterm_cancels(tmp_path, tiny_config):
    def progress(event):
        if event.phase == "train" and event.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    run = train(tiny_config(steps=50), tmp_path / "run", progress=progress)
    assert run.status == "cancelled"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_a_failure_is_recorded_and_raised(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="targets"):
        train(tiny_config(targets=("nope_proj",)), tmp_path / "run")
    run = RunStore(tmp_path).get("run")
    assert run.status == "failed" and run.error.startswith("ConfigError: targets")


def test_out_dir_rules(tmp_path, tiny_config):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a run folder"):
        train(tiny_config(), tmp_path / "busy")
    train(tiny_config(), tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a completed run"):
        train(tiny_config(), tmp_path / "run")
    assert train(tiny_config(), tmp_path / "run", overwrite=True).status == "completed"


def test_workspace_shares_work_but_not_results(tmp_path, tiny_config):
    ws = Workspace()
    a = train(tiny_config(mode="b_only", top_layers=1, cache_prefix=True), tmp_path / "a", workspace=ws)
    b = train(tiny_config(mode="b_only", top_layers=1, cache_prefix=True), tmp_path / "b", workspace=ws)
    alone = train(tiny_config(mode="b_only", top_layers=1, cache_prefix=True), tmp_path / "c")
    assert a.final_metrics["test_loss"] == b.final_metrics["test_loss"] == alone.final_metrics["test_loss"]
    assert len(ws._prefix) == 3  # train, validation, test computed once


def test_epochs_set_the_steps(tmp_path, tiny_config):
    run = train(tiny_config(steps=None, epochs=1.0, batch_size=8), tmp_path / "run")
    assert run.progress["total_steps"] == -(-run.data["data"]["n_train"] // 8)


def test_batch_order_covers_each_epoch_and_splits_ranks():
    order = batch_order(10, 5, 2, seed=0)
    assert sorted(order.flatten().tolist()) == list(range(10))
    r0, r1 = batch_order(12, 3, 2, 0, rank=0, world=2), batch_order(12, 3, 2, 0, rank=1, world=2)
    assert sorted(torch.cat([r0.flatten(), r1.flatten()]).tolist()) == list(range(12))


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    p = torch.tensor([0, 1, 1, 1, 2, 0, 2])
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))


def test_fp16_saving_halves_the_files_and_still_loads(tmp_path, tiny_config):
    from safetensors import safe_open

    from asymviz.adapters import load_adapter

    full = train(tiny_config(mode="ab", steps=2), tmp_path / "fp32")
    half = train(tiny_config(mode="ab", steps=2, save_dtype="fp16"), tmp_path / "fp16")
    assert half.data["saved_dtype"] == "float16" and full.data["saved_dtype"] == "float32"
    assert half.final_metrics["test_loss"] == full.final_metrics["test_loss"]  # saving changes no result
    for sub in ("adapter", "init"):
        file = half.path / sub / "adapter_model.safetensors"
        with safe_open(file, "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        size32 = (full.path / sub / "adapter_model.safetensors").stat().st_size
        assert file.stat().st_size < 0.6 * size32
    values, _, _ = _reloaded_eval(half)  # PeftModel.from_pretrained casts back to the float32 model
    assert values["loss"] == pytest.approx(half.final_metrics["test_loss"], abs=2e-3)
    a16, a32 = load_adapter(half.adapter_path), load_adapter(full.adapter_path)
    for m16, m32 in zip(a16, a32, strict=True):
        assert np.allclose(m16.B, m32.B, atol=1e-3)
    init = half.load_init()
    assert len(init) == len(a16)


def test_causal_lm_run_writes_greedy_generations(tmp_path, train_assets, tiny_config):
    from asymviz.base.tasks import load_task

    cfg = tiny_config(model=str(train_assets["llama"]), task=str(train_assets["qa"]), generate=3,
                      generate_tokens=4)  # fmt: skip
    run = train(cfg, tmp_path / "lm")
    lines = [json.loads(x) for x in (run.path / "generations.jsonl").read_text().splitlines()]
    test = load_task(cfg.task).test.sort_values("row").head(3)
    assert [x["row"] for x in lines] == test["row"].tolist()
    assert [x["question"] for x in lines] == test["text"].tolist()
    assert [x["reference"] for x in lines] == test["answer"].tolist()
    assert all(isinstance(x["generated"], str) for x in lines)
    assert run.data["timings"]["generate_s"] > 0
    again = train(cfg, tmp_path / "lm2")  # greedy: the same answers every time
    assert (again.path / "generations.jsonl").read_text() == (run.path / "generations.jsonl").read_text()
    none = train(cfg.replace(generate=0), tmp_path / "lm3")
    assert not (none.path / "generations.jsonl").exists()
