"""Prototype, not shipped: what `asymviz spectra` would cost on numpy alone (no `import torch`), measured.

    python bench/proto_numpy_spectra.py ADAPTER_FOLDER            # prints the spectrum CSV, as `asymviz spectra`
    python bench/bench_analysis.py --rows cli-small,cli-numpy      # times it against the real command

Issue 15 asks whether the read -> spectra path can run on numpy (safetensors.numpy + numpy.linalg) where the
file's dtypes allow (F16/F32/F64), since `import torch` is most of a small command's time. asymviz's loader
and analysis core are written against torch tensors (asymviz.adapters, asymviz.linalg), so this is the
parallel implementation the issue warns about, reduced to the smallest case (a PEFT folder, `lora_A`/`lora_B`
keys, `r`, `lora_alpha` and `use_rslora` from the config; no rank/alpha patterns, DoRA, other formats,
validation or error messages) to measure the gain before deciding whether the core should become
array-agnostic. Same math as asymviz.linalg: float64 Grams, their eigenvalues, ΔW's σ from the r×r core
s·R_B R_Aᵀ with R = Λ^{1/2}Vᵀ. It imports numpy, pandas and safetensors.numpy only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np


def _factor(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(σ descending, R = Λ^{1/2}Vᵀ) of M (d, r) from its float64 Gram."""
    M = M.astype(np.float64)
    lam, V = np.linalg.eigh(M.T @ M)  # ascending
    sigma = np.sqrt(np.clip(lam[::-1], 0, None))
    return sigma, sigma[:, None] * V[:, ::-1].T


def spectra(folder: Path):
    from safetensors.numpy import load_file

    cfg = json.loads((folder / "adapter_config.json").read_text())
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg["r"])
    scaling = alpha / (r**0.5 if cfg.get("use_rslora") else r)
    tensors = load_file(folder / "adapter_model.safetensors")
    rows = []
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        A, B = tensors[key], tensors[key.replace(".lora_A.", ".lora_B.")]  # (r, d_in), (d_out, r)
        name = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        s_a, R_a = _factor(A.T)
        s_b, R_b = _factor(B)
        s_d = np.linalg.svd(scaling * (R_b @ R_a.T), compute_uv=False)
        layer = re.search(r"\d+", name)
        for which, sigma in (("A", s_a), ("B", s_b), ("delta", s_d)):
            energy = sigma**2
            rows.append((name, int(layer.group()) if layer else None, name.rsplit(".", 1)[-1], which, sigma,
                         sigma / sigma[0], np.cumsum(energy) / energy.sum()))  # fmt: skip
    return rows


def main() -> None:
    import pandas as pd

    rows = spectra(Path(sys.argv[1]))
    frame = pd.DataFrame(
        [(n, lay, kind, w, k + 1, s[k], rel[k], cum[k]) for n, lay, kind, w, s, rel, cum in rows for k in range(s.size)],
        columns=["module", "layer", "kind", "which", "k", "sigma", "sigma_rel", "energy_cum"],
    )  # fmt: skip
    frame["layer"] = frame["layer"].astype("Int64")
    frame.to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
