"""Spectra and similarity on a LLaMA-2-7B-shaped adapter, against reading the file and against dense SVDs.

    python bench/bench_core.py            # r = 16 and r = 64 (writes ~0.8 GiB of adapters under $TMPDIR)
    python bench/bench_core.py --ranks 64 --keep

Generates q,k,v,o,gate,up,down × 32 layers (hidden 4096, intermediate 11008) with random fp32 A and B,
then, each in a fresh subprocess so that peak memory is its own:
  read   : read every byte of the file (the floor for any analysis of it)
  spectra: asymviz.spectra.singular_spectrum(which=A, B, delta) for all 224 modules
  simil. : asymviz.similarity.pairwise_similarity between two such adapters (A, B, delta)
  dense  : densify ΔW and torch.linalg.svdvals for one module of each of the 3 shapes, extrapolated to 224
and prints the ratios side by side. Peak memory is the growth of the process's peak RSS over its RSS
after imports, as a multiple of the file size (target ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, INTER, LAYERS = 4096, 11008, 32
SHAPES = {  # kind: (d_in, d_out)
    "self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, HIDDEN),
    "self_attn.v_proj": (HIDDEN, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (HIDDEN, INTER), "mlp.up_proj": (HIDDEN, INTER), "mlp.down_proj": (INTER, HIDDEN),
}  # fmt: skip


def generate(folder: Path, r: int, seed: int) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "adapter_model.safetensors").exists():
        return folder
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for kind, (d_in, d_out) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{kind}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=g) / d_in**0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, r, generator=g) * 0.01
    save_file(tensors, folder / "adapter_model.safetensors")
    cfg = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 2 * r,
        "target_modules": [k.split(".")[1] for k in SHAPES],
    }
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return folder


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(task: str, paths: list[str]) -> dict:
    """Run one measurement in this (fresh) process and return its numbers."""
    import torch

    import asymviz.similarity  # noqa: F401  (imports done before the baseline RSS)
    import asymviz.spectra  # noqa: F401
    from asymviz.adapters import load_adapter

    base = _rss_mib()
    t0 = time.perf_counter()
    if task == "read":
        with open(paths[0], "rb", buffering=0) as f:
            while f.read(64 << 20):
                pass
        out = {}
    elif task == "spectra":
        frame = asymviz.spectra.singular_spectrum(load_adapter(paths[0]))
        out = {"rows": len(frame)}
    elif task == "similarity":
        frame = asymviz.similarity.pairwise_similarity([load_adapter(p) for p in paths])
        out = {"rows": len(frame)}
    elif task == "dense":
        adapter = load_adapter(paths[0])
        per_kind = {}
        torch.set_num_threads(os.cpu_count() or 1)
        per_shape = {}
        for spec in adapter.modules[: len(SHAPES)]:  # layer 0: time one module of each distinct shape
            shape = (spec.d_out, spec.d_in)
            if shape not in per_shape:
                m = adapter.module(spec.name)
                t = time.perf_counter()
                torch.linalg.svdvals(torch.from_numpy(m.delta_weight()))
                per_shape[shape] = time.perf_counter() - t
            per_kind[spec.kind] = per_shape[shape]
        out = {"per_kind_s": per_kind, "extrapolated_s": LAYERS * sum(per_kind.values())}
    else:
        raise ValueError(task)
    out.update(seconds=time.perf_counter() - t0, peak_growth_mib=_peak_mib() - base)
    return out


def run_child(task: str, paths: list[Path]) -> dict:
    cmd = [sys.executable, __file__, "--child", task, *map(str, paths)]
    env = dict(os.environ, ASYMVIZ_NO_PROGRESS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", default="16,64")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "asymviz-bench-7b"))
    parser.add_argument("--keep", action="store_true", help="keep the generated adapters for the next run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return

    root = Path(args.dir)
    print(f"{'r':>3} {'file MiB':>9} {'read s':>7} {'spectra s':>9} {'x read':>7} {'peak/file':>9} "
          f"{'simil. s':>8} {'x read':>7} {'dense s (extrap.)':>17} {'dense/spectra':>13}")  # fmt: skip
    for r in (int(x) for x in args.ranks.split(",")):
        one = generate(root / f"r{r}_a", r, seed=0)
        two = generate(root / f"r{r}_b", r, seed=1)
        size_mib = (one / "adapter_model.safetensors").stat().st_size / 2**20
        read = min(run_child("read", [one / "adapter_model.safetensors"])["seconds"] for _ in range(2))
        spectra = run_child("spectra", [one])
        simil = run_child("similarity", [one, two])
        dense = run_child("dense", [one])
        print(
            f"{r:>3} {size_mib:>9.0f} {read:>7.2f} {spectra['seconds']:>9.2f} {spectra['seconds'] / read:>7.1f} "
            f"{spectra['peak_growth_mib'] / size_mib:>9.2f} {simil['seconds']:>8.2f} {simil['seconds'] / read:>7.1f} "
            f"{dense['extrapolated_s']:>17.1f} {dense['extrapolated_s'] / spectra['seconds']:>13.0f}"
        )
        print(
            f"    dense svdvals per module kind (s): {json.dumps({k: round(v, 2) for k, v in dense['per_kind_s'].items()})}"
        )
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
