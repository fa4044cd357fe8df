"""Choose the demo's learning rate per mode on the validation split (never the test split).

    PYTHONPATH=. python bench/tune_demo.py [--lrs 2e-3,5e-3,1e-2,2e-2] [--seeds 0] [--steps 80 --batch-size 16]

For each mode and each lr of the grid it trains the demo preset (asymviz.training.config.DEMO) with that lr
(head included), evaluates the whole validation split (fine_foods: 398 reviews carved from the published
training split, seed 0) and never the test split (eval_test=False). It prints one row per (mode, lr) with the
validation accuracy (mean over seeds) and the lr it would pick per mode: the best mean validation accuracy. The
picks go into DEMO_LR by hand. All runs share one Workspace, so the frozen prefix is computed once.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from asymviz.training.config import DEMO, MODES
from asymviz.training.loop import train
from asymviz.training.workspace import Workspace


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lrs", default="2e-3,5e-3,1e-2,2e-2")
    p.add_argument("--seeds", default="0")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--steps", type=int, default=DEMO.steps)
    p.add_argument("--batch-size", type=int, default=DEMO.batch_size)
    p.add_argument("--top-layers", type=int, default=DEMO.top_layers)
    p.add_argument("--max-length", type=int, default=DEMO.max_length)
    p.add_argument("--precision", default=DEMO.precision)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (1 on a busy shared machine)")
    p.add_argument("--head-lr", type=float, default=None, help="fixed head lr (default: the same as lr)")
    p.add_argument("--targets", default=",".join(DEMO.targets), help="module names; several sets split by ';'")
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
            print(f"{mode:7s} r={rank} {targets}: " + "  ".join(f"lr={r[3]:g}: {r[4]:.4f}" for r in mine)
                  + f"   -> pick lr={best[3]:g}")

if __name__ == "__main__":
    main()
