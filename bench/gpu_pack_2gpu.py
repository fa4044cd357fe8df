"""Packed sweeps on two GPUs vs one: the same 24 MiniLM runs, one `asymviz sweep --pack` process per GPU.

    ASYMVIZ_MINILM=.carry/minilm-fp16 PYTHONUNBUFFERED=1 python3 bench/gpu_pack_2gpu.py --out $OUT   # ~3 min, 2 H200
    PYTHONPATH=. python bench/gpu_pack_2gpu.py --cpu-smoke                                          # toy sizes, CPU

24 runs (3 modes x 8 seeds; MiniLM on fine_foods, r=8 on query/value, batch 32 x 128, bf16, --steps each) are
trained twice, alternated --reps times: by one process on GPU 0 (`asymviz sweep --configs ... --pack 12`: two
packs of 12, one after the other) and by two processes at once, one per GPU, each with 12 of the runs (one pack
of 12). Each figure is summed training examples over the wall time of the whole command (start-up, evaluation and
saves included), as a user of `asymviz sweep` sees it; the ratio two/one is taken pair by pair, median quoted.
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
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ASYMVIZ_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}

from asymviz.training.config import TrainConfig  # noqa: E402

MODES = ("ab", "b_only", "a_only")


def configs(base: TrainConfig, seeds: range) -> list[dict]:
    return [base.replace(mode=m, seed=s).to_dict() for s in seeds for m in MODES]


def loop_rate(store: Path) -> float:
    """Median over the store's packs of a pack's training-loop examples/s (run.json's pack.examples_per_s):
    what the GPU does once a process is set up."""
    rates = {}
    for run_json in store.glob("*/run.json"):
        data = json.loads(run_json.read_text())
        pack = data.get("pack") or {}
        if "examples_per_s" in pack:
            rates[tuple(pack.get("run_ids", [run_json.parent.name]))] = pack["examples_per_s"]
    return statistics.median(rates.values()) if rates else float("nan")


def run_sweeps(jobs: list[tuple[str | None, list[dict]]], store: Path, pack: int) -> float:
    """Start one `asymviz sweep --configs` per (visible GPU, configs) at once; wall seconds until all end."""
    procs = []
    t = time.perf_counter()
    for i, (gpu, cfgs) in enumerate(jobs):
        spec = store.parent / f"{store.name}_{i}.json"
        spec.write_text(json.dumps(cfgs))
        env = dict(ENV) if gpu is None else {**ENV, "CUDA_VISIBLE_DEVICES": gpu}
        cmd = [sys.executable, "-m", "asymviz", "sweep", "--configs", str(spec), "--store", str(store / str(i)),
               "--pack", str(pack), "--quiet", "--format", "csv"]  # fmt: skip
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"sweep failed (exit {p.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--runs", type=int, default=24, help="runs in all (3 modes x runs/3 seeds), half per GPU")
    ap.add_argument("--pack", type=int, default=12, help="runs per pack (--pack of asymviz sweep)")
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--bytecode-cache", default=None, metavar="DIR",
                    help="children write and reuse compiled bytecode under DIR (PYTHONPYCACHEPREFIX) even where the "
                         "machine turns bytecode writing off (PYTHONDONTWRITEBYTECODE); the warm-up pair fills it")  # fmt: skip
    args = ap.parse_args()
    base = TrainConfig(model="minilm", task="fine_foods", targets=("query", "value"), rank=8, alpha=16,
                       head=("pooler", "classifier"), steps=args.steps, batch_size=32, max_length=128, lr=5e-4,
                       max_validation=128, max_test=256, device="cuda", precision="bf16")  # fmt: skip
    gpus = ("0", "1")
    if args.cpu_smoke:
        base = base.replace(device="cpu", precision="fp32", steps=3, batch_size=4, max_length=32, max_validation=8,
                            max_test=8, threads=1)  # fmt: skip
        gpus = (None, None)
    else:
        import torch

        n = torch.cuda.device_count()
        print(f"torch {torch.__version__}, {n} x {torch.cuda.get_device_name(0)}", flush=True)
        if n < 2:
            raise SystemExit("needs 2 GPUs")
    if args.bytecode_cache:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = str(Path(args.bytecode_cache).resolve())
    print(f"children: PYTHONDONTWRITEBYTECODE={ENV.get('PYTHONDONTWRITEBYTECODE')!r}, "
          f"PYTHONPYCACHEPREFIX={ENV.get('PYTHONPYCACHEPREFIX')!r}", flush=True)  # fmt: skip
    runs = configs(base, range(args.runs // 3))
    half = len(runs) // 2
    examples = len(runs) * base.steps * base.batch_size
    one, two, ratios, loop_ratios = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for rep in range(args.reps + 1):  # the first pair warms the page cache and the kernels' caches
            w1 = run_sweeps([(gpus[0], runs)], tmp / f"one{rep}", pack=args.pack)
            w2 = run_sweeps(
                [(gpus[0], runs[:half]), (gpus[1], runs[half:])], tmp / f"two{rep}", pack=args.pack
            )
            label = "warm-up" if rep == 0 else f"rep {rep}"
            l1 = loop_rate(tmp / f"one{rep}" / "0")
            l2 = loop_rate(tmp / f"two{rep}" / "0") + loop_rate(
                tmp / f"two{rep}" / "1"
            )  # they train side by side
            print(f"  {label}: one GPU {examples / w1:.0f} ex/s ({w1:.1f} s), two GPUs {examples / w2:.0f} ex/s "
                  f"({w2:.1f} s): x{w1 / w2:.2f}; training loops alone: one GPU {l1:.0f} ex/s, two GPUs about "
                  f"{l2:.0f} ex/s (x{l2 / l1:.2f})", flush=True)  # fmt: skip
            if rep:
                one.append(examples / w1)
                two.append(examples / w2)
                ratios.append(w1 / w2)
                loop_ratios.append(l2 / l1)
    res = {"runs": len(runs), "pack": args.pack, "steps": base.steps, "examples": examples, "one_gpu_ex_s": one, "two_gpu_ex_s": two,
           "ratio_two_over_one": ratios, "loop_ratio_two_over_one": loop_ratios,
           "env": {k: ENV.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}}  # fmt: skip
    print(f"\n{len(runs)} packed runs (packs of {args.pack}, {base.steps} steps each), end to end: one GPU median {statistics.median(one):.0f} ex/s, two GPUs "
          f"{statistics.median(two):.0f} ex/s; two/one x{statistics.median(ratios):.2f} "
          f"[{min(ratios):.2f}, {max(ratios):.2f}] over {len(ratios)} pairs; training loops alone "
          f"x{statistics.median(loop_ratios):.2f} [{min(loop_ratios):.2f}, {max(loop_ratios):.2f}]")  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_pack_2gpu.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
