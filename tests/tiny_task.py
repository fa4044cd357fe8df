"""A tiny base model with a tokenizer, a PEFT adapter on it and a labelled text file, all on disk (no
downloads): what `asymviz align` / `diagnose` need, built in well under a second. Used by the alignment tests."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

WORDS = "good bad great awful tasty bland love hate coffee tea food dog cat the a is was very not".split()
LABELS = ("great", "other")


def write_tiny_task(root: Path, n: int = 40, seed: int = 0, answers: bool = False) -> Path:
    """A .jsonl.gz file with text, label and split columns (text, answer with answers=True: a causal-LM task)."""
    rng = random.Random(seed)
    path = Path(root) / ("qa.jsonl.gz" if answers else "task.jsonl.gz")
    with gzip.open(path, "wt") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            row = {"text": text, "split": "train" if i % 5 else "test"}
            if answers:
                row["answer"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
            else:
                row["label"] = rng.choice(LABELS)
            f.write(json.dumps(row) + "\n")
    return path


def write_tiny_bert(root: Path, num_labels: int = 2) -> Path:
    """A 2-layer BertForSequenceClassification (hidden 32) with a word-level tokenizer, saved to root/base."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                     vocab_size=len(vocab), num_labels=num_labels, max_position_embeddings=64)  # fmt: skip
    model = BertForSequenceClassification(cfg)
    folder = root / "base"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_adapter(base_folder: Path, out: Path, seed: int = 1, **lora_kwargs):
    """A SEQ_CLS LoRA adapter (query, value; r=4; random non-zero A and B) on the saved base; returns
    (folder, PeftModel)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    base = BertForSequenceClassification.from_pretrained(base_folder)
    kwargs = dict(
        task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False
    )
    kwargs.update(lora_kwargs)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(**kwargs))
    model.save_pretrained(out)
    return Path(out), model


def write_tiny_llama_lm(root: Path) -> tuple[Path, Path]:
    """A 2-layer LlamaForCausalLM (hidden 32) saved with the word-level tokenizer, and a CAUSAL_LM LoRA
    adapter on q_proj/down_proj (random non-zero A and B): (base folder, adapter folder)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=48, vocab_size=len(vocab), max_position_embeddings=64)  # fmt: skip
    base = root / "llama"
    LlamaForCausalLM(cfg).save_pretrained(base)
    tokenizer.save_pretrained(base)
    lora = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                      init_lora_weights=False)  # fmt: skip
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), lora)
    model.save_pretrained(root / "llama_adapter")
    return base, root / "llama_adapter"


# ---- linear probe (asymviz.probes.linear_probe): a task one token decides, and a tokenizer that knows it -----

POSITIVE, NEGATIVE, NEUTRAL = (
    ("good", "great", "tasty", "love"),
    ("bad", "awful", "bland", "hate"),
    ("tea", "dog"),
)


def write_separable_task(path, n: int = 200, seed: int = 0) -> str:
    """A CSV whose label is which word set (positive / negative) the text is drawn from: linearly separable."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        label = rng.choice(("great", "other"))
        words = [rng.choice(POSITIVE if label == "great" else NEGATIVE) for _ in range(rng.randint(1, 4))]
        words += [rng.choice(NEUTRAL) for _ in range(rng.randint(0, 2))]
        text = " ".join(rng.sample(words, len(words)))
        if text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": label})
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def write_tiny_bert_with_vocab(root):
    """tiny_task's BERT, with a tokenizer that knows its words: under transformers 5 `BertTokenizerFast(vocab_file=)`
    (what tiny_task uses) ignores the file and maps every word to [UNK]."""
    from transformers import BertTokenizerFast

    root = Path(root)
    folder = write_tiny_bert(root)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    if tok.convert_tokens_to_ids("good") != vocab.index("good"):
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    assert tok("good bad")["input_ids"] == [2, vocab.index("good"), vocab.index("bad"), 3]
    tok.save_pretrained(folder)
    return folder
