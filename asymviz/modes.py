"""The one vocabulary of fine-tuning modes: names, labels, which factors train, and the trainable dims of each.

    from asymviz.modes import LORA_MODES, label, trains, trainable_dims
    trainable_dims("b_only", d_in=384, d_out=384)      # 384: B (d_out × r) trains, one column per rank

A mode says which parts of a LoRA module are trained (Zhu et al., ICML 2024, §3): `ab` both factors (plain LoRA),
`b_only` B on a random frozen A, `a_only` A with a random frozen B. `head_only` is the control: no adapter at
all, only the task head trains, so the difference between a LoRA mode and it is what LoRA adds. The head (a
classifier, when the task has one) trains in every mode.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["ab", "b_only", "a_only", "head_only"]

LORA_MODES: tuple[str, ...] = ("ab", "b_only", "a_only")  # the three ways of training a LoRA adapter
CONTROL_MODES: tuple[str, ...] = ("head_only",)  # no adapter: the floor every LoRA mode is measured against
MODES: tuple[str, ...] = LORA_MODES + CONTROL_MODES

LABELS = {
    "ab": "A&B",
    "b_only": "B only (random A frozen)",
    "a_only": "A only (random B frozen)",
    "head_only": "head only (no adapter)",
}
SHORT_LABELS = {"ab": "A&B", "b_only": "B only", "a_only": "A only", "head_only": "head only"}

_TRAINS = {"ab": ("A", "B"), "b_only": ("B",), "a_only": ("A",), "head_only": ()}


def check_mode(mode: str, allowed: tuple[str, ...] = MODES) -> str:
    """Return `mode` if it is one of `allowed`; raise ValueError naming the choices otherwise."""
    if mode not in allowed:
        raise ValueError(f"mode must be one of {', '.join(allowed)}, got {mode!r}")
    return mode


def label(mode: str, short: bool = False) -> str:
    """A mode's display label ('A&B', 'B only (random A frozen)', ...); unknown modes are shown as given."""
    return (SHORT_LABELS if short else LABELS).get(mode, str(mode))


def trains(mode: str) -> tuple[str, ...]:
    """The LoRA factors a mode trains: ('A', 'B'), ('B',), ('A',) or () for the head-only control."""
    return _TRAINS[check_mode(mode)]


def frozen_factor(mode: str) -> str | None:
    """The factor a mode keeps at its random init ('A' for b_only, 'B' for a_only), else None."""
    return {"b_only": "A", "a_only": "B"}.get(check_mode(mode))


def trainable_dims(mode: str, d_in: int, d_out: int) -> int:
    """Trainable LoRA parameters of one module per unit of rank: d_in + d_out, d_out, d_in or 0.

    The sum of these over modules is the Σdims of the paper's bound (Lemma 4.5): r·Σdims parameters train.
    """
    factors = trains(mode)
    return ("A" in factors) * d_in + ("B" in factors) * d_out
