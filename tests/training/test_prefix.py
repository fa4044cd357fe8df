"""asymviz.training.prefix: the cached frozen prefix + top layers equal the full forward."""

from __future__ import annotations

import pytest
import torch

from asymviz.base.batches import encode
from asymviz.base.models import default_head, load_model, resolve_model
from asymviz.base.tasks import load_task
from asymviz.training import lora, prefix


@pytest.fixture
def wrapped(train_assets, tiny_config):
    cfg = tiny_config(mode="ab", top_layers=1, lora_dropout=0.0)
    base, tok = load_model(resolve_model(cfg.model), "classification", 2)
    model = lora.wrap(base, cfg, "classification", default_head(base, "classification"))
    with torch.no_grad():  # make the LoRA update non-zero so it matters
        for _, m in lora.lora_modules(model):
            m.lora_B["default"].weight.normal_(0, 0.5)
    task = load_task(cfg.task)
    enc = encode(task.train, tok, "classification", 16)
    return model.eval(), enc


@pytest.mark.parametrize("cls_only", [False, True])
def test_prefix_plus_top_equals_the_full_forward(wrapped, cls_only):
    model, enc = wrapped
    idx = torch.arange(12)
    batch = enc.batch(idx)
    assert (batch["attention_mask"] == 0).any()  # padding inside the batch: the mask matters
    with torch.no_grad():
        full = model(**batch).logits
        h = prefix.prefix_states(model, enc.ids, enc.mask, n_prefix=1)  # (N, L, d)
        assert prefix.cls_only_supported(model)
        with prefix.top_only(model, 1, cls_only=cls_only):
            top = model(
                inputs_embeds=h[idx, : batch["input_ids"].shape[1]], attention_mask=batch["attention_mask"]
            ).logits
    torch.testing.assert_close(top, full, atol=1e-5, rtol=1e-5)
    assert len(model.base_model.model.bert.encoder.layer) == 2  # swap undone


def test_cls_only_trains_the_same_gradients(wrapped):
    model, enc = wrapped
    idx = torch.arange(8)
    batch = enc.batch(idx)
    h = prefix.prefix_states(model, enc.ids, enc.mask, n_prefix=1)

    def grads(cls_only):
        model.zero_grad()
        with prefix.top_only(model, 1, cls_only=cls_only):
            out = model(inputs_embeds=h[idx, : batch["input_ids"].shape[1]], attention_mask=batch["attention_mask"],
                        labels=batch["labels"])  # fmt: skip
        out.loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    a, b = grads(False), grads(True)
    assert a.keys() == b.keys() and any(".lora_" in n for n in a)
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=1e-5, rtol=1e-4)


def test_unsupported_models_say_so(train_assets):
    llama, _ = load_model(resolve_model(str(train_assets["llama"])), "causal_lm")
    assert not prefix.supported(llama) and not prefix.cls_only_supported(llama)
