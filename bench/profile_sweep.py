"""Where a packed sweep's wall time goes: process start and imports, set-up, training, evaluation, saves.

    ASYMVIZ_MINILM=.carry/minilm-fp16 PYTHONUNBUFFERED=1 python3 bench/profile_sweep.py --out $OUT   # H200
    PYTHONPATH=. python bench/profile_sweep.py --cpu-smoke                                          # toy sizes

Runs `asymviz sweep --configs ... --pack P` (MiniLM on fine_foods, r = 8 on query/value, batch 32 x 128, bf16, as
bench/gpu_pack_2gpu.py) once plainly and once under cProfile, and prints:
- the whole command's wall time, and `python -c "import asymviz.training.sweep, transformers, peft"` alone;
- per pack, from its runs' run.json timings: wall (pack start to the last save), train, eval, save;
- what is left outside the packs (process start, imports, planning, store);
- the cProfile's top functions by cumulative time (the profiled run is slower; read it for shares, not seconds).
Writes $OUT/profile_sweep.json and $OUT/profile_sweep.txt.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ASYMVIZ_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}

from gpu_pack_2gpu import configs  # noqa: E402

from asymviz.training.config import TrainConfig  # noqa: E402


def sweep_cmd(spec: Path, store: Path, pack: int) -> list[str]:
    return ["-m", "asymviz", "sweep", "--configs", str(spec), "--store", str(store), "--pack", str(pack),
            "--quiet", "--format", "csv"]  # fmt: skip


def run(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed (exit {res.returncode}): {' '.join(argv)}\n{res.stderr[-3000:]}")
    return time.perf_counter() - t


def pack_timings(store: Path) -> list[dict]:
    """Per pack (runs sharing run.json's pack.run_ids): wall, train, eval, save seconds (saves summed)."""
    packs: dict[tuple, dict] = {}
    for run_json in sorted(store.glob("*/run.json")):
        data = json.loads(run_json.read_text())
        key = tuple(data.get("pack", {}).get("run_ids", [run_json.parent.name]))
        t = data.get("timings", {})
        p = packs.setdefault(
            key, {"runs": len(key), "wall_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "save_s": 0.0}
        )
        p["wall_s"] = max(p["wall_s"], t.get("wall_s", 0.0))
        p["train_s"], p["eval_s"] = t.get("train_s", 0.0), t.get("eval_s", 0.0)
        p["save_s"] += t.get("save_s", 0.0)
    return list(packs.values())


def in_process(runs: list[dict], tmp: Path, pack: int, say) -> None:
    """The same runs through pack.train_jobs_packed in this process, twice over one Workspace: the second time
    (imports done, model and data cached: what every pack after a sweep's first pays) timed plainly, then once
    more under cProfile, its set-up functions listed."""
    import cProfile

    from asymviz.runs import RunStore
    from asymviz.training.config import TrainConfig
    from asymviz.training.pack import train_jobs_packed
    from asymviz.training.workspace import Workspace

    jobs = [type("Job", (), {"config": TrainConfig.from_dict(c), "annotations": {}})() for c in runs]
    ws = Workspace()
    train_jobs_packed(jobs, RunStore(tmp / "ip_warm"), pack, workspace=ws)
    t = time.perf_counter()
    train_jobs_packed(jobs, RunStore(tmp / "ip_plain"), pack, workspace=ws)
    wall = time.perf_counter() - t
    for i, p in enumerate(pack_timings(tmp / "ip_plain")):
        say(f"in process, warm: pack {i} ({p['runs']} runs): wall {p['wall_s']:.2f} s = train {p['train_s']:.2f} + "
            f"eval {p['eval_s']:.2f} + saves {p['save_s']:.2f} + set-up "
            f"{p['wall_s'] - p['train_s'] - p['eval_s'] - p['save_s']:.2f}")  # fmt: skip
    say(f"in process, warm: all packs {wall:.2f} s")
    prof = cProfile.Profile()
    prof.enable()
    train_jobs_packed(jobs, RunStore(tmp / "ip_prof"), pack, workspace=ws)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats("asymviz|peft|safetensors", 50)
    say(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".")
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--pack", type=int, default=24)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--in-process-only", action="store_true", help="only the warm in-process profile")
    args = ap.parse_args()
    base = TrainConfig(model="minilm", task="fine_foods", targets=("query", "value"), rank=8, alpha=16,
                       head=("pooler", "classifier"), steps=args.steps, batch_size=32, max_length=128, lr=5e-4,
                       max_validation=128, max_test=256, device="cuda", precision="bf16")  # fmt: skip
    env = dict(ENV)
    if args.cpu_smoke:
        base = base.replace(device="cpu", precision="fp32", steps=3, batch_size=4, max_length=32, max_validation=8,
                            max_test=8, threads=1)  # fmt: skip
    else:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    runs = configs(base, range(args.runs // 3))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = tmp / "configs.json"
        spec.write_text(json.dumps(runs))
        if args.in_process_only:
            in_process(runs, tmp, args.pack, say)
            (out / "profile_sweep.txt").write_text("\n".join(lines))
            return
        imports = [run(["-c", "import asymviz.training.sweep, transformers, peft"], env) for _ in range(3)]
        run(sweep_cmd(spec, tmp / "warm", args.pack), env)  # page cache, kernels' caches
        wall = run(sweep_cmd(spec, tmp / "plain", args.pack), env)
        packs = pack_timings(tmp / "plain")
        prof = tmp / "sweep.prof"
        wall_prof = run(["-m", "cProfile", "-o", str(prof), *sweep_cmd(spec, tmp / "prof", args.pack)], env)
        in_packs = sum(p["wall_s"] for p in packs)
        examples = len(runs) * base.steps * base.batch_size
        say(f"{len(runs)} runs, packs of {args.pack}, {base.steps} steps, {base.device}: whole command {wall:.1f} s "
            f"({examples / wall:.0f} ex/s); under cProfile {wall_prof:.1f} s")  # fmt: skip
        say(
            f"`import asymviz.training.sweep, transformers, peft` alone (whole process): "
            f"{sorted(imports)[1]:.2f} s (median of 3)"
        )
        for i, p in enumerate(packs):
            say(f"  pack {i} ({p['runs']} runs): wall {p['wall_s']:.2f} s = train {p['train_s']:.2f} + eval "
                f"{p['eval_s']:.2f} + saves {p['save_s']:.2f} + other (set-up) "
                f"{p['wall_s'] - p['train_s'] - p['eval_s'] - p['save_s']:.2f}")  # fmt: skip
        say(f"outside the packs (process start, imports, planning): {wall - in_packs:.2f} s")
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).sort_stats("cumulative").print_stats(args.top)
        say(buf.getvalue())
        buf = io.StringIO()
        pstats.Stats(str(prof), stream=buf).sort_stats("tottime").print_stats(25)
        say(buf.getvalue())
        in_process(runs, tmp, args.pack, say)
    (out / "profile_sweep.txt").write_text("\n".join(lines))
    (out / "profile_sweep.json").write_text(json.dumps(
        {"runs": len(runs), "pack": args.pack, "steps": base.steps, "wall_s": wall, "imports_s": imports,
         "packs": packs, "outside_packs_s": wall - in_packs}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
