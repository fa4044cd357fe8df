"""Theory: the paper's linear-regression asymmetry as an interactive simulation, and the bound calculator."""

import streamlit as st

from app import cached
from app.components import caption, details, download_frame, figure, guard
from asymviz import figures as F

st.title("Theory: why a random A costs less than a random B")
st.markdown(
    "In a linear model y = (W₀ + Δ)x + ε fine-tuned with ΔW = B·A, freeze one factor at random and solve for "
    "the other exactly (Zhu et al. 2024, §4.1). **Freezing A** leaves B\\* = ΔΣQᵀ(QΣQᵀ)⁻¹: the random A is "
    "seen *through the input covariance Σ*, so when inputs occupy few directions it loses little. "
    "**Freezing B** leaves A\\* = UᵀΔ: the random B spends its r directions uniformly over all d_out outputs, "
    "whatever the data. Change the settings and watch the two distributions move."
)

with details("The closed forms and where they come from", "th_forms_open") as opened:
    if opened:  # KaTeX typesetting of the formulas only when asked for
        st.markdown(
            r"""
Excess loss over the full update Δ, with inputs $x\sim(0,\Sigma)$: $\mathcal E(BA)=\mathrm{Tr}[(\Delta-BA)\Sigma(\Delta-BA)^\top]$,
and $T=\mathrm{Tr}(\Delta\Sigma\Delta^\top)$ is the loss of not fine-tuning. Relative losses $\mathcal E/T$ are plotted.

* **B only** (A = Q, orthonormal rows, uniformly random): $\mathcal E_B = \|\Delta\Sigma^{1/2}(I-P)\|_F^2$ with $P$ the projector
  onto $\mathrm{range}(\Sigma^{1/2}Q^\top)$. For inputs spread evenly over $k$ directions, exactly
  $\mathbb E[\mathcal E_B]=(1-\min(r,k)/k)\,T$ — zero once $r\ge k$. For other spectra we use the deterministic equivalent
  $\mathbb E[P]\approx\Sigma(\Sigma+\mu I)^{-1}$ with trace $r$ (marked *approximate*).
* **A only** (B = U, orthonormal columns, uniformly random): $\mathcal E_A=\|(I-UU^\top)\Delta\Sigma^{1/2}\|_F^2$ and, exactly
  for every Σ and Δ, $\mathbb E[\mathcal E_A]=(1-r/d_{out})\,T$.
* **A&B** can reach the best rank-r approximation of $\Delta\Sigma^{1/2}$ (Eckart–Young): $\sum_{i>r}s_i^2$.

The full derivation is in the docstring of `asymviz/theory.py`.
"""
        )

PRESETS = {
    "MiniLM-L6, query & value (12 modules, 384 × 384)": (12, 384, 384),
    "RoBERTa-base, query & value (24 modules, 768 × 768)": (24, 768, 768),
    "LLaMA-2-7B, q_proj & v_proj (64 modules, 4096 × 4096)": (64, 4096, 4096),
    "custom": None,
}


def simulation():
    c1, c2, c3 = st.columns(3)
    with c1:
        d_in = st.slider("d_in (input dimension)", 8, 512, 64, step=8, key="th_d_in")
        d_out = st.slider("d_out (output dimension)", 8, 512, 64, step=8, key="th_d_out")
        r = st.slider("r (LoRA rank)", 1, min(64, d_in, d_out), min(4, d_in, d_out), key="th_r")
    with c2:
        spectrum = st.selectbox(
            "Input covariance spectrum", ["low_rank", "flat", "power_law", "exponential"], key="th_spectrum",
            format_func={"low_rank": "low rank: k equal directions", "flat": "flat (isotropic Σ)",
                         "power_law": "power law λᵢ = i^(−p)", "exponential": "exponential λᵢ = e^(−p(i−1)/10)"}.get,
        )  # fmt: skip
        k = d_in
        decay = 1.0
        if spectrum == "low_rank":
            k = st.slider("k (directions the inputs occupy)", 1, d_in, min(16, d_in), key="th_k")
        elif spectrum in ("power_law", "exponential"):
            decay = st.slider("decay p", 0.0, 3.0, 1.0, step=0.1, key="th_decay")
    with c3:
        delta_rank = st.slider("rank of the target update Δ (max = full)", 1, min(d_in, d_out), min(d_in, d_out),
                               key="th_delta_rank")  # fmt: skip
        draws = st.select_slider(
            "random draws of the frozen factor", [50, 100, 200, 500, 1000, 2000], 500, key="th_draws"
        )
        seed = st.number_input("seed", 0, 10_000, 0, key="th_seed")

    with guard("Pick smaller dimensions or fewer draws."), st.spinner("Simulating…"):
        full = delta_rank == min(d_in, d_out)
        params = (
            d_in,
            d_out,
            r,
            spectrum,
            k,
            float(decay),
            None if full else delta_rank,
            int(draws),
            int(seed),
        )
        draws_f, expected, comparison, by_rank, lam = cached.theory(*params)
        fig_hist, fig_rank, fig_lam = cached.theory_figures(*params)
        ref = expected.set_index("mode")
        cmp = comparison.set_index("mode")
        m1, m2, m3 = st.columns(3)
        m1.metric(
            "B only: mean relative excess loss", f"{cmp.loc['b_only', 'simulated_mean']:.3f}",
            help="Simulated mean over the draws; the closed form is given below.", border=True,
        )  # fmt: skip
        m1.caption(
            f"closed form {ref.loc['b_only', 'relative_expected']:.3f}"
            + ("" if ref.loc["b_only", "exact"] else " (approximate)")
        )
        m2.metric(
            "A only: mean relative excess loss", f"{cmp.loc['a_only', 'simulated_mean']:.3f}", border=True
        )
        m2.caption(f"closed form {ref.loc['a_only', 'relative_expected']:.3f} (exact)")
        m3.metric("A&B optimum (best rank-r)", f"{ref.loc['ab', 'relative_expected']:.3f}", border=True)
        m3.caption("lower bound for any rank-r adapter")

        figure(
            fig_hist, "theory_excess_loss", "theory_hist",
            f"Each histogram is {draws} random draws of the frozen factor with the other solved exactly; dashed lines "
            "are the closed-form expectations. 0 = as good as the full update Δ, 1 = as bad as no fine-tune.",
        )  # fmt: skip
        table = comparison.assign(mode=comparison["mode"].map(F.mode_label))
        st.dataframe(
            table, hide_index=True,
            column_config={
                "mode": "mode", "simulated_mean": st.column_config.NumberColumn("simulated mean", format="%.4f"),
                "simulated_se": st.column_config.NumberColumn("s.e.", format="%.4f"),
                "draws": "draws", "closed_form": st.column_config.NumberColumn("closed form", format="%.4f"),
                "exact": st.column_config.CheckboxColumn("closed form exact?"),
                "z": st.column_config.NumberColumn("z = (sim − closed)/s.e.", format="%.2f"),
            },
        )  # fmt: skip
        caption(
            "Simulated mean ± standard error against the closed form; |z| below about 3 means they agree within sampling noise (|z| > 2 happens by chance in 1 of 20 settings)."
        )
        download_frame(comparison, "theory_comparison", "theory_cmp")

        if not st.toggle("Show the closed forms for every rank and the input spectrum", key="th_more"):
            return
        left, right = st.columns(2)
        with left:
            figure(
                fig_rank, "theory_by_rank", "theory_rank",
                "Closed-form expected relative excess loss for every rank with the same Σ and Δ; the dashed line is the "
                "chosen r.",
            )  # fmt: skip
        with right:
            figure(
                fig_lam, "theory_spectrum", "theory_lam",
                "Eigenvalues of the input covariance Σ (scaled to mean 1). Fewer large ones = inputs on fewer "
                "directions = a cheaper random A.",
            )  # fmt: skip


def bound_calculator():
    st.markdown(
        "Lemma 4.5 of the paper (via Xu & Raginsky): with trainable parameters stored in q bits, a σ-sub-Gaussian "
        "loss and n training samples, |generalisation error| ≤ √(2·q·σ²·ln 2·P / n), where P is the number of "
        "trainable LoRA parameters: r·Σ(d_in + d_out) for A&B, r·Σd_out for B only, r·Σd_in for A only."
    )
    b1, b2 = st.columns(2)
    with b1:
        preset = st.selectbox("Adapted modules", list(PRESETS), key="bd_preset")
        modules, p_in, p_out = PRESETS[preset] or (12, 384, 384)
        custom = preset == "custom"
        n_modules = st.number_input(
            "number of adapted modules", 1, 10_000, modules, disabled=not custom, key="bd_m"
        )
        d_in_b = st.number_input("d_in per module", 1, 100_000, p_in, disabled=not custom, key="bd_din")
        d_out_b = st.number_input("d_out per module", 1, 100_000, p_out, disabled=not custom, key="bd_dout")
    with b2:
        r_b = st.number_input("rank r", 1, 4096, 8, key="bd_r")
        n_b = st.number_input("training samples n", 1, 10**10, 10_000, key="bd_n")
        q_b = st.number_input("bits per parameter q", 1, 64, 32, key="bd_q")
        sigma_b = st.number_input("sub-Gaussian σ of the loss", 0.001, 100.0, 0.5, step=0.1, key="bd_sigma",
                                  help="A loss bounded in [0, 1] is ½-sub-Gaussian.")  # fmt: skip

    with guard("Check the numbers: all must be positive."):
        if custom:
            n_modules, d_in_b, d_out_b = int(n_modules), int(d_in_b), int(d_out_b)
        shapes = tuple([(int(r_b), int(d_in_b), int(d_out_b))] * int(n_modules))
        bounds = cached.bound(shapes, int(n_b), float(q_b), float(sigma_b))
        bl, br = st.columns([1, 1])
        with bl:
            figure(
                cached.bound_figure(shapes, int(n_b), float(q_b), float(sigma_b)), "generalisation_bound", "bound_fig",
                "The bound grows with the square root of the trainable parameters: B only halves them when "
                "d_in = d_out, so its bound is 1/√2 ≈ 0.71 of A&B's.",
            )  # fmt: skip
        with br:
            show = bounds.assign(mode=bounds["mode"].map(F.mode_label))
            st.dataframe(
                show[["mode", "trainable_params", "bound"]], hide_index=True,
                column_config={"trainable_params": st.column_config.NumberColumn("trainable parameters", format="%d"),
                               "bound": st.column_config.NumberColumn("bound (loss units)", format="%.4g")},
            )  # fmt: skip
            download_frame(bounds, "generalisation_bound", "bound_csv")


view = st.segmented_control(
    "Section",
    ["Simulation", "Generalisation bound calculator"],
    default="Simulation",
    key="th_view",
    required=True,
)
if view == "Simulation":
    simulation()
else:
    bound_calculator()
