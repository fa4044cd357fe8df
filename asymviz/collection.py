"""Many adapters of one base model at once: who shares A (an init), who shares B (a task), and how much.

    result = analyze_collection([load_adapter(p) for p in paths], names=["t1-s0", "t1-s1", "t2-s0"])
    result.similarity     # N×N per module and factor (the paper's Figure 1 on your own adapters)
    result.mean           # the same, averaged over modules
    result.shared         # how much of the N subspaces k shared directions explain, vs random subspaces
    result.clusters       # groups of adapters by A similarity (inits) and by B similarity (tasks)

Each module is read once from every adapter (each file is streamed once, module by module) and one
float64 Gram of the N stacked factors gives every adapter's basis and every pair's overlap
(asymviz.similarity.ModuleGroup), so the cost grows with N²·r²·d for the Gram, not with N² basis
computations. Zhu et al. (2024) find that A barely moves from its init while B carries the task: expect
adapters trained from one A init (one seed) to share A's subspace whatever their task, and B to group
by task. A cluster of A therefore usually means a shared init, not a shared task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asymviz.linalg import parallel_map
from asymviz.similarity import PAIR_COLUMNS, WHICH, ModuleGroup, _common_modules, random_baseline

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from asymviz.adapters import LoraAdapter

MEAN_COLUMNS = ["adapter_1", "adapter_2", "which", "modules", "similarity", "random_baseline"]
SHARED_COLUMNS = ["module", "layer", "kind", "which", "k", "variance_explained", "random_baseline"]
CLUSTER_COLUMNS = ["adapter", "which", "cluster"]


@dataclass(frozen=True)
class CollectionConfig:
    which: tuple[str, ...] = WHICH  # factors to compare: "A" (row space of A), "B" (column space), "delta"
    k: int | None = None  # ΔW's top-k column space (default: the smallest r among the adapters)
    draws: int = 4  # random draws per (d, k_1..k_N) for the shared-directions baseline
    seed: int = 0  # seeds those draws
    cut: float = 0.5  # clusters join above baseline + cut·(1 − baseline) mean similarity (0 < cut < 1)
    workers: int | None = None  # threads, one module each (default: the machine's cores, at most 8)

    def __post_init__(self):
        which = (self.which,) if isinstance(self.which, str) else tuple(self.which)
        object.__setattr__(self, "which", which)
        bad = [w for w in which if w not in WHICH]
        if bad or not which:
            raise ValueError(f"which: must be a non-empty selection of {WHICH}, got {self.which!r}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k: must be at least 1, got {self.k}")
        if self.draws < 1:
            raise ValueError(f"draws: must be at least 1, got {self.draws}")
        if not 0 < self.cut < 1:
            raise ValueError(f"cut: must be in (0, 1), got {self.cut}")


@dataclass(frozen=True)
class Collection:
    """The frames of analyze_collection (see there for their columns)."""

    names: tuple[str, ...]
    similarity: pd.DataFrame = field(repr=False)  # PAIR_COLUMNS, every ordered pair incl. i = j
    mean: pd.DataFrame = field(repr=False)  # MEAN_COLUMNS
    shared: pd.DataFrame = field(repr=False)  # SHARED_COLUMNS
    clusters: pd.DataFrame = field(repr=False)  # CLUSTER_COLUMNS


def analyze_collection(
    adapters: Sequence[LoraAdapter],
    names: Sequence[str] | None = None,
    config: CollectionConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> Collection:
    """Similarities, shared directions and clusters of N ≥ 2 adapters of one base model.

    Parameters
    ----------
    adapters : two or more adapters; modules are matched by name (those not in every adapter are left out
        and named in each adapter's `problems`), modules with non-finite values are skipped
    names : distinct labels (default: each adapter's source)
    config : CollectionConfig (which factors, ΔW's k, baseline draws and seed, the cluster cut)
    progress : called with the number of modules done

    Returns
    -------
    Collection with four frames:
    similarity : one row per (ordered pair incl. i = j, module, which); pairwise_similarity's columns
        ``adapter_1, adapter_2, module, layer, kind, which, dim, k1, k2, similarity, random_baseline`` and
        numbers (‖U_iᵀU_j‖²_F / min(k_i, k_j); baseline max(k_i, k_j)/d)
    mean : ``adapter_1, adapter_2, which, modules, similarity, random_baseline``: the means over the
        modules where both subspaces are non-empty (modules = how many)
    shared : ``module, layer, kind, which, k, variance_explained, random_baseline``, k = 1 … max_i k_i:
        with S = [U_1 … U_N] (d × Σk_i, the N orthonormal bases side by side) and σ its singular values,
        variance_explained = Σ_{i≤k} σ_i² / Σ σ_i² = ‖P_k S‖²_F / Σk_i, P_k the projection on the top-k
        left singular vectors of S: the share of the N subspaces that k shared directions hold. 1 at
        k = r when all N share one r-dim subspace; about k/Σk_i for N independent random subspaces in a
        space much larger than Σk_i (S's columns then are nearly orthonormal).
        random_baseline is its mean over `draws` sets of N uniformly random subspaces of the same
        dimensions in R^d (seeded; see random_shared_baseline)
    clusters : ``adapter, which, cluster`` (cluster from 1, numbered in adapter order): average-linkage
        hierarchical clustering (scipy.cluster.hierarchy) on 1 − mean similarity, cut where the mean
        similarity falls below baseline + cut·(1 − baseline), baseline the mean random baseline. Shared
        A usually means a shared init (A stays near its initialisation); shared B, a shared task.
    """
    import numpy as np

    config = config or CollectionConfig()
    if len(adapters) < 2:
        raise ValueError("analyze_collection needs at least two adapters")
    labels = tuple(names) if names is not None else tuple(a.source for a in adapters)
    if len(labels) != len(adapters) or len(set(labels)) != len(labels):
        raise ValueError("names must give each adapter a distinct label")
    modules = _common_modules(adapters)
    n = len(adapters)
    ii, jj = np.divmod(np.arange(n * n), n)  # every ordered pair, row-major
    baselines = _BaselineCache(config.draws, config.seed)

    def per_module(name: str):
        group = ModuleGroup.of([a.module(name) for a in adapters], config.which, config.k)
        if group is None:  # a non-finite value in some adapter's version of this module
            return None
        out = []
        for w in config.which:
            overlap = group.overlap(w)  # (Σk, Σk) = SᵀS
            ks = np.array([b.k for b in group.bases[w]])
            d = group.bases[w][0].d
            sim = group.similarity_matrix(w, overlap)
            base = np.array([[random_baseline(a, b, d) for b in ks] for a in ks])
            explained = _explained(overlap, int(ks.sum()), int(ks.max()))
            out.append((w, d, ks, sim, base, explained, baselines.get(d, tuple(int(x) for x in ks))))
        return group.name, group.layer, group.kind, out

    results = [r for r in parallel_map(per_module, modules, progress=progress, workers=config.workers) if r]
    sim_parts, shared_parts = [], []
    for name, layer, kind, out in results:
        for w, d, ks, sim, base, explained, rand in out:
            m = n * n
            sim_parts.append({"adapter_1": [labels[i] for i in ii], "adapter_2": [labels[j] for j in jj],
                              "module": [name] * m, "layer": [layer] * m, "kind": [kind] * m, "which": [w] * m,
                              "dim": np.full(m, d), "k1": ks[ii], "k2": ks[jj], "similarity": sim.ravel(),
                              "random_baseline": base.ravel()})  # fmt: skip
            kk = explained.size
            shared_parts.append({"module": [name] * kk, "layer": [layer] * kk, "kind": [kind] * kk,
                                 "which": [w] * kk, "k": np.arange(1, kk + 1), "variance_explained": explained,
                                 "random_baseline": rand[:kk]})  # fmt: skip
    similarity = _frame(sim_parts, PAIR_COLUMNS)
    shared = _frame(shared_parts, SHARED_COLUMNS)
    mean = _mean_frame(similarity, labels, config.which)
    clusters = _clusters(mean, labels, config.which, config.cut)
    return Collection(labels, similarity, mean, shared, clusters)


def _frame(parts: list[dict], columns: list[str]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if not parts:
        frame = pd.DataFrame(columns=columns)
    else:
        data = {}
        for c in columns:
            values = [p[c] for p in parts]
            data[c] = (
                np.concatenate(values)
                if isinstance(values[0], np.ndarray)
                else [x for v in values for x in v]
            )
        frame = pd.DataFrame(data, columns=columns)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def _explained(gram: np.ndarray, total: int, kmax: int) -> np.ndarray:
    """Σ_{i≤k} μ_i / Σ_{i} μ_i for k = 1 … kmax, μ the eigenvalues (descending) of gram = SᵀS (= σ(S)²)."""
    import numpy as np

    if total == 0:
        return np.zeros(0)
    mu = np.clip(np.linalg.eigvalsh(gram)[::-1], 0, None)
    return np.cumsum(mu)[:kmax] / mu.sum()


def random_shared_baseline(d: int, ks: Sequence[int], draws: int = 4, seed: int = 0) -> np.ndarray:
    """Mean over `draws` of _explained for N independent uniformly random subspaces of dims ks in R^d.

    A uniformly random k-dim subspace is the span of a d×k standard Gaussian G (rotation invariance),
    with orthonormal basis U = G R⁻¹, RᵀR = GᵀG. For X = [G_1 … G_N], XᵀX is Wishart(I_{Σk}, d), which
    Bartlett's decomposition samples in O((Σk)³) without any d-dimensional vector (needs d ≥ Σk; below,
    X is sampled directly). Then U_iᵀU_j = R_i⁻ᵀ (XᵀX)_{ij} R_j⁻¹. Seeded by (seed, d, ks): reproducible.
    """
    import numpy as np

    ks = [int(k) for k in ks]
    total, kmax = sum(ks), max(ks)
    rng = np.random.default_rng([seed, d, *ks])
    acc = np.zeros(kmax)
    ends = np.cumsum([0, *ks])
    for _ in range(draws):
        if d >= total:  # Bartlett: XᵀX = L Lᵀ, L lower triangular
            L = np.tril(rng.standard_normal((total, total)), -1)
            L[np.diag_indices(total)] = np.sqrt(rng.chisquare(d - np.arange(total)))
            G = L @ L.T
        else:
            X = rng.standard_normal((d, total))
            G = X.T @ X
        Rinv = np.zeros((total, total))
        for a, b in zip(ends[:-1], ends[1:]):
            if b > a:
                Rinv[a:b, a:b] = np.linalg.inv(np.linalg.cholesky(G[a:b, a:b]).T)  # R = chol(G_ii)ᵀ
        acc += _explained(Rinv.T @ G @ Rinv, total, kmax)
    return acc / draws


class _BaselineCache:
    """random_shared_baseline per distinct (d, ks): an adapter collection has only a few of them."""

    def __init__(self, draws: int, seed: int):
        import threading

        self.draws, self.seed = draws, seed
        self._values: dict = {}
        self._lock = threading.Lock()

    def get(self, d: int, ks: tuple[int, ...]):
        import numpy as np

        key = (d, ks)
        with self._lock:
            if key not in self._values:
                self._values[key] = (
                    random_shared_baseline(d, ks, self.draws, self.seed) if sum(ks) else np.zeros(0)
                )
            return self._values[key]


def _mean_frame(similarity: pd.DataFrame, labels: Sequence[str], which: Iterable[str]) -> pd.DataFrame:
    import pandas as pd

    ok = similarity.dropna(subset=["similarity"])
    g = ok.groupby(["adapter_1", "adapter_2", "which"], sort=False)
    mean = g[["similarity", "random_baseline"]].mean().reset_index()
    mean.insert(3, "modules", g.size().to_numpy())
    order = {name: i for i, name in enumerate(labels)}
    which_order = {w: i for i, w in enumerate(which)}
    mean = mean.sort_values(
        ["which", "adapter_1", "adapter_2"],
        key=lambda c: c.map(which_order) if c.name == "which" else c.map(order),
    )
    return pd.DataFrame(mean, columns=MEAN_COLUMNS).reset_index(drop=True)


def _clusters(mean: pd.DataFrame, labels: Sequence[str], which: Iterable[str], cut: float) -> pd.DataFrame:
    import numpy as np
    import pandas as pd
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = len(labels)
    index = {name: i for i, name in enumerate(labels)}
    rows = []
    for w in which:
        part = mean[mean["which"] == w]
        S = np.full((n, n), np.nan)
        S[part["adapter_1"].map(index).to_numpy(), part["adapter_2"].map(index).to_numpy()] = part[
            "similarity"
        ]
        if np.isnan(S).any():  # a pair without any comparable module: no clustering for this factor
            rows += [{"adapter": name, "which": w, "cluster": pd.NA} for name in labels]
            continue
        S = (S + S.T) / 2
        D = np.clip(1.0 - S, 0.0, None)
        np.fill_diagonal(D, 0.0)
        base = float(part.loc[part["adapter_1"] != part["adapter_2"], "random_baseline"].mean())
        threshold = 1.0 - (base + cut * (1.0 - base)) if math.isfinite(base) else 1.0 - cut
        raw = fcluster(
            linkage(squareform(D, checks=False), method="average"), t=threshold, criterion="distance"
        )
        renumber: dict[int, int] = {}
        for name, c in zip(labels, raw):
            rows.append(
                {"adapter": name, "which": w, "cluster": renumber.setdefault(int(c), len(renumber) + 1)}
            )
    frame = pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
    frame["cluster"] = frame["cluster"].astype("Int64")
    return frame
