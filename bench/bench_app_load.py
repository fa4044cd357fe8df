"""Page latency of the app alone and under load, side by side in one run (reported, never asserted).

    PYTHONPATH=. python bench/bench_app_load.py [--reps 3] [--sessions 10]

Starts one `streamlit run` server on a tiny run store (tests/app_helpers.py: a 2-layer BERT, a few runs), then
for each repetition: one Overview session alone (the baseline), and --sessions sessions at once in the mix of
tests/load_sessions.py (Overview, Compare, an upload, live fine-tunes of the tiny model queued behind each
other; each request its own seed, so nothing is reused). A latency is the time from opening the app to the
session's result (its figure, the upload's spectrum, the fine-tune's request accepted); the fine-tunes
themselves are waited for after each round. Prints per kind: median (min-max) over sessions and repetitions,
and the ratio of the loaded Overview's median to the lone one's. Needs chromium and playwright, like the
browser tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from app_helpers import train_tiny_store, write_bert_like_adapter, write_tiny_model_and_task, zip_folder  # noqa: E402
from load_sessions import MIX, run_sessions, start_server, stop_server, wait_for_jobs  # noqa: E402


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=len(MIX))
    parser.add_argument("--out", help="also write the raw latencies as JSON here")
    args = parser.parse_args()
    kinds = (MIX * (args.sessions // len(MIX) + 1))[: args.sessions]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "store"
        train_tiny_store(store, root / "train")
        model, task = write_tiny_model_and_task(root / "tiny")
        archive = zip_folder(write_bert_like_adapter(root / "adapter", seed=3), root / "adapter.zip")
        setup = {"model": model, "task": task, "zip": archive, "steps": 2}
        proc, url = start_server(store, root / "streamlit.log")
        alone: list[float] = []
        loaded: dict[str, list[float]] = {}
        failures = []
        n_jobs = 0
        try:
            asyncio.run(run_sessions(url, ["overview"], setup))  # warm the server's caches once
            for rep in range(args.reps):
                (lone,) = asyncio.run(run_sessions(url, ["overview"], setup))
                if lone.latency_s is not None:
                    alone.append(lone.latency_s)
                t = time.perf_counter()
                outcomes = asyncio.run(run_sessions(url, kinds, {**setup, "seed_offset": rep * 1000}))
                n_jobs += kinds.count("live")
                listed = wait_for_jobs(store, n_jobs, timeout=900)
                print(f"rep {rep}: {len(kinds)} sessions in {time.perf_counter() - t:.1f} s, jobs "
                      f"{sorted({j.status for j in listed})}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
                for o in outcomes:
                    if o.error:
                        failures.append((rep, o.kind, o.index, o.error))
                    else:
                        loaded.setdefault(o.kind, []).append(o.latency_s)
        finally:
            stop_server(proc)
    print(f"overview alone        {_summary(alone)}" if alone else "overview alone: no result")
    for kind, values in sorted(loaded.items()):
        print(f"{kind:<10} in {len(kinds)}    {_summary(values)}")
    if alone and loaded.get("overview"):
        ratio = statistics.median(loaded["overview"]) / statistics.median(alone)
        print(f"overview under load / alone: x{ratio:.2f} (medians)")
    for f in failures:
        print("failed:", f)
    if args.out:
        Path(args.out).write_text(
            json.dumps({"alone": alone, "loaded": loaded, "failures": failures}, indent=1)
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
