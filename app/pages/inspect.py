"""Inspect an adapter: spectra of A, B and ΔW, a layer × module map, parameters and bound, a second adapter."""

import streamlit as st

from app import background, cached, card_view, state
from app.components import adapter_picker, caption, download_frame, figure, guard
from asymviz import figures as F

LOAD_HINT = (
    "asymviz reads a PEFT LoRA adapter: the folder written by save_pretrained (adapter_config.json + "
    "adapter_model.safetensors), a .zip of it, or the two files."
)
METRICS = {
    "effective_rank": "effective rank (entropy of σ, 1…r)",
    "stable_rank": "stable rank ‖M‖²_F / ‖M‖²₂",
    "fro_norm": "Frobenius norm ‖M‖_F",
    "spectral_norm": "spectral norm σ₁",
    "energy_top1": "energy share of σ₁ (σ₁² / Σσ²)",
    "energy_top_k": "energy share of the top k",
}
VIEWS = [
    "Spectra",
    "Layer × module",
    "Modules",
    "Parameters & bound",
    "Compare with a second adapter",
    "Report",
    "Alignment & diagnostics",
]

st.title("Inspect an adapter")
st.markdown(
    "Drop in your own LoRA adapter (or pick a stored run) to see its anatomy: the singular values of **A**, "
    "**B** and **ΔW = s·B·A** in every module, where its energy sits layer by layer, what each training mode "
    "would cost in parameters, and how similar it is to a second adapter."
)
choice = adapter_picker("ins_a", "Adapter")
if choice is None:
    st.info(f"Choose an adapter above. {LOAD_HINT}", icon=":material/upload_file:")
    st.stop()

with guard(LOAD_HINT, stop=True):
    summary, problems, config, extras = cached.adapter_summary(choice.path, choice.signature)

for line in problems:
    st.warning(line, icon=":material/warning:")
ranks = sorted(set(summary["r"]))
m1, m2, m3, m4 = st.columns(4)
m1.metric("adapted modules", f"{len(summary):,}", border=True)
m2.metric("rank r", ", ".join(map(str, ranks)) if len(ranks) <= 4 else f"{ranks[0]}…{ranks[-1]}", border=True)
m3.metric("LoRA parameters (A&B)", f"{int(summary['params'].sum()):,}", border=True)
scaling = sorted(set(summary["scaling"].round(6)))
m4.metric("scaling s = α/r", ", ".join(f"{s:g}" for s in scaling[:3]) + ("…" if len(scaling) > 3 else ""),
          border=True, help="1 when the adapter came without adapter_config.json (α unknown).")  # fmt: skip
base = (config or {}).get("base_model_name_or_path")
file_format = cached.adapter_format(choice.path, choice.signature)
st.caption(
    f"Source: `{choice.label}`" + (f" · format: **{file_format}**" if file_format else "")
    + (f" · base model: `{base}`" if base else "")
    + (f" · {len(extras)} non-LoRA tensor(s) (modules_to_save, biases) listed under Modules" if extras else "")
)  # fmt: skip
card_view.show_card(choice.path, choice.signature, choice.label)
run_dir = background.run_folder_of(choice.path)
norms = cached.frozen_norms(str(run_dir)) if run_dir is not None else None
if norms:
    card_view.show_frozen_norms(norms)

view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="ins_view", required=True)

if view in ("Spectra", "Layer × module"):
    with guard(LOAD_HINT), st.spinner("Computing singular values of A, B and ΔW…", show_time=True):
        spectrum, spec_summary, _ = cached.spectrum(choice.path, choice.signature)
        kinds = sorted(set(spectrum["kind"]))
        if view == "Spectra":
            c1, c2, c3 = st.columns([2, 2, 1])
            y = c1.segmented_control(
                "Plot", ["sigma", "sigma_rel", "energy_cum"], default="sigma", key="ins_y", required=True,
                format_func={"sigma": "σₖ", "sigma_rel": "σₖ / σ₁", "energy_cum": "cumulative energy"}.get,
            )  # fmt: skip
            chosen = c2.multiselect("Module kinds", kinds, default=kinds, key="ins_kinds")
            log_y = c3.toggle("log scale", value=True, key="ins_log", disabled=y == "energy_cum")
            fig = cached.spectrum_figure(
                choice.path,
                choice.signature,
                y,
                bool(log_y),
                tuple(chosen),
                f"Singular values per module — {choice.label}",
            )
            figure(
                fig, f"{choice.label}_spectra", "ins_spec",
                "One thin line per module (hover for its name), the median over modules in black. A fast drop "
                "after the first few k means the update uses fewer directions than its rank r allows.",
            )  # fmt: skip
            download_frame(spectrum, f"{choice.label}_spectrum", "ins_spec_csv", "spectrum table (CSV)")
        else:
            c1, c2 = st.columns(2)
            metric = c1.selectbox("Metric", list(METRICS), format_func=METRICS.get, key="ins_metric")
            which = c2.segmented_control("Matrix", ["delta", "A", "B"], default="delta", key="ins_which",
                                         format_func=F.WHICH_LABELS.get, required=True)  # fmt: skip
            fig = cached.heatmap_figure(choice.path, choice.signature, metric, which, METRICS[metric])
            figure(
                fig, f"{choice.label}_{metric}_{which}", "ins_heat",
                f"Each cell is one module (the mean when a layer has several of that kind): {METRICS[metric]} "
                f"of {F.WHICH_LABELS[which]}. Bright rows or columns show where the adapter concentrates.",
            )  # fmt: skip
            download_frame(
                spec_summary, f"{choice.label}_spectrum_summary", "ins_sum_csv", "per-module summary (CSV)"
            )

elif view == "Modules":
    st.dataframe(summary, hide_index=True, height=min(600, 38 + 35 * len(summary)))
    caption(
        "One row per adapted module as read from the file: its rank, shapes, α and scaling, parameter count."
    )
    download_frame(summary, f"{choice.label}_modules", "ins_mod_csv", "modules (CSV)")
    if extras:
        st.markdown("**Other tensors** (trained in full, not LoRA):")
        st.dataframe([{"tensor": k, "shape": str(list(v))} for k, v in extras.items()], hide_index=True)

elif view == "Parameters & bound":
    params = {m: int(v) for m, v in zip(
        ("ab", "b_only", "a_only"),
        (summary["params"].sum(), (summary["r"] * summary["d_out"]).sum(), (summary["r"] * summary["d_in"]).sum()),
        strict=True,
    )}  # fmt: skip
    c1, c2, c3 = st.columns(3)
    n = c1.number_input("training samples n", 1, 10**10, 10_000, key="ins_n")
    q = c2.number_input("bits per parameter q", 1, 64, 32, key="ins_q")
    sigma = c3.number_input("sub-Gaussian σ of the loss", 0.001, 100.0, 0.5, step=0.1, key="ins_sigma")
    with guard("All three numbers must be positive."):
        bounds = cached.adapter_bound(choice.path, choice.signature, int(n), float(q), float(sigma))
        left, right = st.columns([1, 1])
        with left:
            figure(
                F.bound_figure(bounds, title="Generalisation bound of this adapter's shapes, by training mode"),
                f"{choice.label}_bound", "ins_bound",
                "The paper's Lemma 4.5: √(2·q·σ²·ln2·P/n) with P the parameters each mode trains. Training only B "
                "(random A frozen) trains r·d_out per module instead of r·(d_in + d_out).",
            )  # fmt: skip
        with right:
            show = bounds.assign(mode=bounds["mode"].map(F.mode_label))
            st.dataframe(
                show[["mode", "trainable_params", "bound"]], hide_index=True,
                column_config={"trainable_params": st.column_config.NumberColumn("trainable parameters", format="%d"),
                               "bound": st.column_config.NumberColumn("bound (loss units)", format="%.4g")},
            )  # fmt: skip
            download_frame(bounds, f"{choice.label}_bound", "ins_bound_csv")
    st.caption(
        f"Parameters by mode: A&B {params['ab']:,} · B only {params['b_only']:,} · A only {params['a_only']:,} "
        "(LoRA factors only; a classification head, if any, is trained in every mode)."
    )

elif view == "Compare with a second adapter":
    st.markdown("Similarity of the two adapters' subspaces, module by module (modules matched by name).")
    other = adapter_picker("ins_b", "Second adapter", default_source=2)
    if other is None:
        st.info("Choose a second adapter trained on the same base model.", icon=":material/compare_arrows:")
    elif (other.path, other.signature) == (choice.path, choice.signature):
        st.warning("That is the same adapter; pick a different one.")
    else:
        with guard("The two adapters must adapt modules with the same names and shapes (same base model)."):
            names = (
                (choice.label, other.label)
                if choice.label != other.label
                else (choice.label, other.label + " (2)")
            )
            with st.spinner("Comparing subspaces…", show_time=True):
                pairs = cached.similarity(
                    (choice.path, other.path), (choice.signature, other.signature), names
                )
            if pairs.empty:
                st.error(
                    "The two adapters have no module in common: were they trained on the same base model?"
                )
            else:
                mean = pairs.groupby("which")[["similarity", "random_baseline"]].mean()
                cols = st.columns(len(mean))
                for col, (w, row) in zip(cols, mean.iterrows(), strict=True):
                    col.metric(f"mean similarity, {F.WHICH_LABELS[w]}", f"{row['similarity']:.3f}",
                               f"random: {row['random_baseline']:.3f}", delta_color="off", delta_arrow="off", border=True)  # fmt: skip
                figure(
                    F.module_similarity_figure(pairs, title=f"Subspace similarity: {names[0]} vs {names[1]}"),
                    f"similarity_{names[0]}_{names[1]}", "ins_simfig",
                    "1 = the same subspace, 0 = orthogonal; the dashed grey line is what two random subspaces of "
                    "the same sizes would give. A's row space, B's column space, ΔW's top-r column space.",
                )  # fmt: skip
                download_frame(
                    pairs, f"similarity_{names[0]}_{names[1]}", "ins_sim_csv", "similarity table (CSV)"
                )

elif view == "Alignment & diagnostics":
    from app import alignment_view

    alignment_view.inspect_panel(choice, base)

else:  # Report
    st.markdown(
        "A standalone HTML file with this adapter's figures and tables (Plotly embedded, opens offline)."
    )
    with guard("Try the command line: asymviz report ADAPTER -o report.html"):
        with st.spinner("Building the report…", show_time=True):
            report = cached.report_html(choice.path, choice.signature, show_paths=not state.public())
        st.download_button(
            ":material/download: HTML report", data=report, type="primary", file_name=f"{choice.label}_report.html",
            mime="text/html", on_click="ignore", key="ins_report",
        )  # fmt: skip
        caption(f"{len(report) / 1e6:.1f} MB; the same file as `asymviz report ADAPTER -o report.html`.")
