"""Old vs new analysis paths, side by side in one run: spectra, similarity, and the `asymviz spectra` CLI.

    python bench/bench_analysis.py                    # old = the commit this branch started from
    python bench/bench_analysis.py --old main --repeats 5 --keep

The old code is a copy of asymviz at --old (`git archive`, default: the merge base of HEAD and main) in a
temporary folder; the new code is this checkout. Every measurement is a fresh process, old and new
interleaved (so a busy machine slows both alike), timed from after `import torch` to the end: imports of
asymviz and pandas, reading the file, the analysis and building the frame (the "whole process minus
`python -c "import torch"`" figure). Rows:
  spectra    : singular_spectrum(A, B, ΔW) of one LLaMA-2-7B-shaped r = 64 adapter (224 modules, 610 MiB)
  similarity : pairwise_similarity of two such adapters (A, B, ΔW)
  cli-small  : `python -m asymviz spectra` on a MiniLM-shaped q,v r = 8 adapter, whole command (the new
               one reads and analyses safetensors on numpy and never imports torch); `python -c "import
               torch"` alone is measured beside it and printed for reference
Prints median, min and max of --repeats runs, the ratio old/new of the medians, and the median CPU seconds
(user + sys; steadier than wall time when others share the machine), and writes every run's figure with
the issue's targets to bench/results/analysis_cpu.json (`bench/perf_table.py` builds the README's table from it).
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
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_core import generate  # noqa: E402  (the LLaMA-2-7B-shaped adapter generator)
from results_io import Figure, Row, write_results  # noqa: E402

# row -> (what, target in s): the targets ("whole process minus `python -c 'import torch'`" for the
# first two, the whole command for the CLI)
ROWS: dict[str, tuple[str, float | None]] = {
    "spectra": ("spectra of A, B and ΔW, one LLaMA-2-7B-shaped r = 64 adapter (224 modules, 610 MiB), "
                "whole process minus `import torch`", 0.6),
    "similarity": ("subspace similarity (A, B, ΔW) of two such adapters, whole process minus `import torch`", 1.0),
    "cli-small": ("`asymviz spectra` on a MiniLM q,v r = 8 adapter, whole command", 0.6),
}  # fmt: skip

CHILD = """
import sys, time, json, resource
import torch
def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
c0 = cpu()
t0 = time.perf_counter()
task, paths = sys.argv[1], sys.argv[2:]
from asymviz.adapters import load_adapter
if task == "spectra":
    from asymviz.spectra import singular_spectrum
    frame = singular_spectrum(load_adapter(paths[0]))
else:
    from asymviz.similarity import pairwise_similarity
    frame = pairwise_similarity([load_adapter(p) for p in paths])
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": cpu() - c0, "rows": len(frame),
                  "file": __import__("asymviz").__file__}))
"""


def small_adapter(folder: Path) -> Path:
    """A MiniLM-shaped (6 layers, hidden 384) q,v adapter at r = 8."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(6):
        for kind in ("query", "value"):
            key = f"base_model.model.encoder.layer.{layer}.attention.self.{kind}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(8, 384, generator=g) / 384**0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(384, 8, generator=g) * 0.01
    save_file(tensors, folder / "adapter_model.safetensors")
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["query", "value"]}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def checkout(ref: str, dest: Path) -> Path:
    """asymviz/ as of `ref`, unpacked under dest (returns the folder to put on PYTHONPATH)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "asymviz"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _env(pythonpath: Path, extra: dict | None = None) -> dict:  # children run in $TMPDIR: `python -c` puts
    return dict(
        os.environ, PYTHONPATH=str(pythonpath), ASYMVIZ_NO_PROGRESS="1", **(extra or {})
    )  # the cwd first


def time_child(
    code_root: Path, task: str, paths: list[Path], extra: dict | None = None
) -> tuple[float, float]:
    cmd = [sys.executable, "-c", CHILD, task, *map(str, paths)]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(code_root, extra), check=True, cwd=tempfile.gettempdir()
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(code_root)), result["file"]
    return result["seconds"], result["cpu"]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_command(code_root: Path, argv: list[str], extra: dict | None = None) -> tuple[float, float]:
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        env=_env(code_root, extra),
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return time.perf_counter() - t0, _children_cpu() - c0


def stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} [{min(xs):5.2f}, {max(xs):5.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", default=None, help="git ref of the old code (default: merge-base HEAD main)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--rows", default="spectra,similarity,cli-small")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "asymviz-bench-7b"))
    parser.add_argument("--keep", action="store_true", help="keep the generated adapters for the next run")
    parser.add_argument(
        "--new-env",
        default="",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="also time the new code with these environment variables (a third variant, interleaved), e.g. "
        "OPENBLAS_CORETYPE=Cooperlake; the main figure stays the new code as it runs by default",
    )
    parser.add_argument(
        "--json", default="analysis_cpu", help="write bench/results/<name>.json ('' for none)"
    )
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    old_ref = (
        args.old
        or subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    new_env = dict(kv.split("=", 1) for kv in args.new_env.split(",") if kv)
    root = Path(args.dir)
    load_start = os.getloadavg()[0]
    rows: list[Row] = []
    one = generate(root / f"r{args.rank}_a", args.rank, seed=0)
    two = generate(root / f"r{args.rank}_b", args.rank, seed=1)
    small = small_adapter(root / "minilm_r8")
    with tempfile.TemporaryDirectory() as tmp:
        old_root, new_root = checkout(old_ref, Path(tmp) / "old"), ROOT
        print(
            f"old = {old_ref[:12]} (copy in {old_root}), new = {new_root}; {args.repeats} runs each, interleaved"
        )
        print(f"{'row':<11} {'old s: median [min, max]':>26} {'new s: median [min, max]':>26} {'old/new':>8}"
              f" {'CPU s old':>9} {'CPU s new':>9} {'old/new':>8}")  # fmt: skip
        for row in args.rows.split(","):
            times: dict[str, list[float]] = {"old": [], "new": [], "env": []}
            cpus: dict[str, list[float]] = {"old": [], "new": [], "env": []}
            torch_only: list[tuple[float, float]] = []
            variants = [("old", old_root, None), ("new", new_root, None)]
            if new_env:
                variants.append(("env", new_root, new_env))
            for _ in range(args.repeats):
                for label, code, extra_env in variants:
                    if row == "spectra":
                        wall, cpu = time_child(code, "spectra", [one], extra_env)
                    elif row == "similarity":
                        wall, cpu = time_child(code, "similarity", [one, two], extra_env)
                    elif row == "cli-small":
                        wall, cpu = time_command(
                            code, ["-m", "asymviz", "spectra", str(small), "--format", "csv"], extra_env
                        )
                    else:
                        raise SystemExit(f"unknown row {row!r}")
                    times[label].append(wall)
                    cpus[label].append(cpu)
                if row == "cli-small":
                    torch_only.append(time_command(new_root, ["-c", "import torch"]))
            label = row
            if row in ROWS:
                what, target = ROWS[row]
                ref = f"old = {old_ref[:12]}"
                note = (
                    f"{ref}, fresh process each, old and new interleaved; CPU s median old "
                    f"{statistics.median(cpus['old']):.2f} new {statistics.median(cpus['new']):.2f}"
                )
                extra = {"cpu_old": cpus["old"], "cpu_new": cpus["new"]}
                if times["env"]:
                    extra |= {"new_env": new_env, "new_env_s": times["env"], "cpu_new_env": cpus["env"]}
                    note += (f"; the new code with {args.new_env}: {statistics.median(times['env']):.2f} s "
                             f"[{min(times['env']):.2f}–{max(times['env']):.2f}]")  # fmt: skip
                if torch_only:
                    extra["import_torch_s"] = [t for t, _ in torch_only]
                    note += f"; `python -c 'import torch'` alone {statistics.median(t for t, _ in torch_only):.2f} s"
                rows.append(Row(what, "s", Figure(times["new"]), Figure(times["old"]), target, note=note,
                                extra=extra))  # fmt: skip
            ratio = statistics.median(times["old"]) / statistics.median(times["new"])
            cpu_old, cpu_new = statistics.median(cpus["old"]), statistics.median(cpus["new"])
            print(f"{label:<11} {stats(times['old']):>26} {stats(times['new']):>26} {ratio:>8.2f}"
                  f" {cpu_old:>9.2f} {cpu_new:>9.2f} {cpu_old / cpu_new:>8.2f}")  # fmt: skip
            if times["env"]:
                print(f"  new with {args.new_env}: {stats(times['env'])} s wall, "
                      f"{statistics.median(cpus['env']):.2f} s CPU")  # fmt: skip
            if torch_only:
                print(f"  for reference, `python -c 'import torch'` alone: {stats([t for t, _ in torch_only])} s"
                      f" wall, {statistics.median(c for _, c in torch_only):.2f} s CPU")  # fmt: skip
        print(f"machine load average: {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end,"
              f" on {os.cpu_count()} CPUs")  # fmt: skip
    if args.json:
        command = "python bench/bench_analysis.py " + " ".join(sys.argv[1:])
        print("wrote", write_results(args.json, command.strip(), rows, load_start))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
