"""The paper's information-theoretic generalisation bound for A&B, B-only and A-only fine-tuning.

Zhu et al. 2024, Lemma 4.5 (via Xu & Raginsky 2017): with the trainable LoRA parameters quantised to q bits,
a σ-sub-Gaussian loss and n training samples, for rank r adapters on modules with shapes (d_in, d_out):

    |gen| ≤ √( (2·r·q·σ²·ln 2 / n) · Σ dims )

with Σ dims = Σ(d_in + d_out) when A and B are trained, Σ d_out when only B is, Σ d_in when only A is.
Since r·Σ dims is the number of trainable parameters P, this is √(2·q·σ²·ln 2·P / n), which also covers
adapters whose modules have different ranks (rank_pattern).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from asymviz.errors import ConfigError
from asymviz.modes import LORA_MODES, trainable_dims

if TYPE_CHECKING:
    import pandas as pd


BOUND_COLUMNS = ["mode", "trainable_params", "sum_dims", "n", "q", "sigma", "bound"]


def bound_value(params: int, n: int, q: float = 32, sigma: float = 1.0) -> float:
    """√(2·q·σ²·ln2·params / n)."""
    for name, value in (("n", n), ("q", q), ("sigma", sigma)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value!r}")
    if params < 0:
        raise ConfigError(f"params must be non-negative, got {params!r}")
    return math.sqrt(2 * q * sigma**2 * math.log(2) * params / n)


def generalization_bound(shapes, n: int, q: float = 32, sigma: float = 1.0) -> pd.DataFrame:
    """The bound for the three modes, from an adapter's module shapes.

    Parameters
    ----------
    shapes : a LoraAdapter, or a DataFrame with columns r, d_in, d_out (one row per adapted module),
        or an iterable of (r, d_in, d_out) tuples
    n : number of training samples
    q : bits per trainable parameter (32 for fp32 training)
    sigma : sub-Gaussian parameter of the loss (a loss bounded in [0, 1] is 1/2-sub-Gaussian)

    Returns
    -------
    DataFrame, one row per mode ("ab", "b_only", "a_only"), columns
        mode, trainable_params (LoRA parameters trained in that mode: Σ r·dims),
        sum_dims (Σ dims, as in the lemma; with mixed ranks Σ (r_i/r_max)·dims_i),
        n, q, sigma, bound
    """
    import pandas as pd

    triples = _triples(shapes)
    if not triples:
        raise ConfigError("shapes: no adapted modules")
    r_max = max(r for r, _, _ in triples)
    rows = []
    for mode in LORA_MODES:
        dims = [trainable_dims(mode, d_in, d_out) for _, d_in, d_out in triples]
        params = sum(r * d for (r, _, _), d in zip(triples, dims))
        rows.append(
            {"mode": mode, "trainable_params": params, "sum_dims": params / r_max, "n": n, "q": q,
             "sigma": sigma, "bound": bound_value(params, n, q, sigma)}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=BOUND_COLUMNS)


def _triples(shapes) -> list[tuple[int, int, int]]:
    import pandas as pd

    if hasattr(shapes, "modules") and hasattr(shapes, "summary"):  # LoraAdapter
        return [(m.r, m.d_in, m.d_out) for m in shapes.modules]
    if isinstance(shapes, pd.DataFrame):
        missing = {"r", "d_in", "d_out"} - set(shapes.columns)
        if missing:
            raise ConfigError(f"shapes: the frame lacks column(s) {sorted(missing)}")
        return [
            (int(r), int(i), int(o)) for r, i, o in shapes[["r", "d_in", "d_out"]].itertuples(index=False)
        ]
    return [(int(r), int(i), int(o)) for r, i, o in shapes]
