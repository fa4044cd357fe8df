"""Is a LoRA A still a random draw of its declared init? A test against sampled draws of that init.

Without the step-0 adapter, the only evidence is A itself: compare it with `draws` samples of the init
distribution for the same shape (r, d_in), rounded to the same storage dtype (an fp16 copy of an orthonormal A
is not exactly orthonormal, and neither are the samples then).

    null = sample_null("kaiming", r=16, d_in=4096, dtype="F16")     # NullSample, 200 draws by default
    null.percentile(a_features(A))                                    # 0..100; > 99: A is not such a draw

Init families (what `sample_null` draws, float32 like PEFT and asymviz's training code, then rounded):

- ``kaiming``: PEFT's default (init_lora_weights=True, and also False, where nn.Linear's own reset draws A):
  ``nn.init.kaiming_uniform_(A, a=√5)`` in peft/tuners/lora/layer.py ``reset_lora_parameters``, i.e. gain
  √(2/(1+5)) and bound gain·√3/√fan_in = 1/√d_in: A ~ U(−1/√d_in, 1/√d_in). Also asymviz's ``a_init=kaiming``.
- ``gaussian_peft``: PEFT's init_lora_weights="gaussian": ``nn.init.normal_(A, std=1/r)``, A ~ N(0, 1/r²).
- ``gaussian``: asymviz's b_only ``a_init=gaussian`` (asymviz.training.lora.draw_A): A ~ N(0, 1/d_in).
- ``orthogonal``: asymviz's b_only ``a_init=orthogonal`` (Zhu et al.): orthonormal rows (A Aᵀ = I_r, no further
  scaling), the Q of a Gaussian (d_in, r) matrix (asymviz.training.lora.orthonormal_rows).

The statistic, per A (r, d_in), from its float64 Gram matrix A Aᵀ (r×r; σ_i = √eig):

- scale: log ‖A‖_F (two-sided);
- profile: ‖σ/‖σ‖₂ − p̄‖₂, the distance of A's normalised singular-value profile from the mean profile p̄ of
  the draws (one-sided: collinear rows or a dominant direction move it up);
- rows: the coefficient of variation of A's row norms (two-sided).

Each is standardised by the draws' mean and standard deviation (the standard deviation floored at 10·eps of
the storage dtype, so a degenerate feature, e.g. the norm of an exactly orthonormal A, cannot blow up), and
T = max(|z_scale|, z_profile, |z_rows|). The percentile is the share (in %) of draws whose own T (computed the
same way, the draws serving as their own reference) lies below A's T, ties counted half. A genuine draw of the
family lands above the 99th percentile about 1 % of the time, so an adapter of many untouched modules shows a
few `learned` modules by chance; `adapter_verdict` accounts for that with a binomial tail.
The Marchenko-Pastur law is not used: the samples are the reference, exact for every shape and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

FAMILIES = ("kaiming", "gaussian_peft", "gaussian", "orthogonal")
DRAWS = 200  # samples of the init per (family, r, d_in, dtype)
LEVEL = 99.0  # percentile above which A is `learned`
STD_FLOOR_EPS = 10.0  # standard-deviation floor, in units of the storage dtype's eps
_EPS = {"F16": 2.0**-10, "BF16": 2.0**-7, "F32": 2.0**-23, "F64": 2.0**-52}
_TORCH = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
_CHUNK_ELEMENTS = 1 << 24  # draws are generated in chunks of at most this many numbers


def storage_dtype(dtype: str) -> str:
    """Canonical safetensors dtype name ("F16", "BF16", "F32", "F64") of a header or torch dtype string."""
    aliases = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64"}
    dtype = aliases.get(str(dtype).removeprefix("torch."), str(dtype))
    if dtype not in _EPS:
        raise ValueError(f"unknown storage dtype {dtype!r}")
    return dtype


def dtype_eps(dtype: str) -> float:
    """Machine epsilon of a storage dtype (F16 2⁻¹⁰, BF16 2⁻⁷, F32 2⁻²³, F64 2⁻⁵²)."""
    return _EPS[storage_dtype(dtype)]


def draw_init(family: str, n: int, r: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """n draws of A (n, r, d_in), float32, from an init family (see the module docstring)."""
    import torch

    if family == "kaiming":
        bound = 1.0 / math.sqrt(d_in)
        return (torch.rand(n, r, d_in, generator=generator) * 2 - 1) * bound
    if family == "gaussian_peft":
        return torch.randn(n, r, d_in, generator=generator) / r
    if family == "gaussian":
        return torch.randn(n, r, d_in, generator=generator) / math.sqrt(d_in)
    if family == "orthogonal":
        if r > d_in:
            raise ValueError(f"orthogonal init needs r <= d_in, got r={r}, d_in={d_in}")
        q, _ = torch.linalg.qr(torch.randn(n, d_in, r, generator=generator, dtype=torch.float64))
        return q.transpose(1, 2).float()  # row signs do not change any feature
    raise ValueError(f"unknown init family {family!r}; known: {', '.join(FAMILIES)}")


def gram_features(G: np.ndarray) -> np.ndarray:
    """Raw features of A from its Gram matrices G = A Aᵀ, shape (..., r, r) float64 -> (..., 2 + r):
    [log ‖A‖_F, CV of row norms, σ/‖σ‖₂ (r values, descending)]."""
    import numpy as np

    lam = np.clip(np.linalg.eigvalsh(G)[..., ::-1], 0.0, None)  # descending
    sigma = np.sqrt(lam)
    total = lam.sum(axis=-1)
    rows = np.sqrt(np.clip(np.diagonal(G, axis1=-2, axis2=-1), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_norm = 0.5 * np.log(total)
        cv = rows.std(axis=-1) / rows.mean(axis=-1)
        profile = sigma / np.sqrt(total)[..., None]
    return np.concatenate([log_norm[..., None], cv[..., None], profile], axis=-1)


def a_features(A) -> np.ndarray:
    """gram_features of one A (r, d_in; a numpy array or a CPU tensor)."""
    import numpy as np

    A64 = np.asarray(A, dtype=np.float64)
    return gram_features(A64 @ A64.T)


@dataclass(frozen=True)
class NullSample:
    """Features of `draws` samples of one init family at one shape and storage dtype."""

    family: str
    r: int
    d_in: int
    dtype: str
    features: np.ndarray  # (draws, 2 + r)
    floor: float  # standard-deviation floor of every standardised feature

    def _moments(self):
        import numpy as np

        f = self.features
        mean_profile = f[:, 2:].mean(axis=0)
        dist = np.linalg.norm(f[:, 2:] - mean_profile, axis=1)
        stats = np.stack([f[:, 0], f[:, 1], dist], axis=1)  # (draws, 3): scale, rows, profile
        return mean_profile, stats.mean(axis=0), np.maximum(stats.std(axis=0, ddof=1), self.floor), stats

    def statistic(self, features: np.ndarray) -> np.ndarray:
        """T for feature rows (..., 2 + r): max(|z_scale|, |z_rows|, z_profile); NaN for a zero A."""
        import numpy as np

        mean_profile, mu, sd, _ = self._moments()
        dist = np.linalg.norm(features[..., 2:] - mean_profile, axis=-1)
        z = (np.stack([features[..., 0], features[..., 1], dist], axis=-1) - mu) / sd
        return np.maximum(np.maximum(np.abs(z[..., 0]), np.abs(z[..., 1])), z[..., 2])

    def percentile(self, features: np.ndarray) -> float:
        """Percentile (0..100) of A's T among the draws' T (ties count half); NaN when A is zero."""

        t = float(self.statistic(features))
        if not math.isfinite(t):
            return math.nan
        null_t = self.statistic(self.features)
        return float(100.0 * ((null_t < t).sum() + 0.5 * (null_t == t).sum()) / null_t.size)


def sample_null(
    family: str, r: int, d_in: int, dtype: str = "F32", draws: int = DRAWS, seed: int = 0
) -> NullSample:
    """Draw `draws` samples of A (r, d_in) from `family`, round them to the storage `dtype`, and keep their
    features. Seeded: the same arguments give the same sample. Memory: chunks of at most 2²⁴ numbers."""
    import numpy as np
    import torch

    if draws < 20:
        raise ValueError(f"draws must be at least 20 to estimate a percentile, got {draws}")
    dtype = storage_dtype(dtype)
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (r * d_in))
    grams = []
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        A = draw_init(family, n, r, d_in, gen).to(getattr(torch, _TORCH[dtype])).double()  # (n, r, d_in)
        grams.append((A @ A.transpose(1, 2)).numpy())
    features = gram_features(np.concatenate(grams))
    return NullSample(family, r, d_in, dtype, features, STD_FLOOR_EPS * dtype_eps(dtype))


def adapter_verdict(n_learned: int, n_tested: int, level: float = LEVEL, tail: float = 1e-3) -> str:
    """`learned` when more modules read `learned` than chance allows: P(Binomial(n_tested, 1 − level/100)
    ≥ n_learned) < tail; `random` otherwise; `unknown` when no module was tested."""
    from scipy.stats import binom

    if n_tested == 0:
        return "unknown"
    p = float(binom.sf(n_learned - 1, n_tested, 1.0 - level / 100.0))
    return "learned" if p < tail else "random"
