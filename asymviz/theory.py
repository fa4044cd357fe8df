"""The paper's linear-regression asymmetry (Zhu et al. 2024, Section 4.1) as a simulation with closed forms.

    cfg = TheoryConfig(d_in=64, d_out=64, r=4, spectrum="low_rank", k=8, draws=500)
    draws = simulate_excess_loss(cfg)      # one row per (draw, mode): the loss of the tuned factor
    expected = expected_excess_loss(cfg)   # the closed-form expectations (and the best rank-r update)

Setting and derivation
----------------------
A pretrained linear model W0 (d_out × d_in) is fine-tuned on a target task y = (W0 + Δ)x + ε with inputs
x ~ (0, Σ) in R^d_in and noise ε independent of x. LoRA adds ΔW = B·A (B: d_out × r, A: r × d_in). The
population squared loss is L(BA) = E‖ε‖² + Tr[(Δ − BA) Σ (Δ − BA)ᵀ], so the *excess loss* over the best
full update Δ is

    E(BA) = Tr[(Δ − BA) Σ (Δ − BA)ᵀ] = ‖(Δ − BA) Σ^½‖²_F,      and E(0) = Tr(ΔΣΔᵀ) =: T (no fine-tune).

Relative excess losses E/T lie in [0, 1]: 0 is as good as the full update, 1 as bad as not fine-tuning.

**B only, A = Q frozen random** (Q: r × d_in with orthonormal rows, uniformly distributed). Setting the
gradient in B to zero gives B·QΣQᵀ = ΔΣQᵀ, so B* = ΔΣQᵀ(QΣQᵀ)⁻¹ (the paper's Lemma; pseudo-inverse when
Σ is singular). Then B*QΣ^½ = ΔΣ^½·P with P = Σ^½Qᵀ(QΣQᵀ)⁻¹QΣ^½, the orthogonal projector onto
range(Σ^½Qᵀ), hence

    E_B(Q) = ‖ΔΣ^½ (I − P)‖²_F = T − Tr(ΔΣ^½ P Σ^½Δᵀ).

Write Σ = V diag(λ) Vᵀ. range(Σ^½Qᵀ) has the law of the span of r independent N(0, Σ) vectors, which is
invariant under the sign flips V diag(±1) Vᵀ, so E[P] = V diag(p) Vᵀ with Σᵢ pᵢ = min(r, rank Σ) and

    E[E_B] = Σᵢ (1 − pᵢ) λᵢ ‖Δvᵢ‖².

- *Flat spectrum on k directions* (λᵢ = λ for i ≤ k, 0 after; k = d_in is isotropic Σ): the law is also
  invariant under rotations inside that eigenspace, so pᵢ = min(r, k)/k there and, **exactly**,
  E[E_B] = (1 − min(r, k)/k)·T. When the inputs occupy k ≤ r directions a random A loses nothing.
- *Any other spectrum*: pᵢ has no elementary form; we use the deterministic equivalent of random
  projections (Dereziński, Liang, Liao & Mahoney, NeurIPS 2020) pᵢ ≈ λᵢ/(λᵢ + μ) with μ > 0 solving
  Σᵢ λᵢ/(λᵢ + μ) = r. It reduces to the exact value in the flat case; otherwise it is an approximation,
  flagged ``exact=False`` (within a few per cent at d_in ≥ 32 in our tests).

**A only, B = U frozen random** (U: d_out × r with orthonormal columns, uniformly distributed). The gradient
in A vanishes at UᵀU·AΣ = UᵀΔΣ, so A* = UᵀΔ (the paper's Lemma), and

    E_A(U) = ‖(I − UUᵀ) ΔΣ^½‖²_F = T − Tr(UᵀΔΣΔᵀU).

By rotation invariance E[UUᵀ] = (r/d_out)·I, so **exactly**, for every Σ and Δ,

    E[E_A] = (1 − r/d_out)·T.

The asymmetry: a random frozen B wastes its r directions uniformly over all d_out outputs whatever the
data, while a random frozen A is seen *through* Σ, so inputs with a low intrinsic dimension (features of a
foundation model) make random A nearly free. For reference, training both factors reaches the best rank-r
approximation of ΔΣ^½ (Eckart–Young): E_AB = Σ_{i>r} sᵢ², sᵢ the singular values of ΔΣ^½.

The simulation takes Σ diagonal (λ in the standard basis): Q and U are uniformly distributed, so a fixed
rotation of the input basis changes nothing. Δ is a Gaussian matrix of rank `delta_rank`, drawn once per
seed. Each draw solves the two regressions with the paper's formulas (B* and A* above), not the shortcuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from asymviz.errors import ConfigError

Spectrum = Literal["flat", "low_rank", "power_law", "exponential"]
SPECTRA = ("flat", "low_rank", "power_law", "exponential")
DRAW_COLUMNS = ["draw", "mode", "excess_loss", "relative_excess"]
EXPECTED_COLUMNS = ["mode", "expected", "relative_expected", "exact", "formula"]
MAX_DIM = 2048
MAX_DRAWS = 20_000


@dataclass(frozen=True)
class TheoryConfig:
    d_in: int = 64  # input dimension of the adapted layer
    d_out: int = 64  # output dimension
    r: int = 4  # LoRA rank
    spectrum: Spectrum = "low_rank"  # eigenvalues of the input covariance Σ (see input_spectrum)
    k: int = 8  # low_rank: number of directions the inputs occupy (equal eigenvalues, the rest 0)
    decay: float = 1.0  # power_law: λᵢ = i^(−decay); exponential: λᵢ = exp(−decay·(i−1)/10)
    delta_rank: int | None = None  # rank of the target update Δ (None: full rank)
    draws: int = 500  # random draws of the frozen factor
    seed: int = 0  # seeds Δ and the draws

    def __post_init__(self):
        for name in ("d_in", "d_out", "r", "k", "draws"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if max(self.d_in, self.d_out) > MAX_DIM:
            raise ConfigError(
                f"d_in, d_out: at most {MAX_DIM} in the simulation, got {self.d_in}, {self.d_out}"
            )
        if self.r > min(self.d_in, self.d_out):
            raise ConfigError(
                f"r: must be at most min(d_in, d_out) = {min(self.d_in, self.d_out)}, got {self.r}"
            )
        if self.spectrum not in SPECTRA:
            raise ConfigError(f"spectrum: must be one of {', '.join(SPECTRA)}, got {self.spectrum!r}")
        if self.k > self.d_in:
            raise ConfigError(f"k: must be at most d_in = {self.d_in}, got {self.k}")
        if not (np.isfinite(self.decay) and self.decay >= 0):
            raise ConfigError(f"decay: must be a finite number ≥ 0, got {self.decay!r}")
        if self.delta_rank is not None and not 1 <= self.delta_rank <= min(self.d_in, self.d_out):
            raise ConfigError(f"delta_rank: must be between 1 and min(d_in, d_out), got {self.delta_rank!r}")
        if self.draws > MAX_DRAWS:
            raise ConfigError(f"draws: at most {MAX_DRAWS:,}, got {self.draws:,}")


def input_spectrum(cfg: TheoryConfig) -> np.ndarray:
    """Eigenvalues λ (d_in,) of Σ in descending order, scaled so that their mean is 1 (the scale of Σ cancels
    in relative losses)."""
    i = np.arange(1, cfg.d_in + 1, dtype=float)
    if cfg.spectrum == "flat":
        lam = np.ones(cfg.d_in)
    elif cfg.spectrum == "low_rank":
        lam = (i <= cfg.k).astype(float)
    elif cfg.spectrum == "power_law":
        lam = i ** (-cfg.decay)
    else:  # exponential
        lam = np.exp(-cfg.decay * (i - 1) / 10.0)
    return lam * (cfg.d_in / lam.sum())


def target_update(cfg: TheoryConfig) -> np.ndarray:
    """Δ (d_out, d_in): a Gaussian matrix of rank `delta_rank` (full when None), entries of variance 1/d_in."""
    rng = np.random.default_rng([cfg.seed, 1])
    if cfg.delta_rank is None:
        return rng.standard_normal((cfg.d_out, cfg.d_in)) / np.sqrt(cfg.d_in)
    left = rng.standard_normal((cfg.d_out, cfg.delta_rank))
    right = rng.standard_normal((cfg.delta_rank, cfg.d_in))
    return left @ right / np.sqrt(cfg.d_in * cfg.delta_rank)


def _haar_columns(rng: np.random.Generator, n: int, d: int, r: int) -> np.ndarray:
    """n matrices (n, d, r) with orthonormal columns, uniformly distributed (QR of Gaussians, signs fixed)."""
    g = rng.standard_normal((n, d, r))
    q, rr = np.linalg.qr(g)
    signs = np.sign(np.diagonal(rr, axis1=1, axis2=2))
    signs[signs == 0] = 1.0
    return q * signs[:, None, :]


def _chunks(total: int, per: int):
    start = 0
    while start < total:
        yield start, min(per, total - start)
        start += per


def simulate_excess_loss(cfg: TheoryConfig) -> pd.DataFrame:
    """Excess loss of the two frozen-factor solutions over `cfg.draws` random draws of the frozen factor.

    Returns
    -------
    DataFrame, one row per (draw, mode), columns
        draw : 0..draws−1
        mode : "b_only" (A = Q random frozen, B* = ΔΣQᵀ(QΣQᵀ)⁻¹) or "a_only" (B = U random frozen, A* = UᵀΔ)
        excess_loss : Tr[(Δ − B*A*)Σ(Δ − B*A*)ᵀ]
        relative_excess : excess_loss / Tr(ΔΣΔᵀ)
    """
    lam = input_spectrum(cfg)  # (d_in,)
    delta = target_update(cfg)  # (d_out, d_in)
    total = float(np.sum(delta**2 * lam))  # T = Tr(ΔΣΔᵀ) with Σ = diag(λ)
    rng = np.random.default_rng([cfg.seed, 2])
    per = max(1, int(8e6 // (cfg.d_out * cfg.d_in)))  # ~64 MB of float64 residuals per chunk
    b_losses, a_losses = [], []
    for _, n in _chunks(cfg.draws, per):
        # B only: A = Q (n, r, d_in) with orthonormal rows
        Q = np.swapaxes(_haar_columns(rng, n, cfg.d_in, cfg.r), 1, 2)
        QS = Q * lam  # QΣ (n, r, d_in)
        gram = QS @ np.swapaxes(Q, 1, 2)  # QΣQᵀ (n, r, r)
        B = (delta @ np.swapaxes(QS, 1, 2)) @ np.linalg.pinv(
            gram, rcond=1e-10, hermitian=True
        )  # (n, d_out, r)
        resid = delta - B @ Q  # Δ − B*Q (n, d_out, d_in)
        b_losses.append(np.einsum("nij,j->n", resid**2, lam))
        # A only: B = U (n, d_out, r) with orthonormal columns
        U = _haar_columns(rng, n, cfg.d_out, cfg.r)
        A = np.swapaxes(U, 1, 2) @ delta  # A* = UᵀΔ (n, r, d_in)
        resid = delta - U @ A
        a_losses.append(np.einsum("nij,j->n", resid**2, lam))
    b = np.concatenate(b_losses)
    a = np.concatenate(a_losses)
    draws = np.arange(cfg.draws)
    frame = pd.DataFrame(
        {
            "draw": np.concatenate([draws, draws]),
            "mode": ["b_only"] * cfg.draws + ["a_only"] * cfg.draws,
            "excess_loss": np.concatenate([b, a]),
        }
    )
    frame["relative_excess"] = frame["excess_loss"] / total if total > 0 else np.nan
    return frame[DRAW_COLUMNS]


def projection_weights(lam: np.ndarray, r: int) -> tuple[np.ndarray, bool]:
    """E[P]'s eigenvalues pᵢ for P the projector onto the span of r independent N(0, diag(λ)) vectors.

    Returns (p, exact): exact for a flat spectrum on its support (pᵢ = min(r, k)/k), otherwise the
    deterministic equivalent pᵢ = λᵢ/(λᵢ + μ) with Σ pᵢ = r.
    """
    lam = np.asarray(lam, dtype=float)
    support = lam > 0
    k = int(support.sum())
    if r >= k:
        return support.astype(float), True
    if np.allclose(lam[support], lam[support][0]):
        return support * (r / k), True
    lo, hi = 0.0, float(lam.max()) * k / max(r, 1) + 1.0  # Σ λ/(λ+hi) ≤ k·λmax/hi < r
    for _ in range(200):  # bisection on the monotone decreasing Σ λ/(λ+μ)
        mid = 0.5 * (lo + hi)
        if np.sum(lam / (lam + mid)) > r:
            lo = mid
        else:
            hi = mid
    mu = 0.5 * (lo + hi)
    return lam / (lam + mu), False


def _expected_rows(lam: np.ndarray, delta: np.ndarray, r: int, svals: np.ndarray) -> list[tuple]:
    col_energy = np.sum(delta**2, axis=0)  # ‖Δvᵢ‖² with vᵢ the standard basis (Σ diagonal)
    total = float(np.sum(col_energy * lam))
    p, exact = projection_weights(lam, r)
    e_b = float(np.sum((1.0 - p) * lam * col_energy))
    e_a = (1.0 - r / delta.shape[0]) * total
    e_ab = float(np.sum(svals[r:] ** 2))
    k = int((lam > 0).sum())
    b_formula = (
        f"(1 − min(r,k)/k)·Tr(ΔΣΔᵀ), k = {k} input directions"
        if exact
        else "Σᵢ (1 − λᵢ/(λᵢ+μ)) λᵢ‖Δvᵢ‖², Σᵢ λᵢ/(λᵢ+μ) = r (deterministic equivalent)"
    )
    rel = (lambda e: e / total) if total > 0 else (lambda e: float("nan"))
    return [
        ("b_only", e_b, rel(e_b), exact, b_formula),
        ("a_only", e_a, rel(e_a), True, "(1 − r/d_out)·Tr(ΔΣΔᵀ)"),
        ("ab", e_ab, rel(e_ab), True, "Σ_{i>r} sᵢ², sᵢ singular values of ΔΣ^½ (best rank-r update)"),
    ]


def expected_excess_loss(cfg: TheoryConfig) -> pd.DataFrame:
    """Closed-form expected excess losses of the two frozen-factor solutions, and the best rank-r update.

    Returns
    -------
    DataFrame, one row per mode ("b_only", "a_only", "ab"), columns
        mode
        expected : E[excess loss] (for "ab": the Eckart–Young minimum over all rank-r B·A, deterministic)
        relative_expected : expected / Tr(ΔΣΔᵀ)
        exact : False where the deterministic-equivalent approximation was used (b_only, non-flat spectra)
        formula : the expression used, in words
    """
    lam, delta = input_spectrum(cfg), target_update(cfg)
    svals = np.linalg.svd(delta * np.sqrt(lam), compute_uv=False)
    return pd.DataFrame(_expected_rows(lam, delta, cfg.r, svals), columns=EXPECTED_COLUMNS)


def expected_by_rank(cfg: TheoryConfig, ranks=None) -> pd.DataFrame:
    """The closed forms of `expected_excess_loss` for several ranks (same Σ and Δ as `cfg`).

    Returns
    -------
    DataFrame, one row per (r, mode), columns ``r, mode, expected, relative_expected, exact, formula``.
    """
    lam, delta = input_spectrum(cfg), target_update(cfg)
    svals = np.linalg.svd(delta * np.sqrt(lam), compute_uv=False)
    ranks = range(1, min(cfg.d_in, cfg.d_out) + 1) if ranks is None else ranks
    rows = [(int(r), *row) for r in ranks for row in _expected_rows(lam, delta, int(r), svals)]
    return pd.DataFrame(rows, columns=["r", *EXPECTED_COLUMNS])


def compare_with_closed_form(draws: pd.DataFrame, expected: pd.DataFrame) -> pd.DataFrame:
    """Simulated mean ± s.e. next to the closed form, per frozen-factor mode.

    Returns
    -------
    DataFrame with columns ``mode, simulated_mean, simulated_se, draws, closed_form, exact, z``
    (relative excess losses; z = (simulated_mean − closed_form) / simulated_se).
    """
    g = draws.groupby("mode", sort=False)["relative_excess"]
    out = g.agg(simulated_mean="mean", simulated_std="std", draws="count").reset_index()
    out["simulated_se"] = out["simulated_std"] / np.sqrt(out["draws"])
    ref = expected.set_index("mode")
    out["closed_form"] = out["mode"].map(ref["relative_expected"])
    out["exact"] = out["mode"].map(ref["exact"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["z"] = (out["simulated_mean"] - out["closed_form"]) / out["simulated_se"]
    return out[["mode", "simulated_mean", "simulated_se", "draws", "closed_form", "exact", "z"]]
