"""CPU benchmarks of the training engine, measured side by side in one go:

    PYTHONPATH=. python bench/bench_train.py [--parts demo,overhead,modes,store] [--steps 40]

- demo:     `asymviz demo --fresh` in a fresh store, timed from outside (interpreter start included): wall time and
            test accuracy per mode (the target: <= 60 s on 2 cores, ab and b_only >= 0.75; majority class 0.658).
- overhead: asymviz `train` vs a plain PEFT loop (bench/plain_loop.py) on the same model, LoRA config and batches
            (MiniLM, q,v on all 6 layers, r=8, batch 8 x 64, fp32, denormals flushed in both); prints the
            ratio of training-loop seconds, best of 4 alternations, one thread each (target <= 1.05).
- modes:    ab vs b_only vs a_only: training examples/s and peak RSS, each mode in its own process (MiniLM, all
            layers, batch 16 x 64), plus the bytes autograd saves for backward in one step (exact, not noisy).
- store:    listing a store of 500 runs (RunStore.list, only run.json files read).

The machine is shared: the load average is printed with each part; timings are the best of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ASYMVIZ_NO_PROGRESS": "1"}


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f}"


def part_demo() -> dict:
    with tempfile.TemporaryDirectory() as store:
        print(f"\n== demo ({load()})", flush=True)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "asymviz", "demo", "--store", store, "--fresh", "--format", "csv"],
                             env=ENV, capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t
        if out.returncode:
            print(out.stderr[-3000:])
            raise SystemExit("demo failed")
        import io

        import pandas as pd

        table = pd.read_csv(io.StringIO(out.stdout))
        print(table.to_string(index=False))
        print(f"demo wall time (whole command): {wall:.1f} s  [{load()}]")
        return {
            "wall_s": wall,
            **{f"{m}_test_accuracy": a for m, a in zip(table["mode"], table["test_accuracy"])},
        }


def _overhead_config(steps: int):
    from asymviz.training.config import TrainConfig

    return TrainConfig(model="minilm", task="fine_foods", mode="ab", targets=("query", "value"), rank=8, alpha=16,
                       head=("pooler", "classifier"), steps=steps, batch_size=8, max_length=64, lr=1e-3,
                       max_validation=8, max_test=8, device="cpu", threads=1)  # fmt: skip


def part_overhead(steps: int, reps: int = 4) -> dict:
    import torch
    from plain_loop import plain_peft_loop

    from asymviz.training.loop import train

    print(f"\n== overhead vs a plain PEFT loop ({steps} steps, batch 8 x 64, all 6 layers, 1 thread) ({load()})",
          flush=True)  # fmt: skip
    cfg = _overhead_config(steps)
    plain, ours = [], []
    torch.set_num_threads(1)  # one thread each: the other core's load (shared machine) then hardly matters
    with tempfile.TemporaryDirectory() as tmp:
        plain_peft_loop(cfg, steps=3)  # warm caches
        for rep in range(reps):
            plain.append(plain_peft_loop(cfg)["train_s"])
            rec = train(cfg, Path(tmp) / f"r{rep}", overwrite=True)
            ours.append(rec.data["timings"]["train_s"])
            print(f"  rep {rep}: plain {plain[-1]:.2f} s, asymviz {ours[-1]:.2f} s  [{load()}]", flush=True)
    ratio = min(ours) / min(plain)
    print(f"best: plain {min(plain):.2f} s, asymviz {min(ours):.2f} s -> ratio {ratio:.3f} (target <= 1.05)")
    return {"plain_s": min(plain), "ours_s": min(ours), "ratio": ratio}


_MODE_CHILD = """
import json, sys
from asymviz.training.config import TrainConfig
from asymviz.training.loop import train
cfg = TrainConfig(model="minilm", task="fine_foods", mode=sys.argv[1], targets=("query", "value"), rank=8, alpha=16,
                  steps=int(sys.argv[3]), batch_size=16, max_length=64, max_validation=8, max_test=8, device="cpu")
rec = train(cfg, sys.argv[2])
print(json.dumps({"examples_per_s": rec.final_metrics["examples_per_s"], "peak_rss_mb": rec.final_metrics["peak_memory_mb"],
                  "trainable_lora": rec.data["trainable_params"]["lora"]}))
"""


def saved_bytes(mode: str) -> int:
    """Bytes autograd keeps for backward in one training forward (batch 16 x 64, all layers)."""
    import torch

    from asymviz.base.batches import encode
    from asymviz.base.models import default_head, load_model, resolve_model
    from asymviz.base.tasks import load_task
    from asymviz.training import lora
    from asymviz.training.config import TrainConfig

    cfg = TrainConfig(mode=mode, targets=("query", "value"), batch_size=16, max_length=64)
    task = load_task("fine_foods", max_train=16)
    base, tok = load_model(resolve_model("minilm"), "classification", 2)
    model = lora.wrap(base, cfg, "classification", default_head(base, "classification"))
    model.train()
    batch = encode(task.train, tok, "classification", 64).batch(torch.arange(16))
    seen: dict[int, int] = {}

    def pack(t):  # every tensor autograd keeps; storages shared by several count once
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**batch).loss.backward()
    return sum(n for ptr, n in seen.items() if ptr not in params)  # weights are not activations


def part_modes(steps: int) -> dict:
    print(
        f"\n== modes: speed and memory (MiniLM, all layers q,v r=8, batch 16 x 64, {steps} steps) ({load()})",
        flush=True,
    )
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(2):
            for mode in ("ab", "b_only", "a_only"):
                res = subprocess.run([sys.executable, "-c", _MODE_CHILD, mode, f"{tmp}/{mode}{rep}", str(steps)],
                                     env=ENV, capture_output=True, text=True)  # fmt: skip
                if res.returncode:
                    print(res.stderr[-2000:])
                    raise SystemExit(f"mode {mode} failed")
                r = json.loads(res.stdout.strip().splitlines()[-1])
                best = out.setdefault(mode, r)
                best["examples_per_s"] = max(best["examples_per_s"], r["examples_per_s"])
                best["peak_rss_mb"] = min(best["peak_rss_mb"], r["peak_rss_mb"])
    for mode in out:
        out[mode]["saved_activation_mb"] = saved_bytes(mode) / 2**20
    print(
        f"{'mode':8s} {'lora params':>11s} {'train ex/s':>10s} {'peak RSS MiB':>12s} {'saved for backward MiB':>22s}"
    )
    for mode, r in out.items():
        print(
            f"{mode:8s} {r['trainable_lora']:11d} {r['examples_per_s']:10.1f} {r['peak_rss_mb']:12.0f} {r['saved_activation_mb']:22.1f}"
        )
    ab, b = out["ab"], out["b_only"]
    print(f"b_only / ab: speed x{b['examples_per_s'] / ab['examples_per_s']:.2f}, "
          f"saved activations x{b['saved_activation_mb'] / ab['saved_activation_mb']:.2f}, "
          f"peak RSS x{b['peak_rss_mb'] / ab['peak_rss_mb']:.2f}  [{load()}]")  # fmt: skip
    return out


def part_store(n: int = 500) -> dict:
    from asymviz.runs import RunStore, RunWriter

    print(f"\n== store: listing {n} runs ({load()})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            w = RunWriter(Path(tmp) / f"run{i:04d}")
            w.start(
                f"run{i:04d}", {"model": "minilm", "task": "fine_foods", "mode": "ab", "rank": 8, "seed": i}
            )
            w.finish("completed", metrics={"test_accuracy": 0.8})
        times = []
        for _ in range(3):
            t = time.perf_counter()
            frame = RunStore(tmp).list()
            times.append(time.perf_counter() - t)
        assert len(frame) == n
    print(f"RunStore.list() of {n} runs: median {statistics.median(times) * 1000:.0f} ms")
    return {"list_ms": statistics.median(times) * 1000}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="demo,overhead,modes,store")
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    results = {}
    for part in args.parts.split(","):
        if part == "demo":
            results["demo"] = part_demo()
        elif part == "overhead":
            results["overhead"] = part_overhead(min(args.steps, 20))
        elif part == "modes":
            results["modes"] = part_modes(args.steps)
        elif part == "store":
            results["store"] = part_store()
    print("\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
