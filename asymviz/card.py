"""The adapter card: did this adapter learn, is its A still its random init, how much of its rank does it use.

    card = adapter_card("path/to/adapter")                  # folder, .safetensors, .zip, .bin, or a run folder
    card.adapter["a_verdicts"], card.modules.head()         # summary dict, tidy frame (CARD_COLUMNS first)
    card.to_json()                                          # {"adapter": {...}, "modules": [{...}, ...]}

Per module, ΔW = s·B·A with A (r, d_in), B (d_out, r); every spectrum comes from r×r cores
(asymviz.linalg.module_bases), never from the dense d_out×d_in matrix.

**Did it learn?** ``update_norm`` = ‖ΔW‖_F; with base weights also ``update_rel`` = ‖ΔW‖_F / ‖W0‖_F.
``no_update`` when ΔW = 0 exactly, or ‖ΔW‖_F ≤ NEGLIGIBLE_PEER (1e-3) × the median ‖ΔW‖_F of its peers (the
modules adapting the same projection, `kind`; all modules when it is alone), or (base given)
‖ΔW‖_F ≤ eps(float32) · ‖W0‖_F, an update that vanishes when merged into fp32 weights. The random baseline is
the init: PEFT starts B (hence ΔW) at exactly 0, so any update_norm > 0 was learned; without a base model,
an adapter whose every module is uniformly tiny is not flagged (it has no scale to be tiny against).

**Is A still random?** (``a_verdict``, ``a_percentile``, ``a_test``)
- With the step-0 adapter (``init=``, or a run folder's ``init/``): exact drift (asymviz.drift): ``random``
  when A equals its init up to the storage rounding (‖A − A0‖_F / ‖A0‖_F ≤ eps of the coarser stored dtype),
  ``learned`` otherwise (``a_rel_change`` says how far it moved). ``a_test`` = "init".
- Without it: A against 200 seeded draws of its declared init family at the same shape and dtype
  (asymviz.init_null): ``random`` when A's percentile in that null is ≤ 99, ``learned`` above. The family comes
  from a run's run.json (b_only: its a_init; ab: PEFT's default), else the adapter config's init_lora_weights
  (True/False: kaiming-uniform, "gaussian": N(0, 1/r²)); ``unknown`` with no config, another init (PiSSA,
  OLoRA, LoftQ, EVA, ... are data-dependent), an embedding LoRA (PEFT draws B there, not A) or r > d_in.
  The declared family is trusted: an A drawn otherwise (e.g. an asymviz b_only adapter copied out of its run
  folder) reads `learned`; pass ``a_init=`` to say what it was. ``a_test`` = "init_draws".
What it means for B-only training (Zhu et al. 2024): `random` says training A bought nothing measurable, an
adapter with this A frozen at its init is the same adapter, so B-only training (r·d_out instead of
r·(d_in + d_out) parameters per module) would have done as well. `learned` says A moved measurably; it does
not say by how much that mattered (with an init, see a_rel_change; a 1 % change is already `learned`).

**Rank use.** ``stable_rank`` ‖ΔW‖²_F/σ₁², ``effective_rank`` exp(entropy of σ/Σσ) (Roy & Vetterli 2007),
``energy_rank_90/95/99`` the smallest k with Σ_{i≤k}σ_i² ≥ 90/95/99 % of Σσ², ``utilisation`` stable_rank/r,
``suggested_rank`` the energy rank at ``energy`` (default 0.90), ``suggested_params`` k·(d_in + d_out).
No-update modules get no suggestion. ``adapter["rank_pattern"]`` maps module names to suggested ranks for
``peft.LoraConfig(rank_pattern=...)`` (PEFT matches a key k by ``(.*\\.)?(k)$``); with the same lora_alpha the
scaling α/k then grows, so ``adapter["alpha_pattern"]`` gives the α that keeps each module's scaling.

**Flags** (comma-separated in ``flags``): ``spike`` σ₁²/Σσ² > SPIKE_ENERGY (0.9); ``loud`` ‖ΔW‖_F >
LOUD_FACTOR (10) × the median of its peers (same kind, at least 2 others) and a stable rank above theirs;
``balanced`` ‖AAᵀ − BᵀB‖_F ≤ BALANCE_TOL (0.05) · max(‖AAᵀ‖_F, ‖BᵀB‖_F): the factors are balanced, as an SVD
split ΔW = (U√S)(√S Vᵀ) of a full fine-tune is (AAᵀ = BᵀB = S), so readings of A-vs-B asymmetry do not apply
(gradient flow conserves AAᵀ − BᵀB, so LoRA trained from B = 0 stays far from balanced);
``orientation`` r > min(d_in, d_out): a rank above a dimension, the mark of swapped or transposed factors
(with a config, the loader already rejects a rank that differs from r); ``nonfinite`` NaN/inf in A or B;
``dora`` a DoRA magnitude vector (update_norm is the LoRA part s·B·A only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asymviz.errors import AsymvizError
from asymviz.init_null import FAMILIES, LEVEL, adapter_verdict, dtype_eps, gram_features, sample_null

if TYPE_CHECKING:
    import pandas as pd

    from asymviz.adapters import LoraAdapter

CARD_COLUMNS = [
    "module", "r", "a_verdict", "a_percentile", "no_update", "update_norm", "stable_rank", "energy_rank_90",
    "suggested_rank", "flags",
]  # fmt: skip
EXTRA_COLUMNS = [
    "layer", "kind", "d_in", "d_out", "scaling", "a_test", "a_rel_change", "update_rel", "effective_rank",
    "energy_rank_95", "energy_rank_99", "utilisation", "energy_top1", "balance_gap", "a_norm", "b_norm",
    "params", "suggested_params",
]  # fmt: skip
ENERGY = 0.90
NEGLIGIBLE_PEER = 1e-3
SPIKE_ENERGY = 0.9
LOUD_FACTOR = 10.0
BALANCE_TOL = 0.05
FLOAT32_EPS = 2.0**-23
_RUN_A_INIT = {"orthogonal": "orthogonal", "gaussian": "gaussian", "kaiming": "kaiming"}


@dataclass(frozen=True)
class AdapterCard:
    """What `adapter_card` found: `adapter` (summary dict) and `modules` (CARD_COLUMNS + EXTRA_COLUMNS)."""

    adapter: dict[str, Any]
    modules: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """{"adapter": {...}, "modules": [{module, r, a_verdict, ..., flags (a list)}, ...]}, NaN as None."""
        rows = []
        for rec in self.modules.to_dict(orient="records"):
            rec = {k: _plain(v) for k, v in rec.items()}
            rec["flags"] = [f for f in (rec["flags"] or "").split(",") if f]
            rows.append(rec)
        return {"adapter": {k: _plain(v) for k, v in self.adapter.items()}, "modules": rows}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _plain(v):
    import numpy as np

    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if v is None or v is __import__("pandas").NA:
        return None
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v


# ------------------------------------------------------------------------------------------------------------
# inputs


def open_inputs(path: str | Path) -> tuple[LoraAdapter, LoraAdapter | None, dict]:
    """(adapter, init or None, run config or {}) for an adapter path, a run folder (adapter/ + init/ +
    run.json), or a run's adapter/ folder (its run folder's init/ and run.json are used)."""
    from asymviz import runs
    from asymviz.adapters import load_adapter

    path = Path(path)
    run = runs.run_folder_of(path)
    if run is None:
        return load_adapter(path), None, {}
    data = runs.read_run_json(run)  # RunError (an AsymvizError) when unreadable
    if data.get("mode") == "head_only":
        raise AsymvizError(f"{run}: a head_only run trains no adapter (only the task head)")
    if not runs.adapter_dir(run).is_dir():
        raise AsymvizError(f"{run}: the run folder has no adapter/ (weights not kept for this run?)")
    config = dict(data.get("config") or {})
    init = load_adapter(runs.init_dir(run)) if runs.init_dir(run).is_dir() else None
    return load_adapter(runs.adapter_dir(run)), init, config


def init_family(adapter: LoraAdapter, run_config: dict | None = None) -> tuple[str | None, str]:
    """(family or None, where it comes from): the declared init of A, see the module docstring."""
    run_config = run_config or {}
    mode = run_config.get("mode")
    if mode == "b_only":
        a_init = run_config.get("a_init")
        if a_init in _RUN_A_INIT:
            return _RUN_A_INIT[a_init], f"run.json: mode b_only, a_init {a_init}"
        return None, f"run.json: mode b_only with an unknown a_init {a_init!r}"
    if mode == "a_only":
        return None, "run.json: mode a_only (A trained from zero, B frozen)"
    if mode == "ab":
        return "kaiming", "run.json: mode ab (PEFT's default init)"
    if adapter.config is None:
        return None, "no adapter_config.json"
    value = adapter.config.raw.get("init_lora_weights", True)
    if value is True or value is False:
        return "kaiming", f"adapter_config.json: init_lora_weights {str(value).lower()} (kaiming-uniform A)"
    if value == "gaussian":
        return "gaussian_peft", "adapter_config.json: init_lora_weights gaussian (N(0, 1/r^2))"
    return None, f"adapter_config.json: init_lora_weights {value!r} has no known random law"


def _source_format(source: str) -> str:
    p = Path(source.split("/")[0] if source.startswith("<") else source)
    suffix = p.suffix.lower()
    if suffix in (".zip", ".safetensors"):
        return suffix[1:]
    if suffix in (".bin", ".pt", ".pth"):
        return "torch"
    return "peft" if p.is_dir() else "state_dict"


# ------------------------------------------------------------------------------------------------------------
# per module


def _measure(m) -> dict:
    """Raw numbers of one module (runs in a worker thread)."""
    import numpy as np

    from asymviz.linalg import gram_spectra, stacked_gram

    if not m.finite:
        return {"finite": False}
    GA, GB = stacked_gram([m.A.T]), stacked_gram([m.B])  # (r, r) each, float64
    s_d = gram_spectra(GA, GB, m.scaling)[2]  # ΔW's σ from the r×r core, as `asymviz spectra` computes it
    nA, nB = float(np.linalg.norm(GA)), float(np.linalg.norm(GB))
    gap = float(np.linalg.norm(GA - GB)) / max(nA, nB) if max(nA, nB) > 0 else math.nan
    return {
        "finite": True, "sigma": s_d, "a_features": gram_features(GA),
        "a_norm": math.sqrt(max(float(np.trace(GA)), 0.0)), "b_norm": math.sqrt(max(float(np.trace(GB)), 0.0)),
        "balance_gap": gap,
    }  # fmt: skip


def _energy_rank(energy_cum, threshold: float) -> int:
    import numpy as np

    return int(np.searchsorted(energy_cum, threshold - 1e-12) + 1)


def adapter_card(
    adapter: LoraAdapter | str | Path,
    init: LoraAdapter | str | Path | None = None,
    base=None,
    a_init: str | None = None,
    energy: float = ENERGY,
    draws: int = 200,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> AdapterCard:
    """The adapter card: per-module answers with their baselines, and the adapter's summary.

    Parameters
    ----------
    adapter : LoraAdapter, or a path (adapter folder/file, run folder, or a run's adapter/ folder)
    init : the adapter at step 0 (LoraAdapter or path); default: the run folder's init/ when there is one
    base : base model (a transformers model, or a name for asymviz.probes.base_weights.load_base_model) for
        update_rel = ‖ΔW‖_F / ‖W0‖_F; None leaves update_rel NaN
    a_init : init family of A, overriding the declared one: one of asymviz.init_null.FAMILIES
    energy : share of ‖ΔW‖²_F the suggested rank keeps, in (0, 1]
    draws, seed : size and seed of the sampled null of A's init

    Returns
    -------
    AdapterCard. ``modules`` has one row per module, columns (in order)
        module, r
        a_verdict : "random", "learned" or "unknown" (see the module docstring)
        a_percentile : A's percentile (0..100) in the null of its init family (NaN when unknown)
        no_update : ΔW is zero or negligible (see the module docstring)
        update_norm : ‖ΔW‖_F = ‖s·B·A‖_F
        stable_rank : ‖ΔW‖²_F / σ₁² (0 for ΔW = 0)
        energy_rank_90 : smallest k with 90 % of ‖ΔW‖²_F in the top k (NA for ΔW = 0)
        suggested_rank : energy rank at `energy` (NA for no-update modules)
        flags : comma-separated, from spike, loud, balanced, orientation, nonfinite, dora ("" for none)
        layer, kind, d_in, d_out, scaling
        a_test : "init" (exact drift), "init_draws" (seeded draws of the declared init) or "none"
        a_rel_change : ‖A − A0‖_F / ‖A0‖_F with an init (0 when bit-identical, inf when A0 = 0 as in mode
            a_only, NaN without an init)
        update_rel : ‖ΔW‖_F / ‖W0‖_F with base weights (else NaN)
        effective_rank, energy_rank_95, energy_rank_99, utilisation (stable_rank / r), energy_top1 (σ₁²/Σσ²)
        balance_gap : ‖AAᵀ − BᵀB‖_F / max(‖AAᵀ‖_F, ‖BᵀB‖_F)
        a_norm, b_norm : ‖A‖_F, ‖B‖_F
        params, suggested_params : r·(d_in + d_out) and suggested_rank·(d_in + d_out)
    ``adapter`` holds format ("peft", "safetensors", "zip", "torch", "state_dict", "run"), path, n_modules,
    r (an int, or the sorted list of ranks), lora_alpha, n_no_update, a_verdicts (counts per verdict),
    a_verdict (the adapter's: with an init, "learned" if any module's A moved; without, "learned" when more
    modules read learned than 1 % chance allows, asymviz.init_null.adapter_verdict), a_test, a_init_family,
    a_init_source, update_norm (√Σ‖ΔW‖²_F), median_stable_rank, mean_utilisation, energy, params,
    suggested_params, suggested_uniform_r, rank_pattern, alpha_pattern, flags (counts), base_weights,
    problems (the loader's notes) and thresholds.

    Raises
    ------
    AsymvizError (AdapterError) for unreadable inputs, an init that does not match, or bad arguments.
    """
    import numpy as np
    import pandas as pd

    from asymviz.linalg import map_modules
    from asymviz.spectra import spectral_stats

    if not 0 < energy <= 1:
        raise AsymvizError(f"energy must be in (0, 1], got {energy}")
    if a_init is not None and a_init not in FAMILIES:
        raise AsymvizError(f"a_init must be one of {', '.join(FAMILIES)}, got {a_init!r}")
    run_config: dict = {}
    if not hasattr(adapter, "modules"):
        adapter, run_init, run_config = open_inputs(adapter)
        init = run_init if init is None else init
    if init is not None and not hasattr(init, "modules"):
        from asymviz.adapters import load_adapter

        init = load_adapter(init)
    family, family_source = (a_init, "a_init argument") if a_init else init_family(adapter, run_config)

    measured = map_modules(adapter, _measure, progress=progress, workers=workers)
    drift = _a_drift(adapter, init, workers) if init is not None else {}
    base_norms = _base_norms(adapter, base) if base is not None else {}

    nulls: dict = {}
    rows = []
    for spec, res in zip(adapter.modules, measured, strict=True):
        flags = []
        row = {"module": spec.name, "r": spec.r, "layer": spec.layer, "kind": spec.kind, "d_in": spec.d_in,
               "d_out": spec.d_out, "scaling": spec.scaling, "params": spec.params}  # fmt: skip
        if spec.r > min(spec.d_in, spec.d_out):
            flags.append("orientation")
        if spec.magnitude_key:
            flags.append("dora")
        if not res["finite"]:
            rows.append({**row, "flags": flags + ["nonfinite"], "a_verdict": "unknown", "a_test": "none"})
            continue
        sigma = res["sigma"]
        stats = spectral_stats(sigma, (spec.d_out, spec.d_in))
        total = float((sigma**2).sum())
        row.update(
            update_norm=math.sqrt(total), stable_rank=stats["stable_rank"], effective_rank=stats["effective_rank"],
            energy_top1=stats["energy_top1"], utilisation=stats["stable_rank"] / spec.r,
            balance_gap=res["balance_gap"], a_norm=res["a_norm"], b_norm=res["b_norm"],
        )  # fmt: skip
        if total > 0:
            cum = np.cumsum(sigma**2) / total
            for pct in (90, 95, 99):
                row[f"energy_rank_{pct}"] = _energy_rank(cum, pct / 100)
            row["_suggest"] = _energy_rank(cum, energy)
            if stats["energy_top1"] > SPIKE_ENERGY:
                flags.append("spike")
        if res["balance_gap"] <= BALANCE_TOL:
            flags.append("balanced")
        if spec.name in base_norms:
            row["update_rel"] = (
                row["update_norm"] / base_norms[spec.name] if base_norms[spec.name] > 0 else math.nan
            )
        # is A random?
        if family is not None and not spec.embedding and spec.r <= spec.d_in and res["a_norm"] > 0:
            key = (family, spec.r, spec.d_in, spec.dtype)
            if key not in nulls:
                nulls[key] = sample_null(family, spec.r, spec.d_in, spec.dtype, draws=draws, seed=seed)
            row["a_percentile"] = nulls[key].percentile(res["a_features"])
        if spec.name in drift:
            rel, tol = drift[spec.name]
            row.update(a_test="init", a_rel_change=rel, a_verdict="random" if rel <= tol else "learned")
        elif not math.isnan(row.get("a_percentile", math.nan)):
            row.update(a_test="init_draws", a_verdict="random" if row["a_percentile"] <= LEVEL else "learned")
        else:
            row.update(a_test="none", a_verdict="unknown")
        row["flags"] = flags
        rows.append(row)

    frame = pd.DataFrame(rows)
    frame = _peer_judgements(frame, base_norms)
    frame["flags"] = frame["flags"].map(",".join)
    frame["suggested_params"] = frame["suggested_rank"] * (frame["d_in"] + frame["d_out"])
    for col in CARD_COLUMNS + EXTRA_COLUMNS:
        if col not in frame:
            frame[col] = math.nan
    for col in ("layer", "energy_rank_90", "energy_rank_95", "energy_rank_99", "suggested_rank",
                "suggested_params"):  # fmt: skip
        frame[col] = pd.to_numeric(frame[col]).astype("Int64")
    frame["no_update"] = frame["no_update"].astype(bool)
    frame = frame[CARD_COLUMNS + EXTRA_COLUMNS]
    summary = _summary(adapter, frame, family, family_source, init is not None, base is not None, energy)
    if run_config:
        summary["format"] = "run"
    return AdapterCard(summary, frame)


def _a_drift(adapter: LoraAdapter, init: LoraAdapter, workers) -> dict[str, tuple[float, float]]:
    """{module: (‖A − A0‖_F / ‖A0‖_F, tolerance)} from asymviz.drift (tolerance: eps of the coarser dtype)."""
    from asymviz.drift import drift_from_init

    frame = drift_from_init(adapter, init, workers=workers)
    out = {}
    for rec in frame[frame["which"] == "A"].itertuples():
        tol = max(dtype_eps(adapter.spec(rec.module).dtype), dtype_eps(init.spec(rec.module).dtype))
        rel = 0.0 if rec.unchanged else (rec.rel_change if rec.norm_init > 0 else math.inf)
        out[rec.module] = (float(rel), tol)
    return out


def _base_norms(adapter: LoraAdapter, base) -> dict[str, float]:
    """{module: ‖W0‖_F} from a model or a model name (asymviz.probes.base_weights)."""
    import torch

    from asymviz.probes.base_weights import base_weight, load_base_model

    model = load_base_model(base) if isinstance(base, str) else base
    return {spec.name: float(torch.linalg.norm(base_weight(model, spec))) for spec in adapter.modules}


def _peer_judgements(frame: pd.DataFrame, base_norms: dict) -> pd.DataFrame:
    """no_update, suggested_rank and the `loud` flag, which compare a module with its peers (same kind)."""
    import numpy as np

    norms = frame["update_norm"].to_numpy(dtype=float)
    stable = frame["stable_rank"].to_numpy(dtype=float)
    kinds = frame["kind"].to_numpy()
    no_update, suggest, flags = [], [], []
    for i, rec in enumerate(frame.to_dict(orient="records")):
        same = (kinds == kinds[i]) if (kinds == kinds[i]).sum() > 1 else np.ones(len(frame), bool)
        others = same.copy()
        others[i] = False
        peer_norm = np.nanmedian(norms[others]) if others.any() else math.nan
        n = norms[i]
        w0 = base_norms.get(rec["module"], math.nan)
        negligible = (
            n == 0
            or (peer_norm > 0 and n <= NEGLIGIBLE_PEER * peer_norm)
            or (w0 > 0 and n <= FLOAT32_EPS * w0)
        )
        no_update.append(bool(negligible) if math.isfinite(n) else False)
        suggest.append(math.nan if negligible or not math.isfinite(n) else rec.get("_suggest", math.nan))
        peers = others & (kinds == kinds[i])
        loud = (
            peers.sum() >= 2
            and n > LOUD_FACTOR * np.nanmedian(norms[peers])
            and stable[i] > np.nanmedian(stable[peers])
        )
        flags.append(list(rec["flags"]) + (["loud"] if loud else []))
    frame = frame.copy()
    frame["no_update"] = no_update
    frame["suggested_rank"] = suggest
    frame["flags"] = flags
    return frame.drop(columns=[c for c in ("_suggest",) if c in frame])


def _summary(adapter, frame, family, family_source, has_init, has_base, energy) -> dict[str, Any]:
    import numpy as np

    verdicts = frame["a_verdict"].value_counts()
    counts = {v: int(verdicts.get(v, 0)) for v in ("random", "learned", "unknown")}
    tested = frame[frame["a_test"] == "init_draws"]
    if has_init:
        overall = "learned" if counts["learned"] else ("random" if counts["random"] else "unknown")
    else:
        overall = adapter_verdict(int((tested["a_verdict"] == "learned").sum()), len(tested))
    keep = frame[frame["suggested_rank"].notna()]
    rank_pattern = {m: int(k) for m, k in zip(keep["module"], keep["suggested_rank"], strict=True)}
    alpha_pattern = {}
    cfg = adapter.config
    if cfg is not None:
        for m, k in rank_pattern.items():
            alpha, r = cfg.alpha_for(m), cfg.rank_for(m)
            alpha_pattern[m] = alpha * (math.sqrt(k / r) if cfg.use_rslora else k / r)
    flag_counts: dict[str, int] = {}
    for flags in frame["flags"]:
        for f in filter(None, flags.split(",")):
            flag_counts[f] = flag_counts.get(f, 0) + 1
    ranks = sorted({int(r) for r in frame["r"]})
    params = int(frame["params"].sum())
    suggested = int(keep["suggested_params"].sum())
    return {
        "format": _source_format(adapter.source), "path": adapter.source, "n_modules": len(frame),
        "r": ranks[0] if len(ranks) == 1 else ranks,
        "lora_alpha": cfg.lora_alpha if cfg is not None else None,
        "n_no_update": int(frame["no_update"].sum()), "a_verdicts": counts, "a_verdict": overall,
        "a_test": "init" if has_init else ("init_draws" if family else "none"),
        "a_init_family": family, "a_init_source": family_source,
        "update_norm": float(np.sqrt(np.nansum(frame["update_norm"].to_numpy(dtype=float) ** 2))),
        "median_stable_rank": float(np.nanmedian(frame["stable_rank"])) if len(frame) else math.nan,
        "mean_utilisation": float(np.nanmean(frame["utilisation"])) if len(frame) else math.nan,
        "energy": energy, "params": params, "suggested_params": suggested,
        "suggested_uniform_r": int(keep["suggested_rank"].max()) if len(keep) else None,
        "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern, "flags": flag_counts,
        "base_weights": has_base, "problems": list(adapter.problems),
        "thresholds": {"a_percentile_learned_above": LEVEL, "negligible_vs_peer_median": NEGLIGIBLE_PEER,
                       "negligible_vs_base_norm": FLOAT32_EPS, "spike_energy_top1": SPIKE_ENERGY,
                       "loud_vs_peer_median": LOUD_FACTOR, "balanced_gap": BALANCE_TOL},
    }  # fmt: skip
