"""`asymviz collection`: many adapters of one base at once (the paper's Figure 1 on your own adapters).

    asymviz collection ADAPTER ADAPTER [...] [--which A|B|delta|all] [--part shared|similarity|mean|clusters]
                       [--format csv|json|table] [-o FILE]

An ADAPTER may also be a folder of adapters or of run folders (each subfolder that holds an adapter counts,
in name order), so `asymviz collection cached_runs/similarity` compares every run of that experiment. The
default part, `shared`, has one row per (module, which, k): how much of the N adapters' subspaces k shared
directions explain, against the same for N random subspaces of the same dimensions (asymviz.collection).
"""

from __future__ import annotations

import sys
from pathlib import Path

from asymviz.cli.adapters import distinct_labels, positive_int
from asymviz.cli.output import add_output_args, progress_bar, warn_problems, write_frame
from asymviz.errors import AsymvizError

PARTS = ("shared", "similarity", "mean", "clusters")
LEGEND = {
    "shared": "variance_explained: share of the N adapters' stacked orthonormal bases (A: row spaces, B: column "
    "spaces) that the top-k shared directions explain; random_baseline: the same for N random subspaces",
    "similarity": "similarity of two adapters' subspaces per module, with the value random subspaces would get",
    "mean": "similarity averaged over the modules both adapters have, with its random baseline",
    "clusters": "groups of adapters by mean similarity of A (shared A usually means a shared init) and of B (a task)",
}


def add_commands(sub) -> None:
    """Register `collection`."""
    p = sub.add_parser("collection", help="N adapters at once: N×N similarity, shared directions, clusters")
    p.add_argument("adapters", nargs="+", metavar="ADAPTER",
                   help="adapters, run folders, or folders of them (each holding subfolder counts)")  # fmt: skip
    p.add_argument("--which", choices=("A", "B", "delta", "all"), default="all")
    p.add_argument("--part", choices=PARTS, default="shared", help="which table to print (default: shared)")
    p.add_argument(
        "--k", type=positive_int, default=None, help="top-k subspace of ΔW (default: the smallest rank)"
    )
    add_output_args(p)
    p.set_defaults(func=_cmd_collection)


def expand(paths: list[str]) -> list[Path]:
    """Each path as given, or, for a folder that is neither an adapter nor a run, the subfolders that are."""
    out: list[Path] = []
    for given in paths:
        p = Path(given)
        if p.is_dir() and not _is_adapter(p):
            subs = sorted(s for s in p.iterdir() if s.is_dir() and _is_adapter(s))
            if not subs:
                raise AsymvizError(f"{p}: no adapter or run folder in this folder")
            out += subs
        else:
            out.append(p)
    return out


def _is_adapter(folder: Path) -> bool:
    from asymviz.adapters.loader import WEIGHT_FILES
    from asymviz.runs import adapter_dir, is_run_folder

    if is_run_folder(folder):
        return adapter_dir(folder).is_dir()
    return any((folder / w).is_file() for w in WEIGHT_FILES) or any(folder.glob("*.safetensors"))


def _cmd_collection(args) -> int:
    from asymviz.adapters import load_adapter
    from asymviz.collection import CollectionConfig, analyze_collection
    from asymviz.runs import adapter_dir, is_run_folder

    paths = expand(args.adapters)
    if len(paths) < 2:
        raise AsymvizError("collection: give at least two adapters (or a folder holding several)")
    adapters = [load_adapter(adapter_dir(p) if is_run_folder(p) else p) for p in paths]
    which = ("A", "B", "delta") if args.which == "all" else (args.which,)
    names = distinct_labels([p.name if len({q.name for q in paths}) == len(paths) else str(p) for p in paths])
    n_modules = max(len(a) for a in adapters)
    result = analyze_collection(
        adapters, names=names, config=CollectionConfig(which=which, k=args.k),
        progress=progress_bar(n_modules, "collection"),
    )  # fmt: skip
    for a in adapters:
        warn_problems(a)
    print(f"collection: {len(adapters)} adapters: {', '.join(names)}", file=sys.stderr)
    write_frame(getattr(result, args.part), args.format, args.output, legend=LEGEND[args.part])
    return 0
