"""asymviz.training.multi / stack: K runs trained together equal the same runs trained alone by `train`."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from asymviz.errors import ConfigError
from asymviz.training.config import TrainConfig
from asymviz.training.loop import train
from asymviz.training.multi import train_many
from asymviz.training.stack import AdamWState, clip_per_run, step_adamw

# fp32 on CPU, what float reassociation (bmm over runs vs one matmul) leaves after 6 steps. Measured here: losses
# differ by at most 2.6e-6 relative; parameters by at most 2.2e-5 absolute (a b_only B of size 0.027 at lr 3e-2:
# where a gradient is near Adam's eps, its last-bit differences move the normalised step). Parameters are held
# to 1e-4 absolute, 0.3 % of one step at lr 3e-2.
TIGHT = dict(rtol=2e-5, atol=2e-6)
PARAMS = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory):
    """The tiny BERT of the training tests with its hidden and attention dropout off, and the tiny task."""
    from tiny_task import write_tiny_bert, write_tiny_task

    root = tmp_path_factory.mktemp("multi_assets")
    folder = write_tiny_bert(root)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder, write_tiny_task(root, n=60)


@pytest.fixture(scope="module")
def trained(no_dropout_bert, tmp_path_factory):
    """Three runs (ab, b_only, a_only; different seeds, lrs, head lr, weight decay, clipping) packed and alone."""
    folder, task = no_dropout_bert
    base = TrainConfig(model=str(folder), task=str(task), steps=6, batch_size=4, rank=2, alpha=4.0,
                       device="cpu", threads=1, eval_every=3)  # fmt: skip
    configs = [
        base.replace(mode="ab", seed=0, lr=1e-2),
        base.replace(mode="b_only", seed=1, lr=3e-2, head_lr=5e-3, weight_decay=0.1, alpha=8.0),
        base.replace(mode="a_only", seed=2, lr=2e-2, max_grad_norm=0.05, warmup=0.0),
        base.replace(mode="head_only", seed=3, lr=2e-2),  # the control: zero LoRA slots, its head alone
    ]
    root = tmp_path_factory.mktemp("multi_runs")
    packed = train_many(configs, root / "packed")
    alone = [train(c, root / "alone" / c.run_id()) for c in configs]
    return configs, packed, alone


def _losses(record):
    frame = record.metrics()
    return torch.tensor(frame[(frame.split == "train") & (frame.metric == "loss")]["value"].to_numpy())


def test_packed_runs_equal_lone_runs_step_by_step(trained):
    configs, packed, alone = trained
    for cfg, p, a in zip(configs, packed, alone):
        assert p.status == "completed" and p.run_id == a.run_id == cfg.run_id()
        assert len(_losses(p)) == 6
        torch.testing.assert_close(_losses(p), _losses(a), **TIGHT)
        for key in ("validation_loss", "test_loss", "test_accuracy", "validation_accuracy", "train_loss"):
            assert p.final_metrics[key] == pytest.approx(a.final_metrics[key], rel=2e-5), key
        fp, fa = p.metrics(), a.metrics()
        assert (
            set(fp[fp.split == "validation"]["step"]) == set(fa[fa.split == "validation"]["step"]) == {3, 6}
        )


def test_packed_runs_store_the_same_init_and_adapter(trained):
    configs, packed, alone = trained
    for cfg, p, a in zip(configs, packed, alone):
        if cfg.mode == "head_only":  # no adapter/ nor init/, packed or alone
            assert not p.has_adapter and not a.has_adapter
            assert not p.adapter_path.exists() and not p.init_path.exists()
            continue
        init_p = load_file(p.init_path / "adapter_model.safetensors")
        init_a = load_file(a.init_path / "adapter_model.safetensors")
        assert init_p.keys() == init_a.keys()
        for key in init_p:
            assert torch.equal(init_p[key], init_a[key]), key  # the same init draws, bit for bit
        end_p = load_file(p.adapter_path / "adapter_model.safetensors")
        end_a = load_file(a.adapter_path / "adapter_model.safetensors")
        assert end_p.keys() == end_a.keys() and any("classifier" in k for k in end_p)
        assert not (p.adapter_path / "README.md").exists()  # PEFT's boilerplate model card is not written
        for key in end_p:
            torch.testing.assert_close(end_p[key], end_a[key], **PARAMS)
            frozen = {"b_only": "lora_A", "a_only": "lora_B"}.get(cfg.mode)
            if frozen and frozen in key:
                assert torch.equal(end_p[key], init_p[key]), key  # weight decay never touches a frozen factor
        assert p.data["frozen_check"] == a.data["frozen_check"]
        assert json.loads((p.adapter_path / "adapter_config.json").read_text()) == json.loads(
            (a.adapter_path / "adapter_config.json").read_text()
        )


def test_packed_run_json_matches_a_lone_run(trained):
    configs, packed, alone = trained
    volatile = {"created_at", "started_at", "finished_at", "updated_at", "heartbeat", "pid", "pid_start",
                "timings", "metrics"}  # fmt: skip
    for k, (p, a) in enumerate(zip(packed, alone)):
        assert set(p.data) - {"pack"} == set(a.data)  # every field a lone run writes, and only `pack` more
        for key in set(a.data) - volatile:
            assert p.data[key] == a.data[key], key
        for key in (
            "trainable_params",
            "targets",
            "head_modules",
            "data",
            "precision",
            "init_seed",
            "progress",
        ):
            assert p.data[key] == a.data[key], key
        assert p.data["pack"]["index"] == k and p.data["pack"]["run_ids"] == [c.run_id() for c in configs]
        assert set(p.data["timings"]) == set(a.data["timings"])
        assert set(p.data["metrics"]) == set(a.data["metrics"])


def test_a_pack_of_head_only_runs_equals_lone_runs(no_dropout_bert, tmp_path):
    """The sweep's first wave is the head-lr grid: head_only runs only, packed without any LoRA slot."""
    folder, task = no_dropout_bert
    base = TrainConfig(model=str(folder), task=str(task), steps=5, batch_size=4, rank=2, device="cpu", threads=1,
                       mode="head_only")  # fmt: skip
    configs = [base.replace(lr=1e-2), base.replace(lr=3e-2, seed=1)]
    packed = train_many(configs, tmp_path / "packed")
    for cfg, p in zip(configs, packed):
        a = train(cfg, tmp_path / "alone" / cfg.run_id())
        assert p.status == a.status == "completed"
        torch.testing.assert_close(_losses(p), _losses(a), **TIGHT)
        assert p.final_metrics["test_loss"] == pytest.approx(a.final_metrics["test_loss"], rel=2e-5)
        assert p.data["trainable_params"] == a.data["trainable_params"]
        assert p.data["learning_rates"] == a.data["learning_rates"]


def test_packed_adapters_load_with_asymviz_and_peft(trained):
    from peft import PeftModel

    from asymviz.adapters import load_adapter
    from asymviz.base.batches import encode
    from asymviz.base.models import load_model, resolve_model
    from asymviz.base.tasks import load_task
    from asymviz.training.loop import evaluate

    configs, packed, _ = trained
    for cfg, p in zip(configs, packed):
        if cfg.mode == "head_only":
            continue
        adapter = load_adapter(p.adapter_path)
        assert len(adapter.modules) == 4 and {m.r for m in adapter.modules} == {cfg.rank}
        task = load_task(cfg.task, cfg.split_seed, cfg.holdout)
        base, tok = load_model(resolve_model(cfg.model), task.task_type, num_labels=2)
        model = PeftModel.from_pretrained(base, p.adapter_path).eval()
        enc = encode(task.split("test"), tok, task.task_type, cfg.max_length)
        values = evaluate(lambda idx, m=model, e=enc: m(**e.batch(idx)), enc, task.task_type)
        assert values["loss"] == pytest.approx(p.final_metrics["test_loss"], rel=1e-5)


def test_a_pack_rejects_runs_that_differ_in_shape(no_dropout_bert, tmp_path):
    folder, task = no_dropout_bert
    a = TrainConfig(model=str(folder), task=str(task), steps=2, batch_size=4, rank=2, device="cpu")
    with pytest.raises(ConfigError, match="batch_size"):
        train_many([a, a.replace(batch_size=8, seed=1)], tmp_path)
    with pytest.raises(ConfigError, match="same run twice"):
        train_many([a, a], tmp_path)
    with pytest.raises(ConfigError, match="cache_prefix"):
        train_many([a.replace(top_layers=1, cache_prefix=True)], tmp_path)


# ---- stack.py: the optimiser against torch's, run by run ------------------------------------------------------


def test_step_adamw_equals_torch_adamw_per_run():
    torch.manual_seed(0)
    K, P, steps = 3, 50, 5
    lrs, wds, clips = [1e-2, 3e-3, 0.0], [0.0, 0.1, 0.3], [1.0, None, 0.01]
    start = torch.randn(K, P)
    grads = [torch.randn(K, P) for _ in range(steps)]
    flat = start.clone()
    state = AdamWState.zeros(flat, [(0.9, 0.999)] * K, [1e-8] * K, wds, clips)
    for g in grads:
        g = g.clone()
        clip_per_run(g, state.max_grad_norm)
        step_adamw(flat, g, state, torch.tensor(lrs).view(K, 1))
    for k in range(K):
        p = torch.nn.Parameter(start[k].clone())
        opt = torch.optim.AdamW([p], lr=lrs[k], weight_decay=wds[k])
        for g in grads:
            p.grad = g[k].clone()
            if clips[k]:
                torch.nn.utils.clip_grad_norm_([p], clips[k])
            opt.step()
        torch.testing.assert_close(flat[k], p.detach(), rtol=1e-6, atol=1e-7)
    assert torch.equal(flat[2], start[2])  # lr 0: not a bit moved, weight decay included


def test_a_cancel_file_stops_one_run_of_the_pack(no_dropout_bert, tmp_path):
    from asymviz.runs import CANCEL_FILE

    folder, task = no_dropout_bert
    base = TrainConfig(
        model=str(folder), task=str(task), steps=4, batch_size=4, rank=2, device="cpu", threads=1
    )
    configs = [base.replace(mode=m, seed=i) for i, m in enumerate(("ab", "b_only"))]

    def progress(event):
        if event.step == 2:
            (tmp_path / configs[1].run_id() / CANCEL_FILE).touch()

    done, cancelled = train_many(configs, tmp_path, progress)
    assert done.status == "completed" and done.progress["step"] == 4
    assert cancelled.status == "cancelled" and cancelled.progress["step"] == 2
    frame = cancelled.metrics()
    assert frame[frame.metric == "loss"]["step"].tolist() == [1, 2]
    assert not cancelled.adapter_path.exists()


def test_lora_plus_ratio_is_per_run(no_dropout_bert, tmp_path):
    """LoRA+ (lr_B = lr_ratio · lr): each run's ratio comes from the recipe's own optimiser groups."""
    folder, task = no_dropout_bert
    base = TrainConfig(
        model=str(folder), task=str(task), steps=4, batch_size=4, rank=2, device="cpu", threads=1
    )
    configs = [
        base.replace(mode="ab", seed=0, lr=1e-2, lr_ratio=8.0),
        base.replace(mode="ab", seed=1, lr=1e-2),
    ]
    packed = train_many(configs, tmp_path / "packed")
    for cfg, p in zip(configs, packed):
        a = train(cfg, tmp_path / "alone" / cfg.run_id())
        torch.testing.assert_close(_losses(p), _losses(a), **TIGHT)
        end_p = load_file(p.adapter_path / "adapter_model.safetensors")
        end_a = load_file(a.adapter_path / "adapter_model.safetensors")
        for key in end_p:
            torch.testing.assert_close(end_p[key], end_a[key], **PARAMS)
