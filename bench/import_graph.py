"""Import levels and cycles of asymviz/ and app/, from an AST scan of the source (nothing is imported).

    python bench/import_graph.py            # levels, cycles, and the modules over 400 lines
    python bench/import_graph.py --edges    # every first-party import edge too

A module's level is 1 when it imports no first-party module, else 1 + the highest level among what it imports
(modules in one cycle share a level). Imports inside functions count: they are still dependencies, just lazy
ones; imports under `if TYPE_CHECKING:` do not count (annotations only). Modules loaded by name through importlib are invisible to this scan, which is why the CLI must not do that.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("asymviz", "app")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            mods[module_name(path)] = path
    if (ROOT / "streamlit_app.py").exists():
        mods["streamlit_app"] = ROOT / "streamlit_app.py"
    return mods


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """First-party modules that `name` imports (resolved to the longest existing module name)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    targets: set[str] = set()
    typing_only = {  # `if TYPE_CHECKING:` blocks: annotations, not dependencies at run time
        id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
        for stmt in block.body for n in ast.walk(stmt)
    }  # fmt: skip
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            cands = [f"{stem}.{a.name}" for a in node.names] + [stem]
        else:
            continue
        for cand in cands:
            while cand and cand not in mods:
                cand = cand.rpartition(".")[0]
            if cand and cand != name:
                targets.add(cand)
                break
    return targets


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative enough for a few hundred modules."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def levels(graph: dict[str, set[str]]) -> tuple[dict[str, int], list[list[str]]]:
    comps = strongly_connected(graph)
    comp_of = {m: i for i, c in enumerate(comps) for m in c}
    level: dict[int, int] = {}
    for i, comp in enumerate(comps):  # Tarjan emits components in reverse topological order
        deps = {comp_of[w] for m in comp for w in graph[m]} - {i}
        level[i] = 1 + max((level[d] for d in deps), default=0)
    cycles = [c for c in comps if len(c) > 1]
    return {m: level[comp_of[m]] for m in graph}, cycles


def main(argv=None) -> int:
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="print every first-party import edge")
    ap.add_argument("--root", type=Path, default=None, help="the checkout to scan (default: this one)")
    args = ap.parse_args(argv)
    ROOT = (args.root or ROOT).resolve()
    mods = first_party_modules()
    graph = {m: imports_of(m, p, mods) for m, p in mods.items()}
    # a package's __init__ importing its own submodules is not a dependency of the submodules on it
    lvl, cycles = levels(graph)
    print(f"modules: {len(mods)}  import levels: {max(lvl.values())}  cycles: {len(cycles)}")
    for c in cycles:
        print("  cycle:", " <-> ".join(c))
    chain = [max(lvl, key=lambda m: (lvl[m], m))]
    while lvl[chain[-1]] > 1:
        chain.append(max((t for t in graph[chain[-1]] if lvl[t] < lvl[chain[-1]]), key=lambda t: (lvl[t], t)))
    print("deepest chain:", " -> ".join(chain))
    big = [(m, len(p.read_text().splitlines())) for m, p in mods.items()]
    big = [(m, n) for m, n in big if n > 400]
    print("modules over 400 lines:", ", ".join(f"{m} ({n})" for m, n in sorted(big)) or "none")
    for m in sorted(lvl, key=lambda m: (-lvl[m], m)):
        print(f"{lvl[m]:3d}  {m}")
        if args.edges:
            for t in sorted(graph[m]):
                print(f"       -> {t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
