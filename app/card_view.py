"""The adapter card on the Inspect page: did it learn, is A still its random init (and what that means for
B-only training), how much of its rank it uses, the suggested rank_pattern, and the flags (asymviz.card)."""

from __future__ import annotations

import json

import streamlit as st

from app import cached
from app.components import caption, guard

A_MEANING = {
    "random": (
        "**A is still its random init.** Training A bought nothing measurable here: the same adapter with A "
        "frozen at its init would do as well, so **B-only training** (r·d_out instead of r·(d_in + d_out) "
        "parameters per module) would have done as well (Zhu et al. 2024)."
    ),
    "learned": (
        "**A moved away from its random init.** It says A changed measurably, not that the change mattered: "
        "B-only training might still match this adapter (the paper's Overview tests that on real runs)."
    ),
    "unknown": (
        "**Whether A is still random cannot be told** for this adapter: its init family is unknown (no config, "
        "or a data-dependent init such as PiSSA or LoftQ) and no step-0 copy is stored next to it."
    ),
}
TEST_TEXT = {
    "init": "compared with its stored step-0 init (exact drift of A)",
    "init_draws": "compared with 200 seeded draws of its declared init family",
    "none": "not tested",
}
FLAG_TEXT = {
    "spike": "one direction holds over 90 % of ΔW's energy",
    "loud": "ΔW over 10× its peers' median norm",
    "balanced": "AAᵀ ≈ BᵀB: balanced factors (an SVD split), asymmetry readings do not apply",
    "orientation": "rank above a dimension: swapped or transposed factors?",
    "nonfinite": "NaN or inf in A or B",
    "dora": "a DoRA magnitude vector (the norm counts the LoRA part only)",
}


def show_frozen_norms(norms: dict) -> None:
    """The frozen factor's row and column norms at init, as run.json records them (a stored B-only or A-only
    run): what the frozen random factor looked like, e.g. an orthogonal A has rows of norm exactly 1."""
    factor = norms.get("factor", "?")
    parts = []
    for side, what in (("row", "rows"), ("col", "columns")):
        s = norms.get(side) or {}
        if s:
            parts.append(f"{what}: mean {s['mean']:.4g} (from {s['min']:.4g} to {s['max']:.4g})")
    st.caption(
        f":material/lock: Frozen {factor} at init, over its {norms.get('modules', '?')} modules: "
        + "; ".join(parts)
        + (". A row of A is one rank direction in input space (PEFT's Kaiming-uniform A: about 0.577; an "
           "orthogonal A: exactly 1)." if factor == "A" else ". A column of B is one rank direction in output "
           "space.")
    )  # fmt: skip


def show_card(path: str, signature: str, label: str) -> None:
    """The card's verdicts as metrics, what the A verdict means, flags and the suggested rank_pattern."""
    with guard("The card could not be computed for this adapter; the views below still work."):
        with st.spinner("Reading the adapter card (A against its init, rank use)…", show_time=True):
            card = cached.adapter_card(path, signature)
        summary = card["adapter"]
        counts = summary["a_verdicts"]
        c1, c2, c3, c4 = st.columns(4)
        c1.metric(
            "A still random?", {"random": "yes", "learned": "no", "unknown": "unknown"}[summary["a_verdict"]],
            f"{counts['random']} random · {counts['learned']} learned"
            + (f" · {counts['unknown']} unknown" if counts["unknown"] else ""),
            delta_color="off", delta_arrow="off", border=True, help=f"Per module, A {TEST_TEXT[summary['a_test']]}.",
        )  # fmt: skip
        c2.metric(
            "update ‖ΔW‖_F", f"{summary['update_norm']:.4g}",
            f"{summary['n_no_update']} module(s) without an update" if summary["n_no_update"] else "every module moved",
            delta_color="off", delta_arrow="off", border=True, help="√Σ‖s·B·A‖²_F over modules; PEFT starts ΔW at 0, so > 0 was learned.",
        )  # fmt: skip
        c3.metric(
            "rank use (stable rank / r)", f"{summary['mean_utilisation']:.0%}",
            f"median stable rank {summary['median_stable_rank']:.2f}", delta_color="off", delta_arrow="off", border=True,
            help="stable rank ‖ΔW‖²_F / σ₁², averaged over modules, as a share of r.",
        )  # fmt: skip
        saved = 1 - summary["suggested_params"] / summary["params"] if summary["params"] else 0.0
        c4.metric(
            f"rank for {summary['energy']:.0%} energy", str(summary["suggested_uniform_r"] or "–"),
            f"{saved:.0%} fewer parameters", delta_color="off", delta_arrow="off", border=True,
            help="The smallest k per module that keeps this share of ‖ΔW‖²_F; the largest over modules.",
        )  # fmt: skip
        st.markdown(A_MEANING[summary["a_verdict"]])
        flags = summary["flags"]
        if flags:
            st.warning(
                "Flags: "
                + "; ".join(f"**{f}** ({n} module(s)): {FLAG_TEXT.get(f, f)}" for f, n in flags.items()),
                icon=":material/flag:",
            )
        with st.expander("Per-module card and the suggested rank_pattern"):
            import pandas as pd

            from asymviz.card import CARD_COLUMNS

            modules = pd.DataFrame(card["modules"])
            modules["flags"] = modules["flags"].map(", ".join)
            st.dataframe(modules[[*CARD_COLUMNS, "a_test", "a_rel_change", "utilisation"]], hide_index=True)
            st.markdown(
                "`peft.LoraConfig(rank_pattern=..., alpha_pattern=...)` for a smaller adapter with the same "
                "scaling per module:"
            )
            st.code(json.dumps({"rank_pattern": summary["rank_pattern"], "alpha_pattern": summary["alpha_pattern"]},
                               indent=1), language="json")  # fmt: skip
        caption(
            f"The adapter card of {label} (`asymviz card ADAPTER`): A {TEST_TEXT[summary['a_test']]}; "
            "the thresholds are in asymviz/card.py."
        )
