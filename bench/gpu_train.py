"""GPU checks of the training engine, for a machine with no network (one command, about 5 minutes):

    ASYMVIZ_MINILM=.carry/minilm-fp16 PYTHONUNBUFFERED=1 python3 bench/gpu_train.py --out $OUT

(make the MiniLM copy first, here: `PYTHONPATH=. python bench/make_minilm_fp16.py`, and carry `.carry`; on a 2-GPU
machine the `ddp` part runs too). Parts (`--parts`, default all):

- plain:  asymviz `train` vs a plain PEFT loop (bench/plain_loop.py), same model/batches: MiniLM on fine_foods,
          q,v on all layers, r=8, batch 32 x 128, bf16 autocast, 300 steps, alternated twice; examples/s, ratio.
- modes:  ab vs b_only vs a_only, examples/s (tokens/s) and peak GPU memory (torch.cuda.max_memory_allocated):
          MiniLM as above, and a LLaMA-shaped 1.1B model built from a config (random weights, bf16, TinyLlama
          shape), LoRA r=16 on all linear layers, batch 8 x 512, 25 steps.
- sweep:  12 MiniLM runs (3 modes x 4 seeds, 375 steps each) on one GPU with 6 worker processes in flight;
          summed examples/s over the sweep's wall time (start-up included) vs the plain loop's (target >= 3x).
- ddp_llama: (2+ GPUs) one 1.1B LLaMA-shaped run on 1 GPU vs 2 (DDP, batch 8 x 512 per GPU), alternated.
- ddp:    (2+ GPUs) `accelerate launch --multi_gpu --num_processes 2 -m asymviz.training train ...` (batch 32 per
          GPU) vs one GPU, and a sweep with one worker per GPU.

Prints one summary table at the end and writes $OUT/gpu_train.json. `--dry-run` runs every part on the CPU at
toy sizes (tiny step counts, a tiny LLaMA, CPU sweep workers, DDP through torchrun with gloo) to check the script
before spending GPU time: `PYTHONPATH=. python bench/gpu_train.py --dry-run`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("ASYMVIZ_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

import torch  # noqa: E402

from asymviz.runs import RunRecord  # noqa: E402
from asymviz.training.config import MODES, TrainConfig  # noqa: E402

MINILM = TrainConfig(model="minilm", task="fine_foods", targets=("query", "value"), rank=8, alpha=16,
                     head=("pooler", "classifier"), steps=300, batch_size=32, max_length=128, lr=5e-4,
                     max_validation=128, max_test=256, device="cuda", precision="bf16")  # fmt: skip
SUMMARY: list[tuple[str, str]] = []
DEVICE = "cuda"  # "cpu" with --dry-run
DRY = False


def note(key: str, value: str) -> None:
    SUMMARY.append((key, value))
    print(f"  {key}: {value}", flush=True)


def free_gpu() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def part_plain(tmp: Path) -> dict:
    from plain_loop import plain_peft_loop

    from asymviz.training.loop import train

    print("\n== plain PEFT loop vs asymviz train (one GPU)", flush=True)
    plain_peft_loop(MINILM, steps=2 if DRY else 20, device=DEVICE)  # CUDA context, cuBLAS, kernels warm
    plain, ours = [], []
    for rep in range(2):
        free_gpu()
        plain.append(plain_peft_loop(MINILM, device=DEVICE)["examples_per_s"])
        free_gpu()
        rec = train(MINILM, tmp / f"plain_ours{rep}", overwrite=True)
        ours.append(rec.final_metrics["examples_per_s"])
        print(f"  rep {rep}: plain {plain[-1]:.0f} ex/s, asymviz {ours[-1]:.0f} ex/s "
              f"(test acc {rec.final_metrics['test_accuracy']:.3f})", flush=True)  # fmt: skip
    res = {"plain_ex_s": max(plain), "ours_ex_s": max(ours), "ratio": max(ours) / max(plain)}
    note("plain loop, MiniLM 32x128", f"{res['plain_ex_s']:.0f} ex/s")
    note("asymviz train, same", f"{res['ours_ex_s']:.0f} ex/s (x{res['ratio']:.3f} of plain; target >= 0.95)")
    return res


def _llama_assets(tmp: Path) -> tuple[Path, Path]:
    """A TinyLlama-shaped 1.1B model (random, bf16) with the MiniLM tokenizer, and a long-answer LM task."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from asymviz.base.models import resolve_model
    from asymviz.base.tasks import load_task

    folder = tmp / "llama1b"
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=30522, max_position_embeddings=2048, pad_token_id=0)  # fmt: skip
    if DRY:
        cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=30522, max_position_embeddings=2048, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    free_gpu()
    tok = Path(resolve_model("minilm").path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tok / name).exists():
            shutil.copy(tok / name, folder / name)
    reviews = list(load_task("fine_foods").train["text"])
    rows, i = [], 0
    while len(rows) < 400:
        answer = ""
        while len(answer) < 3500:
            answer += " " + reviews[i % len(reviews)]
            i += 1
        rows.append({"text": f"Write some reviews, please (batch {len(rows)}).", "answer": answer})
    task = tmp / "long_lm.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, task


def _llama_config(folder: Path, task: Path) -> TrainConfig:
    """LoRA r=16 on every linear layer of the 1.1B LLaMA shape, batch 8 x 512 tokens, bf16, 25 steps."""
    cfg = TrainConfig(model=str(folder), task=str(task), rank=16, alpha=32, steps=25, batch_size=8, max_length=512,
                      targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                      lr=1e-4, max_validation=16, max_test=16, device=DEVICE, precision="bf16")  # fmt: skip
    if DRY:
        cfg = cfg.replace(steps=2, batch_size=2, max_length=64, max_validation=4, max_test=4)
    return cfg


def part_modes(tmp: Path, llama_steps: int = 25, llama_pairs: int = 3) -> dict:
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    print("\n== modes: speed and peak memory (one GPU)", flush=True)
    out = {"minilm": {}, "llama1b": {}}
    ws = Workspace()
    for mode in MODES:
        free_gpu()
        rec = train(MINILM.replace(mode=mode), tmp / f"modes_minilm_{mode}", workspace=ws, overwrite=True)
        m = rec.final_metrics
        out["minilm"][mode] = {"ex_s": m["examples_per_s"], "peak_mb": m["peak_memory_mb"],
                               "test_accuracy": m["test_accuracy"], "lora": rec.data["trainable_params"]["lora"]}  # fmt: skip
        note(f"MiniLM {mode}", f"{m['examples_per_s']:.0f} ex/s, peak {m['peak_memory_mb']:.0f} MiB, "
             f"test acc {m['test_accuracy']:.3f} (256 test examples)")  # fmt: skip
    del ws
    free_gpu()
    out["llama1b"] = part_modes_llama(tmp, llama_steps, llama_pairs)
    ab = out["minilm"]["ab"]
    b = out["minilm"]["b_only"]
    note(
        "minilm b_only / ab",
        f"speed x{b['ex_s'] / ab['ex_s']:.2f}, peak memory x{b['peak_mb'] / ab['peak_mb']:.2f}",
    )
    return out


def part_modes_llama(tmp: Path, steps: int = 25, pairs: int = 3) -> dict:
    """B only vs A&B (and one A only) on the 1.1B LLaMA shape: tokens/s of `train`'s loop and peak memory."""
    from asymviz.training.loop import train
    from asymviz.training.workspace import Workspace

    out: dict = {}
    folder, task = _llama_assets(tmp)
    cfg = _llama_config(folder, task).replace(steps=2 if DRY else steps)
    print(f"\n== LLaMA-1.1B modes: {cfg.steps} steps of batch {cfg.batch_size} x {cfg.max_length} per run, "
          f"{pairs} ab/b_only pairs after one warm-up pair", flush=True)  # fmt: skip
    # ab and b_only alternate, `repeats` times each, after one warm-up run of each (the first run of a process
    # pays for cuBLAS heuristics, the caching allocator's growth and autocast's weight casts: that is what made
    # one earlier session's single-shot ratio x1.77 and another's x1.30); the median ratio is quoted.
    ws = Workspace()
    repeats = 1 if DRY else pairs
    order = ["ab", "b_only"] + ["ab", "b_only"] * repeats + ["a_only"]
    seen: dict[str, list] = {}
    for i, mode in enumerate(order):
        free_gpu()
        rec = train(cfg.replace(mode=mode), tmp / f"modes_llama_{mode}_{i}", workspace=ws, overwrite=True)
        m = rec.final_metrics
        warm = i < 2
        t = rec.data.get("timings", {})
        print(
            f"  llama {mode} {'(warm-up) ' if warm else ''}{m['tokens_per_s']:.0f} tokens/s, "
            f"peak {m['peak_memory_mb'] / 1024:.2f} GiB, train {t.get('train_s', 0):.2f} s",
            flush=True,
        )
        if not warm:
            seen.setdefault(mode, []).append(m)
    del ws
    free_gpu()
    for mode, ms in seen.items():
        tok = sorted(x["tokens_per_s"] for x in ms)
        out[mode] = {
            "tok_s": tok[len(tok) // 2],
            "tok_s_all": tok,
            "peak_mb": max(x["peak_memory_mb"] for x in ms),
        }
        note(f"LLaMA-1.1B {mode}", f"median {tok[len(tok) // 2]:.0f} tokens/s [{tok[0]:.0f}, {tok[-1]:.0f}] over "
             f"{len(tok)}, peak {out[mode]['peak_mb'] / 1024:.1f} GiB")  # fmt: skip
    ab_runs, b_runs = seen.get("ab", []), seen.get("b_only", [])
    ratios = sorted(b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(ab_runs, b_runs))
    if ratios:
        out["b_over_ab_pairs"] = ratios
        note("LLaMA-1.1B b_only / ab, pair by pair", f"median x{ratios[len(ratios) // 2]:.2f} "
             f"[{ratios[0]:.2f}, {ratios[-1]:.2f}] over {len(ratios)} pairs of {cfg.steps} steps")  # fmt: skip
    if "ab" in out and "b_only" in out:
        note("llama1b b_only / ab peak memory", f"x{out['b_only']['peak_mb'] / out['ab']['peak_mb']:.2f}")
    out["steps"] = cfg.steps
    return out


def part_sweep(
    tmp: Path, plain_ex_s: float | None, jobs: int = 6, steps: int = 375, batch: int | None = None
) -> dict:
    from asymviz.training.sweep import expand, sweep

    batch = batch or MINILM.batch_size
    print(
        f"\n== sweep throughput: 12 runs of {steps} steps x batch {batch}, {jobs} in flight on one GPU",
        flush=True,
    )
    steps = 3 if DRY else steps
    configs = expand(MINILM.replace(steps=steps, batch_size=batch), modes=MODES, seeds=[0, 1, 2, 3])
    t = time.perf_counter()
    frame = sweep(
        configs, tmp / f"sweep{jobs}_{batch}", devices=["cpu" if DRY else "0"], jobs_per_device=jobs
    )
    wall = time.perf_counter() - t
    done = int((frame["status"] == "completed").sum())
    summed = done * steps * batch / wall
    res = {"runs": done, "wall_s": wall, "summed_ex_s": summed, "per_run_ex_s": float(frame["examples_per_s"].mean()),
           "test_accuracy": frame.groupby("mode")["test_accuracy"].mean().to_dict()}  # fmt: skip
    note(f"sweep, {jobs} workers on 1 GPU, batch {batch}", f"{done}/12 runs in {wall:.1f} s wall -> {summed:.0f} ex/s summed "
         f"(each run {res['per_run_ex_s']:.0f} ex/s while sharing)")  # fmt: skip
    if plain_ex_s:
        res["x_plain"] = summed / plain_ex_s
        note(
            f"sweep (batch {batch}) vs plain loop (batch {MINILM.batch_size})",
            f"x{res['x_plain']:.2f} (target >= 3)",
        )
    note(
        "sweep test accuracy by mode (mean of 4 seeds)",
        json.dumps({k: round(v, 3) for k, v in res["test_accuracy"].items()}),
    )
    return res


def part_ddp(tmp: Path, one_gpu_ex_s: float | None) -> dict:
    from asymviz.training.sweep import expand, sweep

    n = 2 if DRY else torch.cuda.device_count()
    if n < 2:
        print("\n== ddp: skipped (one GPU)")
        return {"skipped": True}
    print("\n== data parallel: accelerate launch on 2 GPUs", flush=True)
    out = tmp / "ddp"
    # = `accelerate launch --multi_gpu ...`, through this Python (the console script may not be on PATH)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    if DRY:  # the same code path (WORLD_SIZE=2, torch.distributed + DDP) on the CPU with gloo
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd = [
        *launch,
        "-m",
        "asymviz.training",
        "train",
        "--config",
        str(tmp / "minilm.json"),
        "--out",
        str(out),
        "--quiet",
    ]
    (tmp / "minilm.json").write_text(
        json.dumps(MINILM.replace(device="auto" if not DRY else "cpu").to_dict())
    )
    t = time.perf_counter()
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode:
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:") or "Error" in line]
        print(res.stdout[-2000:], "\n".join(errors[-10:]), res.stderr[-3000:])
        note("ddp", f"FAILED (exit {res.returncode})")
        return {"failed": True}
    run = RunRecord.load(out).data
    ex_s = run["metrics"]["examples_per_s"]
    note("DDP 2 GPUs, batch 32 per GPU", f"{ex_s:.0f} ex/s global ({wall:.1f} s wall incl. start-up), "
         f"world_size {run.get('world_size')}, test acc {run['metrics']['test_accuracy']:.3f}")  # fmt: skip
    if one_gpu_ex_s:
        note("DDP vs one GPU", f"x{ex_s / one_gpu_ex_s:.2f}")
    configs = expand(MINILM, modes=MODES, seeds=[0, 1])
    t = time.perf_counter()
    frame = sweep(
        configs,
        tmp / "sweep_2gpu",
        devices=["cpu"] * n if DRY else [str(i) for i in range(n)],
        jobs_per_device=1,
    )
    wall2 = time.perf_counter() - t
    done = int((frame["status"] == "completed").sum())
    note(f"sweep, one worker per GPU on {n} GPUs", f"{done}/6 runs in {wall2:.1f} s, "
         f"{done * MINILM.steps * MINILM.batch_size / wall2:.0f} ex/s summed")  # fmt: skip
    return {"ddp_ex_s": ex_s, "wall_s": wall, "sweep_wall_s": wall2, "sweep_runs": done}


def _launch(n_gpus: int) -> list[str]:
    """`accelerate launch --multi_gpu` through this Python for n_gpus >= 2; a plain process for one GPU."""
    if n_gpus == 1:
        return [sys.executable]
    if DRY:  # the same code path (WORLD_SIZE=2, torch.distributed + DDP) on the CPU with gloo
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n_gpus)]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n_gpus),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def part_ddp_llama(tmp: Path, repeats: int = 2) -> dict:
    """Data parallel on the 1.1B LLaMA shape: one GPU vs two (batch 8 x 512 per GPU), alternated, tokens/s global.

    MiniLM at batch 32 is launch-bound (a step is ~1.5 ms of compute under ~20 ms of Python and kernel launches),
    so a second GPU only adds an all-reduce to a step whose time is not compute; the 1.1B shape is compute-bound
    (about 6 * 1.1e9 * 4096 tokens = 27 TFLOP a step), which is where data parallelism can pay.
    """
    n = 2 if DRY else torch.cuda.device_count()
    if n < 2:
        print("\n== ddp_llama: skipped (one GPU)")
        return {"skipped": True}
    print("\n== data parallel on the 1.1B LLaMA shape: 1 GPU vs 2", flush=True)
    folder, task = _llama_assets(tmp)
    cfg = _llama_config(folder, task).replace(steps=4 if DRY else 40, device="auto" if not DRY else "cpu")
    (tmp / "llama.json").write_text(json.dumps(cfg.to_dict()))
    seen: dict[int, list[float]] = {1: [], 2: []}
    for rep in range(repeats):
        for gpus in (1, 2):
            out = tmp / f"ddp_llama_{gpus}_{rep}"
            env = {**ENV} if gpus == 2 or DRY else {**ENV, "CUDA_VISIBLE_DEVICES": "0"}
            cmd = [*_launch(gpus), "-m", "asymviz.training", "train", "--config", str(tmp / "llama.json"),
                   "--out", str(out), "--quiet"]  # fmt: skip
            if gpus == 1:
                cmd = [sys.executable, "-m", "asymviz.training", *cmd[3:]]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode:
                print(res.stderr[-3000:])
                note(f"ddp_llama {gpus} GPU(s)", f"FAILED (exit {res.returncode})")
                return {"failed": True}
            run = json.loads((out / "run.json").read_text())
            tok_s = run["metrics"]["tokens_per_s"]
            seen[gpus].append(tok_s)
            print(
                f"  rep {rep}: {gpus} GPU(s) {tok_s:.0f} tokens/s (world_size {run.get('world_size')})",
                flush=True,
            )
    ratios = sorted(b / a for a, b in zip(seen[1], seen[2]))
    note("DDP LLaMA-1.1B, 2 GPUs vs 1 (batch 8x512 per GPU)",
         f"x{ratios[len(ratios) // 2]:.2f} [{ratios[0]:.2f}, {ratios[-1]:.2f}] over {len(ratios)} pairs; "
         f"1 GPU {[round(x) for x in sorted(seen[1])]}, 2 GPUs {[round(x) for x in sorted(seen[2])]} tokens/s")  # fmt: skip
    return {"one_gpu_tok_s": seen[1], "two_gpu_tok_s": seen[2], "ratios": ratios}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--parts",
        default="plain,modes,sweep,ddp,ddp_llama",
        help="any of plain, modes (MiniLM and LLaMA), modes_llama (LLaMA only), sweep, ddp, ddp_llama",
    )
    p.add_argument("--llama-steps", type=int, default=25, help="steps of each LLaMA run in the modes parts")
    p.add_argument("--llama-pairs", type=int, default=3, help="timed ab/b_only pairs in the modes parts")
    p.add_argument("--out", default=".")
    p.add_argument("--jobs", type=int, default=6, help="workers in flight on one GPU for the sweep part")
    p.add_argument("--sweep-steps", type=int, default=375, help="steps of each run in the sweep part")
    p.add_argument("--sweep-batch", type=int, default=None,
                   help="batch of each run in the sweep part (default: the plain loop's, 32)")  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true", help="everything on the CPU at toy sizes (checks the script)"
    )
    p.add_argument("--mask-2d", action="store_true",
                   help="asymviz's runs in this process feed the 2-D attention mask, as before masks chosen from the "
                        "CPU lengths (the ddp parts' launched processes are not affected)")  # fmt: skip
    args = p.parse_args()
    global DEVICE, DRY, MINILM
    if args.dry_run:
        DEVICE, DRY = "cpu", True
        MINILM = MINILM.replace(
            device="cpu", steps=3, batch_size=4, max_length=32, max_validation=8, max_test=8, threads=1
        )
        args.jobs = 2
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    else:
        print(
            f"torch {torch.__version__}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}",
            flush=True,
        )
    results: dict = {"mask_2d": args.mask_2d}
    from plain_loop import mask_2d

    with tempfile.TemporaryDirectory() as tmp, mask_2d() if args.mask_2d else contextlib.nullcontext():
        tmp = Path(tmp)
        parts = args.parts.split(",")
        if "plain" in parts:
            results["plain"] = part_plain(tmp)
        plain_ex_s = results.get("plain", {}).get("plain_ex_s")
        if "modes" in parts:
            results["modes"] = part_modes(tmp, args.llama_steps, args.llama_pairs)
        elif "modes_llama" in parts:
            results["modes"] = {"llama1b": part_modes_llama(tmp, args.llama_steps, args.llama_pairs)}
        if "sweep" in parts:
            results["sweep"] = part_sweep(tmp, plain_ex_s, args.jobs, args.sweep_steps, args.sweep_batch)
        if "ddp" in parts:
            results["ddp"] = part_ddp(tmp, results.get("plain", {}).get("ours_ex_s"))
        if "ddp_llama" in parts:
            results["ddp_llama"] = part_ddp_llama(tmp)
    print("\n== summary")
    for key, value in SUMMARY:
        print(f"{key:45s} {value}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_train.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
