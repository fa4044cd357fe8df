"""Singular spectra of A, B and ΔW = scaling·B·A for every module of an adapter, never densifying ΔW.

    spectrum = singular_spectrum(adapter)            # one row per (module, which, k)
    summary = spectrum_summary(adapter)              # one row per (module, which)
    by_layer = group_summary(summary, by="layer")    # mean over modules, per (layer, which)

`which` is "A" (r×d_in), "B" (d_out×r) or "delta" (ΔW, d_out×d_in, rank ≤ r). See asymviz.linalg for how
the float64 Grams of A and B give all three spectra (asymviz.linalg.ModuleBases, one per module). Modules with non-finite values are skipped and named in adapter.problems.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from asymviz.linalg import finite_gram, gram_spectra, map_modules, numerical_rank, stacked_gram

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.adapters import LoraAdapter, LoraModule

WHICH = ("A", "B", "delta")
SPECTRUM_COLUMNS = ["module", "layer", "kind", "which", "k", "sigma", "sigma_rel", "energy_cum"]
SUMMARY_COLUMNS = [
    "module", "layer", "kind", "which", "r", "rows", "cols", "numerical_rank", "effective_rank", "stable_rank",
    "fro_norm", "spectral_norm", "energy_top1", "top_k", "energy_top_k",
]  # fmt: skip
# Column names of earlier releases, still readable for one release: `summary[old]` is `summary[new]`.
# ("rank" was ambiguous next to the LoRA rank r.) Remove in the release after next.
SUMMARY_ALIASES = {"rank": "numerical_rank"}


def _check_which(which: Iterable[str] | str) -> tuple[str, ...]:
    which = (which,) if isinstance(which, str) else tuple(which)
    bad = [w for w in which if w not in WHICH]
    if bad:
        raise ValueError(f"which must be among {WHICH}, got {bad}")
    return which


def _module_spectra(module: LoraModule):
    """[(which, sigma ndarray, (rows, cols), dtype)] for A, B and ΔW of one module, or None when it holds
    non-finite values."""
    gram_a, gram_b = stacked_gram([module.A.T]), stacked_gram([module.B])
    if not (finite_gram(gram_a) and finite_gram(gram_b)):  # as module.finite, without another pass
        return None
    sigmas = gram_spectra(gram_a, gram_b, module.scaling)
    shapes = ((module.r, module.d_in), (module.d_out, module.r), (module.d_out, module.d_in))
    return [(w, sigma, shape, module.B.dtype) for w, sigma, shape in zip(WHICH, sigmas, shapes, strict=True)]


# Per adapter, its modules' spectra (r values per factor: kilobytes), so that singular_spectrum and
# spectrum_summary on the same adapter (the app's inspect page calls both) read and factor it once.
_computed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_computed_lock = threading.Lock()


def _collect(adapter: LoraAdapter, which, progress, workers):
    with _computed_lock:
        results = _computed.get(adapter)
    if results is None:
        # transient: _module_spectra keeps only singular values, none of the module's arrays
        results = map_modules(adapter, _module_spectra, progress=progress, workers=workers, transient=True)
        with _computed_lock:
            _computed[adapter] = results
    elif progress:
        progress(len(adapter.modules))
    return [
        (spec, [x for w in which for x in res if x[0] == w])
        for spec, res in zip(adapter.modules, results)
        if res is not None
    ]


def singular_spectrum(
    adapter: LoraAdapter,
    which: Iterable[str] | str = WHICH,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Singular values of A, B and/or ΔW for every module.

    Parameters
    ----------
    adapter : LoraAdapter
    which : any of "A", "B", "delta"
    progress : called with the number of modules done
    workers : threads (one module each); default: the machine's cores, at most 8

    Returns
    -------
    DataFrame, one row per (module, which, k), columns
        module, layer, kind : the module's name, block index (nullable int) and last name part
        which : "A", "B" or "delta"
        k : 1..r, position in descending order
        sigma : the k-th singular value (ΔW's include the scaling α/r)
        sigma_rel : sigma / the largest sigma of that matrix (NaN when all are zero)
        energy_cum : Σ_{i≤k} σ_i² / Σ σ_i², the share of squared Frobenius norm in the top k
    """
    import numpy as np
    import pandas as pd

    which = _check_which(which)
    labels: dict[str, list] = {c: [] for c in ("module", "layer", "kind", "which")}  # one entry per matrix
    numbers: dict[str, list] = {c: [] for c in ("k", "sigma", "sigma_rel", "energy_cum")}
    counts = []
    for spec, res in _collect(adapter, which, progress, workers):
        for w, sigma, _shape, _dtype in res:
            n = sigma.size
            energy = sigma**2
            total = energy.sum()
            top = sigma[0] if n else 0.0
            for col, value in zip(labels, (spec.name, spec.layer, spec.kind, w)):
                labels[col].append(value)
            counts.append(n)
            numbers["k"].append(np.arange(1, n + 1))
            numbers["sigma"].append(sigma)
            numbers["sigma_rel"].append(sigma / top if top > 0 else np.full(n, np.nan))
            numbers["energy_cum"].append(np.cumsum(energy) / total if total > 0 else np.full(n, np.nan))
    # One frame from whole columns: each matrix's labels repeated over its rows (pandas repeats its string
    # arrays without a Python object per row; per-module frames and a concat cost more than the math here).
    data = {col: pd.Series(v, dtype="Int64" if col == "layer" else "str").repeat(counts).to_numpy()
            for col, v in labels.items()}  # fmt: skip
    data.update({col: np.concatenate(v) if v else np.zeros(0) for col, v in numbers.items()})
    frame = pd.DataFrame(data, columns=SPECTRUM_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    frame["k"] = frame["k"].astype("int64")
    return frame[SPECTRUM_COLUMNS]


def spectral_stats(sigma, shape: tuple[int, int], top_k: int = 4, dtype=None) -> dict[str, float]:
    """Scalar summaries of one matrix's singular values (a 1-D array, descending); `dtype` is the data's
    (its precision sets the numerical-rank tolerance, asymviz.linalg.rank_tolerance; default float32)."""
    import numpy as np

    sigma = np.asarray(sigma, dtype=np.float64)
    energy = sigma**2
    total = float(energy.sum())
    s_sum = float(sigma.sum())
    if s_sum > 0:
        p = sigma[sigma > 0] / s_sum
        eff = math.exp(float(-(p * np.log(p)).sum()))
    else:
        eff = 0.0
    return {
        "numerical_rank": numerical_rank(sigma, shape, dtype),
        "effective_rank": eff,  # exp of the entropy of σ/Σσ (Roy & Vetterli 2007)
        "stable_rank": total / float(sigma[0]) ** 2 if total > 0 else 0.0,  # ‖M‖_F² / ‖M‖₂²
        "fro_norm": math.sqrt(total),
        "spectral_norm": float(sigma[0]) if sigma.size else 0.0,
        "energy_top1": float(energy[0]) / total if total > 0 else math.nan,
        "top_k": min(top_k, sigma.size),
        "energy_top_k": float(energy[:top_k].sum()) / total if total > 0 else math.nan,
    }


def spectrum_summary(
    adapter: LoraAdapter,
    which: Iterable[str] | str = WHICH,
    top_k: int = 4,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Norms and ranks of A, B and/or ΔW per module.

    Returns
    -------
    DataFrame, one row per (module, which), columns
        module, layer, kind, which
        r : the module's LoRA rank
        rows, cols : the matrix's shape (A: r×d_in, B: d_out×r, delta: d_out×d_in)
        numerical_rank : count of σ > τ·σ₁ with τ = asymviz.linalg.rank_tolerance(rows, cols, dtype)
            (numpy's max(rows, cols)·eps rule, eps of float32 for float32/16 data); distinct from r
        effective_rank : exp(entropy of σ/Σσ), between 1 and rank (0 for a zero matrix)
        stable_rank : ‖M‖_F² / ‖M‖₂²
        fro_norm, spectral_norm : ‖M‖_F and σ₁
        energy_top1 : σ₁² / Σσ²
        top_k, energy_top_k : the k used and Σ_{i≤k} σ_i² / Σσ²
        rank : deprecated alias of numerical_rank, the last column, kept one release for readers of
            earlier CSVs (SUMMARY_ALIASES); removed in the release after next
    """
    import pandas as pd

    which = _check_which(which)
    rows = []
    for spec, res in _collect(adapter, which, progress, workers):
        for w, sigma, shape, dtype in res:
            rows.append(
                {"module": spec.name, "layer": spec.layer, "kind": spec.kind, "which": w, "r": spec.r,
                 "rows": shape[0], "cols": shape[1], **spectral_stats(sigma, shape, top_k, dtype)}
            )  # fmt: skip
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return _with_aliases(frame)


def _with_aliases(frame: pd.DataFrame) -> pd.DataFrame:
    """Add SUMMARY_ALIASES as trailing copies (so CSVs of earlier releases' readers still find them)."""
    for old, new in SUMMARY_ALIASES.items():
        frame[old] = frame[new]
    return frame


def group_summary(summary: pd.DataFrame, by: str = "layer") -> pd.DataFrame:
    """Mean of spectrum_summary's metrics over modules, per (`by`, which); `by` is "layer" or "kind".

    Returns
    -------
    DataFrame with columns ``<by>, which, modules, effective_rank, stable_rank, fro_norm, spectral_norm,
    energy_top1, energy_top_k`` (each metric the mean over that group's modules).
    """
    if by not in ("layer", "kind"):
        raise ValueError(f"by must be 'layer' or 'kind', got {by!r}")
    metrics = ["effective_rank", "stable_rank", "fro_norm", "spectral_norm", "energy_top1", "energy_top_k"]
    grouped = summary.groupby([by, "which"], sort=True, dropna=False)
    out = grouped[metrics].mean().reset_index()
    out.insert(2, "modules", grouped.size().to_numpy())
    return out
