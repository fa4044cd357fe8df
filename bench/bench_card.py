"""The adapter card on a LLaMA-7B-shaped adapter (32 layers × q,k,v,o,gate,up,down = 224 modules, r=16, fp16),
timed side by side with `spectrum_summary` (the existing per-module analysis that reads the same tensors).

    PYTHONPATH=. python bench/bench_card.py [--repeats 3] [--layers 32] [--rank 16]

The adapter is synthetic (A drawn as PEFT's kaiming init, B random; its numbers mean nothing) and written once
to a temporary folder. Each analysis runs `--repeats` times in one process, alternating; the card's first run
includes sampling the null of A (one per distinct (r, d_in): 2 here). Prints median [min, max] wall seconds and
the ratio card / spectrum_summary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES = {  # kind: (part, d_in, d_out) of LLaMA-7B
    "q_proj": ("self_attn", 4096, 4096), "k_proj": ("self_attn", 4096, 4096), "v_proj": ("self_attn", 4096, 4096),
    "o_proj": ("self_attn", 4096, 4096), "gate_proj": ("mlp", 4096, 11008), "up_proj": ("mlp", 4096, 11008),
    "down_proj": ("mlp", 11008, 4096),
}  # fmt: skip


def write_llama_adapter(folder: Path, layers: int, r: int) -> Path:
    import json
    import math

    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(layers):
        for kind, (part, d_in, d_out) in SHAPES.items():
            key = f"base_model.model.model.layers.{i}.{part}.{kind}"
            bound = 1 / math.sqrt(d_in)
            tensors[f"{key}.lora_A.weight"] = ((torch.rand(r, d_in, generator=g) * 2 - 1) * bound).half()
            tensors[f"{key}.lora_B.weight"] = (torch.randn(d_out, r, generator=g) * 1e-2).half()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "adapter_model.safetensors")
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": list(SHAPES)}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    from asymviz.adapters import load_adapter
    from asymviz.card import adapter_card
    from asymviz.spectra import spectrum_summary

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_llama_adapter(Path(tmp) / "adapter", args.layers, args.rank)
        times: dict[str, list[float]] = {"card": [], "spectrum_summary": []}
        for _ in range(args.repeats):
            for name, fn in (("card", adapter_card), ("spectrum_summary", spectrum_summary)):
                adapter = load_adapter(folder)
                t0 = time.perf_counter()
                result = fn(adapter)
                times[name].append(time.perf_counter() - t0)
        n = len(result) if hasattr(result, "__len__") else "?"
        print(
            f"adapter: {args.layers} layers x {len(SHAPES)} kinds, r={args.rank}, fp16 ({n} rows in the summary)"
        )
        for name, ts in times.items():
            print(
                f"{name:18s} median {statistics.median(ts):6.2f} s  [min {min(ts):.2f}, max {max(ts):.2f}]  n={len(ts)}"
            )
        ratio = [c / s for c, s in zip(times["card"], times["spectrum_summary"], strict=True)]
        print(
            f"card / spectrum_summary: median {statistics.median(ratio):.2f}x [min {min(ratio):.2f}, max {max(ratio):.2f}]"
        )


if __name__ == "__main__":
    main()
