"""analyze_collection on N LLaMA-2-7B-shaped adapters against a naive all-pairs loop, side by side.

    python bench/bench_collection.py                 # N = 20 at r = 16 (writes ~3 GiB under $TMPDIR)
    python bench/bench_collection.py --n 20 --small 4 --repeats 3 --keep

Each measurement is a fresh process (peak RSS is its own), the two paths interleaved:
  collection : asymviz.collection.analyze_collection(N adapters, which = A, B, delta)
  naive      : pairwise_similarity([a_i, a_j]) for every pair i < j (each call reads both adapters and
               recomputes both bases). Run in full for the --small first adapters; for all N it is timed on
               --sample pairs and extrapolated to N(N-1)/2 pairs (printed as such).
Prints median [min, max] seconds of --repeats runs, the naive/collection ratio, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import generate  # noqa: E402  (the LLaMA-2-7B-shaped adapter generator)


def child(task: str, paths: list[str]) -> dict:
    import torch  # noqa: F401

    from asymviz.adapters import load_adapter
    from asymviz.collection import analyze_collection
    from asymviz.similarity import pairwise_similarity

    t0 = time.perf_counter()
    adapters = [load_adapter(p) for p in paths]
    if task == "collection":
        result = analyze_collection(adapters, names=[f"a{i}" for i in range(len(adapters))])
        out = {"rows": len(result.similarity)}
    elif task == "naive":
        rows = 0
        n = len(adapters)
        for i in range(n):
            for j in range(i + 1, n):
                rows += len(pairwise_similarity([adapters[i], adapters[j]], names=["x", "y"]))
        out = {"rows": rows, "pairs": n * (n - 1) // 2}
    elif task == "naive-pairs":  # paths are the pairs, flattened
        for i in range(0, len(adapters), 2):
            pairwise_similarity([adapters[i], adapters[i + 1]], names=["x", "y"])
        out = {"pairs": len(adapters) // 2}
    else:
        raise ValueError(task)
    out.update(
        seconds=time.perf_counter() - t0,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return out


def run_child(task: str, paths) -> dict:
    cmd = [sys.executable, __file__, "--child", task, *map(str, paths)]
    env = dict(os.environ, ASYMVIZ_NO_PROGRESS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.2f} [{min(xs):6.2f}, {max(xs):6.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--small", type=int, default=4, help="N for the fully measured naive comparison")
    parser.add_argument(
        "--sample", type=int, default=4, help="pairs timed to extrapolate the naive loop at --n"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "asymviz-bench-collection"))
    parser.add_argument("--keep", action="store_true", help="keep the generated adapters for the next run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")

    root = Path(args.dir)
    paths = [generate(root / f"r{args.rank}_{i:02d}", args.rank, seed=100 + i) for i in range(args.n)]
    size = sum((p / "adapter_model.safetensors").stat().st_size for p in paths) / 2**20
    print(f"{args.n} adapters at r = {args.rank}, 224 modules each, {size:.0f} MiB in all; "
          f"{args.repeats} runs each, interleaved; seconds as median [min, max]")  # fmt: skip
    small = paths[: args.small]
    pairs = [
        (paths[i], paths[j])
        for i, j in [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (1, 2), (3, 4)][: args.sample]
    ]
    res: dict[str, list[dict]] = {
        "small-collection": [],
        "small-naive": [],
        "collection": [],
        "naive-pairs": [],
    }
    for _ in range(args.repeats):
        res["small-collection"].append(run_child("collection", small))
        res["small-naive"].append(run_child("naive", small))
        res["collection"].append(run_child("collection", paths))
        res["naive-pairs"].append(run_child("naive-pairs", [p for pair in pairs for p in pair]))
    sec = {k: [r["seconds"] for r in v] for k, v in res.items()}
    peak = {k: max(r["peak_rss_mib"] for r in v) for k, v in res.items()}
    n_pairs = args.n * (args.n - 1) // 2
    naive_full = [s / len(pairs) * n_pairs for s in sec["naive-pairs"]]
    print(f"N = {args.small:<3} collection {fmt(sec['small-collection'])}  naive ({args.small * (args.small - 1) // 2} pairs, "
          f"measured) {fmt(sec['small-naive'])}  naive/collection "
          f"{statistics.median(sec['small-naive']) / statistics.median(sec['small-collection']):.1f}x")  # fmt: skip
    print(f"N = {args.n:<3} collection {fmt(sec['collection'])}  naive ({n_pairs} pairs, extrapolated from "
          f"{len(pairs)} timed) {fmt(naive_full)}  naive/collection "
          f"{statistics.median(naive_full) / statistics.median(sec['collection']):.1f}x")  # fmt: skip
    print(f"peak RSS MiB (whole process, incl. torch): collection N={args.n} {peak['collection']:.0f}, "
          f"N={args.small} {peak['small-collection']:.0f}; naive N={args.small} {peak['small-naive']:.0f}")  # fmt: skip
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
