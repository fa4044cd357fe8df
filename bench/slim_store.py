"""Keep a run store small enough to ship: drop the weights (adapter/, init/, split.json) of every run that a
pandas query over `RunStore.list()` does not keep, and of every lr-grid run whose group chose another learning
rate (an undecided grid keeps its weights, so a later resume can still make one of them a main run), and say so
in its run.json (`weights_dropped`).

    python bench/slim_store.py STORE --keep "seed == 0 and rank == 8"          # the rest: metrics only
    python bench/slim_store.py STORE --keep "seed == 0" --dry-run              # what would go, and the sizes

A slimmed run keeps run.json (config, versions, device, final metrics) and metrics.csv (its curves), so tables
and curves still show it; the analyses of weights (spectra, similarity, drift) skip it, and the run id plus the
sweep command in the store's README reproduce the weights. Prints the store's size before and after.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asymviz.runs import ADAPTER_DIR, INIT_DIR, SPLIT_FILE, RunStore, annotate_run  # noqa: E402

DROPPED = (ADAPTER_DIR, INIT_DIR, SPLIT_FILE)


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def slim(store: str | Path, keep: str, reason: str, dry_run: bool = False) -> list[str]:
    """Drop the weights of the runs outside `keep` (a DataFrame.query over the store's list); their run ids."""
    runs = RunStore(store)
    frame = runs.list()
    kept = set(frame.query(keep, engine="python")["run_id"]) if len(frame) else set()
    dropped = []
    for run_id in frame["run_id"]:
        path = runs.path(run_id)
        selection = runs.get(run_id).data.get("lr_selection") or {}
        lost_grid = selection.get("chosen") is False  # an lr-grid run whose group chose another lr
        if run_id in kept and not lost_grid:
            continue
        present = [name for name in DROPPED if (path / name).exists()]
        if not present:
            continue
        dropped.append(run_id)
        if dry_run:
            continue
        annotate_run(path, weights_dropped=reason)
        for name in present:
            target = path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    return dropped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument(
        "--keep", required=True, help="pandas query over RunStore.list() of the runs that keep weights"
    )
    p.add_argument(
        "--reason", default="dropped to keep cached_runs/ under 50 MB; rerun the sweep to get them"
    )
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    before = size(Path(args.store))
    dropped = slim(args.store, args.keep, args.reason, args.dry_run)
    after = size(Path(args.store))
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{args.store}: {verb} the weights of {len(dropped)} runs; {before / 2**20:.1f} MiB -> "
          f"{after / 2**20:.1f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
