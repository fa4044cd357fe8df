"""Alignment of a real MiniLM adapter on 256 fine_foods examples, and the data-free diagnostics on SmolLM2
(all 30 layers), with the dense computations they avoid timed side by side.

    PYTHONPATH=. python bench/bench_alignment.py                     # both parts
    PYTHONPATH=. python bench/bench_alignment.py --part minilm --run RUN_FOLDER
    PYTHONPATH=. python bench/bench_alignment.py --part smollm2 --targets q_proj,v_proj

MiniLM: without --run, real runs are trained once through the training engine and kept under
~/.cache/asymviz/bench/ (modes ab and b_only: LoRA r=8 on every layer's query/value, pooler + classifier
trained, 150 steps of 16 x 64 tokens, fine_foods; the engine saves the init before the first step), then
  load   : the base model + head + adapter through PEFT, and 256 training-split examples
  data   : forward + backward with hooks (X: d_in², G: d_out² per module), over length-sorted batches
  table  : eigen-subspaces, W0's SVD and the similarity rows (trained and init)
and the summary per (source, which, side): similarity against its random baseline.

SmolLM2: the GGUF is dequantised once to a bf16 safetensors copy (the training engine's, cached), then a synthetic adapter on
every layer's target modules (random A, small random B; timing only, its numbers mean nothing) goes through
`diagnose` three times: cold (no SVD cached), disk (SVDs read from the disk cache) and memory (in-process
cache). "dense" is the computation the low-rank path avoids: SVD of the dense W0 + ΔW, per module.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_CACHE = Path(os.environ.get("ASYMVIZ_CACHE") or Path.home() / ".cache" / "asymviz") / "bench"
SMOLLM2_KINDS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                 "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}  # fmt: skip


class Timer:
    """Wall and CPU seconds per named block (the machine is shared: CPU time is the steadier number)."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name):
        timer = self

        class _T:
            def __enter__(self):
                self.t, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.times[name] = time.perf_counter() - self.t
                timer.cpu[name] = time.process_time() - self.c

        return _T()

    def report(self, width: int = 34) -> None:
        print(f"  {'':{width}s} {'wall':>8s} {'cpu':>8s}")
        for name, sec in self.times.items():
            print(f"  {name:{width}s} {sec:7.2f}s {self.cpu[name]:7.2f}s")


# ------------------------------------------------------------------------------------------------------------
# MiniLM


def train_runs(modes: list[str], steps: int) -> dict[str, Path]:
    """Real MiniLM fine-tunes on fine_foods through the training engine (LoRA r=8 on every layer's query and
    value, pooler + classifier trained in full), once per mode; kept under ~/.cache/asymviz/bench/."""
    from asymviz.runs import RunRecord, is_run_folder
    from asymviz.training import TrainConfig, train

    runs = {}
    for mode in modes:
        cfg = TrainConfig(model="minilm", task="fine_foods", mode=mode, rank=8, alpha=16.0, targets=("query", "value"),
                          steps=steps, batch_size=16, max_length=64, lr=2e-3, max_validation=200, max_test=400,
                          device="cpu")  # fmt: skip
        folder = BENCH_CACHE / cfg.run_id()
        if not (is_run_folder(folder) and RunRecord.load(folder).status == "completed"):
            print(f"MiniLM: training {cfg.run_id()} (once, cached) ...", flush=True)
            record = train(cfg, folder, overwrite=True)
        else:
            record = RunRecord.load(folder)
        m = record.final_metrics
        print(f"  {mode:7s} test accuracy {m.get('test_accuracy', float('nan')):.3f}  ({folder})")
        runs[mode] = folder
    return runs


def bench_minilm(run: Path, samples: int, k: int, label: str = "") -> None:
    import pandas as pd
    import torch

    from asymviz.probes.activations import collect_moments
    from asymviz.probes.alignment import (
        alignment_summary,
        alignment_table,
        load_adapted_model,
        load_sample,
        open_adapter,
        run_settings,
        sample_batches,
    )

    t = Timer()
    settings = run_settings(run)
    with t("load"):
        adapter, init, folder = open_adapter(run)
        sample = load_sample(settings.get("task", "fine_foods"), samples, seed=0)
        model, tokenizer = load_adapted_model(adapter, folder, settings.get("model", "minilm"), sample)
    with t("tokenise"):
        batches = sample_batches(sample, tokenizer, model, 16, 128)
    n_tok = sum(int(b["attention_mask"].sum()) for b in batches)
    with t("data (fwd+bwd, hooks)"):
        moments = collect_moments(model, adapter.names, batches, output="gradient")
    with t("data (fwd only, no labels)"):
        collect_moments(model, adapter.names, [{k: v for k, v in b.items() if k != "labels"} for b in batches],
                        output="activation")  # fmt: skip
    with t("table (trained + init)"):
        frame = alignment_table(adapter, moments, model, k=k, init=init)
    with t("plain forward, no hooks"):
        with torch.no_grad():
            for b in batches:
                model(**{k: v for k, v in b.items() if k != "labels"})
    total = (
        t.times["load"]
        + t.times["tokenise"]
        + t.times["data (fwd+bwd, hooks)"]
        + t.times["table (trained + init)"]
    )
    print(f"\nMiniLM alignment {label}: {len(adapter)} modules, {len(sample)} examples, {n_tok} tokens (max 128 "
          f"each), k={k}, torch threads {torch.get_num_threads()}")  # fmt: skip
    t.report(28)
    cpu = sum(t.cpu[n] for n in ("load", "tokenise", "data (fwd+bwd, hooks)", "table (trained + init)"))
    print(
        f"  {'total (align end to end)':28s} {total:7.2f}s {cpu:7.2f}s   (load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  hooks+backward vs plain forward: {t.times['data (fwd+bwd, hooks)'] / t.times['plain forward, no hooks']:.1f}x"
    )
    pd.set_option("display.width", 160)
    print("\nsummary (mean over modules; ratio = similarity / random baseline):")
    print(alignment_summary(frame).round(3).to_string(index=False))
    per_layer = frame[frame["source"] == "trained"].pivot_table(
        index="layer", columns=["which", "side"], values="similarity", aggfunc="mean"
    )
    print("\ntrained, similarity per layer (mean over query/value):")
    print(per_layer.round(3).to_string())
    print(f"random baseline: {frame['random_baseline'].dropna().unique().round(4).tolist()}")


# ------------------------------------------------------------------------------------------------------------
# SmolLM2


def smollm2_adapter(model, targets: list[str], r: int = 8, seed: int = 0):
    import torch

    from asymviz.adapters import from_state_dict
    from asymviz.probes.base_weights import find_module

    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(model.config.num_hidden_layers):
        for kind in targets:
            name = f"model.layers.{layer}.{SMOLLM2_KINDS[kind]}.{kind}"
            d_out, d_in = find_module(model, name).weight.shape
            tensors[f"base_model.model.{name}.lora_A.weight"] = (
                torch.rand(r, d_in, generator=g) * 2 - 1
            ) / d_in**0.5
            tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(d_out, r, generator=g) * 0.02
    config = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": targets}
    return from_state_dict(tensors, config, source="synthetic SmolLM2 adapter")


def bench_smollm2(targets: list[str], k: int, dense_modules: int) -> None:
    import torch

    from asymviz import base_weights
    from asymviz.linalg import parallel_map
    from asymviz.probes.base_weights import base_weight, clear_svd_cache, load_base_model
    from asymviz.probes.diagnostics import diagnose

    t = Timer()
    cached = (base_weights.cache_dir() / "smollm2-135m-instruct" / "config.json").is_file()
    with t("load (dequantised copy cached)" if cached else "load (dequantise GGUF once)"):
        model = load_base_model("smollm2", head="causal_lm")
    adapter = smollm2_adapter(model, targets)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASYMVIZ_CACHE"] = tmp  # an empty SVD cache for the cold run
        clear_svd_cache()
        with t("diagnose cold (W0 SVDs computed)"):
            frame = diagnose(adapter, model, k=k)
        clear_svd_cache()
        with t("diagnose, SVDs from disk"):
            diagnose(adapter, model, k=k)
        with t("diagnose, SVDs in memory"):
            diagnose(adapter, model, k=k)
        disk = sum(f.stat().st_size for f in Path(tmp, "svd").glob("*")) / 2**20
    # the computation the low-rank path avoids: a dense SVD of W0 + ΔW per module (a sample, extrapolated)
    sample = adapter.modules[:: max(1, len(adapter) // dense_modules)][:dense_modules]

    def dense_svd(spec):  # same threading as diagnose: one module per worker, one torch thread each
        m = adapter.module(spec.name)
        return torch.linalg.svd(
            base_weight(model, spec) + torch.from_numpy(m.delta_weight()), full_matrices=False
        )

    t0, c0 = time.perf_counter(), time.process_time()
    parallel_map(dense_svd, sample)
    dense = (time.perf_counter() - t0) / len(sample) * len(adapter)
    dense_cpu = (time.process_time() - c0) / len(sample) * len(adapter)
    print(f"\nSmolLM2 diagnostics: {len(adapter)} modules ({', '.join(targets)} x {model.config.num_hidden_layers}"
          f" layers), k={k}, torch threads {torch.get_num_threads()}")  # fmt: skip
    t.report(34)
    print(f"  {'dense SVD of W0+ΔW (extrapolated)':34s} {dense:7.2f}s {dense_cpu:7.2f}s   ({len(sample)} modules timed; "
          f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(
        f"  disk cache of W0's SVDs: {disk:.0f} MiB; subspace iterations per module: "
        f"median {frame['iterations'].median():.0f}, max {frame['iterations'].max()}"
    )
    warm = t.times["diagnose, SVDs in memory"]
    print(f"  dense SVD / diagnose with SVDs cached: {dense / warm:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("minilm", "smollm2", "both"), default="both")
    p.add_argument(
        "--run", type=Path, help="a MiniLM run folder or adapter (default: train a quick one, cached)"
    )
    p.add_argument(
        "--modes", default="ab,b_only", help="modes of the MiniLM runs trained when --run is not given"
    )
    p.add_argument("--steps", type=int, default=150, help="training steps of those runs")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--k", type=int, default=8, help="alignment reference dimension")
    p.add_argument("--targets", default="q_proj,v_proj", help="SmolLM2 modules per layer, or 'all'")
    p.add_argument("--dense-modules", type=int, default=8)
    args = p.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.part in ("minilm", "both"):
        runs = {"given": args.run} if args.run else train_runs(args.modes.split(","), args.steps)
        for mode, run in runs.items():
            bench_minilm(run, args.samples, args.k, label=f"({mode})")
    if args.part in ("smollm2", "both"):
        targets = list(SMOLLM2_KINDS) if args.targets == "all" else args.targets.split(",")
        bench_smollm2(targets, 10, args.dense_modules)


if __name__ == "__main__":
    main()
