"""Encoded.batch(for_model=...): masks chosen from the CPU lengths (no GPU read) give the 2-D mask's numbers."""

from __future__ import annotations

import pytest
import torch

from asymviz.base.batches import ENCODER_MASK_TYPES, Encoded, encoder_mask_ok


def _model(kind: str, attn: str = "sdpa"):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  vocab_size=100, max_position_embeddings=64, num_labels=3, attn_implementation=attn)  # fmt: skip
    torch.manual_seed(0)
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(**common)).eval()
    if kind == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **common)).eval()
    return XLMRobertaForSequenceClassification(XLMRobertaConfig(pad_token_id=1, **common)).eval()


def _encoded(lengths: list[int], width: int = 12) -> Encoded:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (len(lengths), width), generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 1
    return Encoded(ids, mask, torch.zeros(len(lengths), dtype=torch.long), "classification")


@pytest.mark.parametrize("kind", ["bert", "roberta", "xlm-roberta"])
@pytest.mark.parametrize("lengths", [[12, 12, 12], [12, 5, 9, 1], [7, 7, 3]])
def test_encoder_mask_gives_the_2d_masks_logits(kind, lengths):
    model = _model(kind)
    assert encoder_mask_ok(model)
    enc = _encoded(lengths)
    index = torch.arange(len(lengths))
    plain, fast = enc.batch(index), enc.batch(index, for_model=model)
    padded = min(lengths) < max(lengths)
    assert (fast["attention_mask"] is None) == (not padded)
    if padded:
        assert fast["attention_mask"].shape == (len(lengths), 1, 1, max(lengths))
        assert fast["attention_mask"].dtype == torch.bool
    with torch.no_grad():
        want = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
        got = model(input_ids=fast["input_ids"], attention_mask=fast["attention_mask"]).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # the padded rows' logits do not depend on what sits in their padding (the mask masks)
    if padded:
        ids = fast["input_ids"].clone()
        ids[fast["attention_mask"][:, 0, 0] == 0] = 7
        with torch.no_grad():
            again = model(input_ids=ids, attention_mask=fast["attention_mask"]).logits
        torch.testing.assert_close(again, want, rtol=0, atol=1e-6)


def test_encoder_mask_only_where_it_is_known_to_hold():
    assert not encoder_mask_ok(_model("bert", attn="eager"))  # eager attention wants an additive float mask
    from transformers import BertConfig, BertModel

    decoder = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                                   vocab_size=100, is_decoder=True, attn_implementation="sdpa"))  # fmt: skip
    assert not encoder_mask_ok(decoder)
    assert not encoder_mask_ok(torch.nn.Linear(2, 2))
    assert {"bert", "roberta"} <= ENCODER_MASK_TYPES


def test_images_and_the_default_are_unchanged():
    enc = _encoded([4, 2])
    b = enc.batch(torch.arange(2))
    assert b["attention_mask"].shape == (2, 4) and b["attention_mask"].dtype == torch.long


def test_training_uses_it_and_keeps_its_numbers(tmp_path, monkeypatch):
    """`train` and `train_many` cut their steps' batches with the encoder mask on a BERT, and a run's losses are
    those of the 2-D mask (the same run with encoder_mask_ok forced off)."""
    from tiny_task import write_tiny_bert, write_tiny_task

    import asymviz.training.multi as multi
    from asymviz.training.config import TrainConfig
    from asymviz.training.loop import train

    folder, task = write_tiny_bert(tmp_path), write_tiny_task(tmp_path, n=40)
    cfg = TrainConfig(model=str(folder), task=str(task), steps=4, batch_size=4, rank=2, alpha=4.0, device="cpu",
                      threads=1, eval_every=4, seed=3)  # fmt: skip
    seen: list[bool] = []
    original = Encoded.batch

    def spy(self, index, rows=None, for_model=None):
        seen.append(for_model is not None)
        return original(self, index, rows, for_model)

    monkeypatch.setattr(Encoded, "batch", spy)
    fast = train(cfg, tmp_path / "fast")
    assert any(seen)
    seen.clear()
    multi.train_many([cfg], tmp_path / "packed")
    assert any(seen)
    monkeypatch.setattr(
        Encoded, "batch", lambda self, index, rows=None, for_model=None: original(self, index, rows)
    )
    plain = train(cfg, tmp_path / "plain")

    def losses(record):
        f = record.metrics()
        return torch.tensor(f[(f.split == "train") & (f.metric == "loss")]["value"].to_numpy())

    assert len(losses(fast)) == 4
    torch.testing.assert_close(losses(fast), losses(plain), rtol=1e-6, atol=1e-7)
    assert fast.final_metrics["test_loss"] == pytest.approx(plain.final_metrics["test_loss"], rel=1e-6)


def test_a_decoder_gets_none_unpadded_and_the_2d_mask_padded():
    """A causal LM (LLaMA) on SDPA: no padded row → no mask (the loss is the 2-D mask's); padded → the 2-D mask."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, vocab_size=100, attn_implementation="sdpa")).eval()  # fmt: skip
    assert not encoder_mask_ok(model)
    enc = _encoded([12, 12, 12])
    enc = Encoded(enc.ids, enc.mask, enc.ids.clone(), "causal_lm")
    index = torch.arange(3)
    plain, fast = enc.batch(index), enc.batch(index, for_model=model)
    assert fast["attention_mask"] is None
    with torch.no_grad():
        want = model(
            input_ids=plain["input_ids"], attention_mask=plain["attention_mask"], labels=plain["labels"]
        )
        got = model(**fast)
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.loss, want.loss, rtol=0, atol=1e-6)
    padded = _encoded([12, 4])
    b = Encoded(padded.ids, padded.mask, padded.ids.clone(), "causal_lm").batch(
        torch.arange(2), for_model=model
    )
    assert b["attention_mask"].shape == (2, 12) and b["attention_mask"].dtype == torch.long


def test_a_left_padding_tokenizer_still_gives_right_padded_rows(tmp_path):
    """Some decoders' tokenizers pad on the left. `encode` pads on the right all the same: batch() trims every
    row to the batch's longest and tells padded rows by their lengths, so left-padded rows would lose their
    tokens (a batch of pads) and the mask chosen from the lengths would differ from the 2-D one."""
    import pandas as pd
    from tiny_task import write_tiny_bert
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from asymviz.base.batches import encode

    folder = write_tiny_bert(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="sdpa").eval()
    texts = ["good food", "bad tea very", "good food"]
    enc = encode(pd.DataFrame({"text": texts, "y": [0, 1, 0]}), tokenizer, "classification", max_length=16)
    assert enc.lengths.tolist() == [4, 5, 4]
    for idx in (torch.tensor([0, 2]), torch.tensor([0, 1])):  # unpadded, then padded
        plain, fast = enc.batch(idx), enc.batch(idx, for_model=model)
        rows = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, padding_side="right")
        assert torch.equal(plain["input_ids"], rows["input_ids"])
        with torch.no_grad():
            want = model(**rows).logits
            got_2d = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
            got = model(input_ids=fast["input_ids"], attention_mask=fast["attention_mask"]).logits
        torch.testing.assert_close(got_2d, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_a_left_padded_mask_is_refused():
    ids = torch.tensor([[0, 0, 5, 6], [5, 6, 7, 8]])
    with pytest.raises(ValueError, match="right-padded"):
        Encoded(ids, (ids != 0).long(), torch.zeros(2, dtype=torch.long), "classification")
