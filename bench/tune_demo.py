"""Choose the demo's learning rate per mode on the validation split (never the test split).

    PYTHONPATH=. python bench/tune_demo.py                # the grid behind DEMO_LR: about 4 minutes on 1 thread

For each mode and each lr of the grid it trains the demo preset (asymviz.training.config.DEMO: LoRA r=8 on every
linear layer of MiniLM's top 2 layers, 250 steps x 8 reviews, head at the same lr) with that lr and seeds 0 and
1, evaluates the whole validation split (fine_foods: 398 reviews carved from the published training split, split
seed 0) and never the test split (eval_test=False). It prints the validation accuracy of every run and, per mode,
the lr with the best mean over the seeds; the picks go into DEMO_LR by hand. All runs share one Workspace, so the
frozen prefix is computed once. Flags change the setting (--steps, --batch-size, --targets 'a,b;c,d', --rank ...).

Measured 2026-11-28 (bf16 autocast, 1 thread; validation accuracy, seeds 0 / 1 -> mean):

    mode     lr=1.5e-3              lr=2e-3                lr=3e-3
    ab       0.756 / 0.776 -> 0.766  0.774 / 0.774 -> 0.774  0.656 / 0.779 -> 0.717 (seed 0 diverged)
    b_only   0.739 / 0.756 -> 0.748  0.744 / 0.759 -> 0.751  0.761 / 0.754 -> 0.758
    a_only   0.786 / 0.774 -> 0.780  0.779 / 0.776 -> 0.778  0.781 / 0.789 -> 0.785
    picks    ab 2e-3, b_only 3e-3, a_only 3e-3

Earlier settings, for the record (same grid idea): q,v only on the top 2 layers left b_only at 0.69-0.72 whatever
the lr (1e-2 and up diverged to the majority class); without gradient clipping ab diverged at 3e-3 on seed 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from asymviz.training.config import DEMO, MODES, preset
from asymviz.training.loop import train
from asymviz.training.workspace import Workspace


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lrs", default="1.5e-3,2e-3,3e-3")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--steps", type=int, default=DEMO.steps)
    p.add_argument("--batch-size", type=int, default=DEMO.batch_size)
    p.add_argument("--top-layers", type=int, default=DEMO.top_layers)
    p.add_argument("--max-length", type=int, default=DEMO.max_length)
    p.add_argument("--precision", default=preset("demo")[0].precision, help="default: the demo's on this CPU")
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 is robust on a busy shared machine)"
    )
    p.add_argument("--head-lr", type=float, default=None, help="fixed head lr (default: the same as lr)")
    p.add_argument(
        "--targets", default=",".join(DEMO.targets), help="module names; several sets split by ';'"
    )
    p.add_argument("--rank", default=str(DEMO.rank), help="comma-separated ranks")
    p.add_argument("--alpha", type=float, default=DEMO.alpha)
    args = p.parse_args()
    ws = Workspace()
    base = DEMO.replace(steps=args.steps, batch_size=args.batch_size, top_layers=args.top_layers,
                        max_length=args.max_length, precision=args.precision, max_validation=None, eval_test=False,
                        threads=args.threads, head_lr=args.head_lr, alpha=args.alpha)  # fmt: skip
    rows = []
    variants = [(t, int(r)) for t in args.targets.split(";") for r in args.rank.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for targets, rank in variants:
            for mode in args.modes.split(","):
                for lr in [float(x) for x in args.lrs.split(",")]:
                    accs = []
                    for seed in [int(s) for s in args.seeds.split(",")]:
                        t = time.perf_counter()
                        cfg = base.replace(mode=mode, lr=lr, seed=seed, targets=targets, rank=rank)
                        rec = train(cfg, f"{tmp}/{cfg.run_id()}", workspace=ws)
                        accs.append(rec.final_metrics["validation_accuracy"])
                        print(f"{mode:7s} lr={lr:<7g} r={rank} targets={targets} seed={seed} val_acc={accs[-1]:.4f} "
                              f"val_loss={rec.final_metrics['validation_loss']:.4f} ({time.perf_counter() - t:.1f} s)",
                              flush=True)  # fmt: skip
                    rows.append((targets, rank, mode, lr, sum(accs) / len(accs)))
    print(f"\nsetting: {vars(args)}")
    for targets, rank in variants:
        for mode in args.modes.split(","):
            mine = [r for r in rows if r[:3] == (targets, rank, mode)]
            best = max(mine, key=lambda r: r[4])
            print(
                f"{mode:7s} r={rank} {targets}: "
                + "  ".join(f"lr={r[3]:g}: {r[4]:.4f}" for r in mine)
                + f"   -> pick lr={best[3]:g}"
            )


if __name__ == "__main__":
    main()
