"""asymviz.training.unpadded: a packed BERT's forward over its real tokens equals the padded forward."""

from __future__ import annotations

import json

import pytest
import torch

from asymviz.errors import ConfigError
from asymviz.training.config import TrainConfig
from asymviz.training.multi import train_many
from asymviz.training.unpadded import Route, unpadded_logits, unpadded_ok

TIGHT = dict(rtol=2e-5, atol=2e-6)  # as tests/training/test_multi.py: fp32 reassociation over a few steps


def _bert(attn: str = "sdpa", **extra):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, vocab_size=100,
                     max_position_embeddings=64, num_labels=3, attn_implementation=attn, **extra)  # fmt: skip
    return BertForSequenceClassification(cfg)


def _batch(lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


def test_route_pins_a_small_case():
    r = Route.of(torch.tensor([2, 3, 1, 2]), width=3, K=2, device="cpu")
    assert r.n_tokens == 8 and (r.min_len, r.max_len) == (1, 3)
    assert r.offsets.tolist() == [0, 2, 5, 6, 8]
    assert r.pos.tolist() == [0, 1, 0, 1, 2, 0, 0, 1]
    assert r.flat.tolist() == [0, 1, 3, 4, 5, 6, 9, 10]  # row * width + position
    # run 0 = rows 0-1 = tokens 0..4, run 1 = rows 2-3 = tokens 5..7 (padded with its last token, 7)
    assert r.gather.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 7, 7]]
    assert r.take.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError):
        Route.of(torch.tensor([2, 0]), width=3, K=1, device="cpu")  # an empty row
    with pytest.raises(ValueError):
        Route.of(torch.tensor([2, 3, 1]), width=3, K=2, device="cpu")  # rows not a multiple of the runs


@pytest.mark.parametrize("lengths", [[12, 5, 9, 1, 12, 3], [7, 7, 7, 7], [1, 1]])
def test_unpadded_logits_and_gradients_equal_the_padded_forward(lengths):
    model = _bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    assert unpadded_ok(model)
    width = max(lengths)
    ids, mask = _batch(lengths, width)
    route = Route.of(torch.tensor(lengths), width, K=2 if len(lengths) % 2 == 0 else 1, device="cpu")
    model.train()
    want = model(input_ids=ids, attention_mask=mask).logits
    want.square().sum().backward()
    g_want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    got = unpadded_logits(model, ids, route)
    got.square().sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if n in g_want:  # (position embeddings past the longest row get no gradient either way)
            torch.testing.assert_close(p.grad, g_want[n], rtol=1e-4, atol=1e-6, msg=n)


def test_only_bert_on_sdpa_qualifies():
    assert not unpadded_ok(_bert(attn="eager"))
    assert not unpadded_ok(_bert(position_embedding_type="relative_key"))
    from transformers import RobertaConfig, RobertaForSequenceClassification

    roberta = RobertaForSequenceClassification(RobertaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                             intermediate_size=48, vocab_size=100))  # fmt: skip
    assert not unpadded_ok(roberta)  # its positions start after the padding index: not this forward
    assert not unpadded_ok(torch.nn.Linear(2, 2))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """Three runs (ab, b_only, a_only) packed: unpadded, padded, and the first alone (dropout off)."""
    from tiny_task import write_tiny_bert, write_tiny_task

    from asymviz.training.loop import train

    root = tmp_path_factory.mktemp("unpadded")
    folder = write_tiny_bert(root)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    base = TrainConfig(model=str(folder), task=str(write_tiny_task(root, n=60)), steps=6, batch_size=4, rank=2,
                       alpha=4.0, device="cpu", threads=1, eval_every=3)  # fmt: skip
    configs = [base.replace(mode="ab", seed=0, lr=1e-2), base.replace(mode="b_only", seed=1, lr=3e-2),
               base.replace(mode="a_only", seed=2, lr=2e-2)]  # fmt: skip
    return (configs, train_many(configs, root / "unpadded", unpadded=True),
            train_many(configs, root / "padded", unpadded=False), train(configs[0], root / "alone"))  # fmt: skip


def _losses(record):
    f = record.metrics()
    return torch.tensor(f[(f.split == "train") & (f.metric == "loss")]["value"].to_numpy())


def test_packed_unpadded_runs_equal_padded_and_lone_runs(packed):
    configs, unpadded, padded, alone = packed
    for cfg, u, p in zip(configs, unpadded, padded):
        assert u.status == p.status == "completed"
        assert u.data["pack"]["unpadded"] is True and p.data["pack"]["unpadded"] is False
        torch.testing.assert_close(_losses(u), _losses(p), **TIGHT)
        assert u.final_metrics["test_loss"] == pytest.approx(p.final_metrics["test_loss"], rel=2e-5)
    torch.testing.assert_close(_losses(unpadded[0]), _losses(alone), **TIGHT)


def test_unpadded_trains_with_lora_dropout(packed, tmp_path):
    configs = [c.replace(lora_dropout=0.1) for c in packed[0]]
    records = train_many(configs, tmp_path / "runs", unpadded=True)
    assert all(r.status == "completed" and len(_losses(r)) == 6 for r in records)
    assert all(torch.isfinite(_losses(r)).all() for r in records)


def test_unpadded_is_refused_where_it_does_not_hold(tmp_path):
    from tiny_task import write_tiny_bert, write_tiny_task

    folder = write_tiny_bert(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["position_embedding_type"] = "relative_key"
    (folder / "config.json").write_text(json.dumps(cfg))
    config = TrainConfig(model=str(folder), task=str(write_tiny_task(tmp_path, n=40)), steps=2, batch_size=4, rank=2,
                         device="cpu", threads=1, eval_every=2)  # fmt: skip
    with pytest.raises(ConfigError, match="unpadded"):
        train_many([config], tmp_path / "runs", unpadded=True)
