"""Alignment: where an adapter's A and B point — against a data sample's inputs and output gradients, and
against the base weight's singular subspaces — and the literature's diagnostics (intruders, amplification,
DoRA). The computations run in a server thread (app.background.alignment_job); this page starts and watches them."""

from pathlib import Path

import streamlit as st

from app import alignment_view as V
from app import background, cached, state, tables, uploads
from app.components import adapter_picker, base_model_input, guard

OTHER_TASK = "my CSV/JSONL file"

st.title("Alignment")
st.markdown(
    "The paper's mechanism in one line: **A** extracts features from the input, **B** maps them to the output. "
    "This page measures it on an adapter: it runs a sample of task data through the base model with the adapter, "
    "and compares A's row space with the directions the module's **inputs** vary in, and B's column space with "
    "the directions of the **loss gradients** at its output, each next to what a random subspace would get. "
    "For a stored run the init is measured too, so you see what training did. Below: diagnostics from other "
    "papers that need only the base weights."
)

choice = adapter_picker("aln", "Adapter", default_source=2)
if choice is None:
    st.info(
        "Choose an adapter above: a stored run (its base model and task come with it), or your own PEFT adapter "
        "(then name its base model and a task).",
        icon=":material/join:",
    )
    st.stop()

run_dir = background.run_folder_of(choice.path)
with st.container(border=True):
    if run_dir is not None:
        settings = cached.run_settings(str(run_dir))
        base, task = settings.get("model"), settings.get("task")
        st.markdown(
            f"Base model **{tables.short(base)}** · task **{tables.short(task)}** (from the run's run.json)"
            + (f" · {settings['max_length']} tokens per example" if settings.get("max_length") else "")
        )
        if not base or not task:
            st.error("This run's run.json names no model or task: it cannot be aligned.")
            st.stop()
    else:
        config = None
        with guard(
            "asymviz reads a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors).", stop=True
        ):
            config = cached.adapter_summary(choice.path, choice.signature)[2]
        named = (config or {}).get("base_model_name_or_path") or ""
        c1, c2 = st.columns(2)
        base = base_model_input(
            c1, "Base model", named or "minilm", "aln_base",
            "minilm, smollm2, a local model folder, or a hub id already in the local cache (nothing is "
            "downloaded). It must be the model the adapter was trained on.",
        )  # fmt: skip
        tasks = [*cached.task_names(), *([] if state.public() else [OTHER_TASK])]
        task = c2.selectbox("Task", tasks, key="aln_task", help="Examples are drawn from its training split.")
        if task == OTHER_TASK:
            task = c2.text_input(
                "File with text and label (or answer) columns", key="aln_task_file", placeholder="/path/to/data.csv"
            ).strip()  # fmt: skip
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    samples = int(c1.number_input("examples", 1, 100_000, 256, step=32, key="aln_samples",
                                  help="Drawn from the task's training split with seed 0."))  # fmt: skip
    k = int(c2.number_input("k (reference directions)", 1, 1024, 8, key="aln_k",
                            help="Dimension of the data's and W0's top subspaces the factors are compared with."))  # fmt: skip
    labels = c3.toggle(
        "B against loss gradients", value=True, key="aln_labels",
        help="On: B is compared with the gradients of the loss at each module's output (needs the task's "
        "labels). Off: with the module's outputs on the sample.",
    )  # fmt: skip
    st.caption(f":material/schedule: {V.expected_time(base, samples)} Diagnostics take seconds.")
    clicked = st.button("Run alignment and diagnostics", type="primary", icon=":material/play_arrow:",
                        key="aln_go", disabled=not base or not task)  # fmt: skip

align_job = diag_job = None
with guard("Check the adapter and the base model."):
    diag_job = background.diagnostics_job(choice.path, choice.signature, base, start=clicked)
with guard("Diagnostics work without it; alignment applies the adapter to the base model through PEFT."):
    align_path = str(run_dir) if run_dir is not None else uploads.peft_folder(choice.path)
    align_job = background.alignment_job(
        align_path, choice.signature, base, task, samples, k, labels, start=clicked
    )
if align_job is None and diag_job is None:
    st.info("Press **Run alignment and diagnostics**. Results stay for these settings until the server restarts.",
            icon=":material/play_arrow:")  # fmt: skip
    st.stop()

V.watch([diag_job, align_job], "aln")
name = tables.short(Path(run_dir).name if run_dir is not None else choice.label)

st.subheader("Alignment with the data and the base weight")
if align_job is None:
    st.info("Not run for these settings yet: press the button above.")
elif not align_job.running:
    frame = V.job_result(align_job, "Check that the base model is the adapter's and that the task has text and "
                         "labels; the server log has the details.")  # fmt: skip
    if frame is not None:
        used = align_job.info.get("examples", samples)
        st.caption(f"Computed in {align_job.elapsed():.0f} s on {used} examples from the training split of "
                   f"{tables.short(task)}" + (" (all it has)" if used < samples else "") + ".")  # fmt: skip
        V.show_alignment(frame, name, "aln_res", notes=align_job.notes)

st.subheader("Diagnostics (base weights only, no data)")
if diag_job is None:
    st.info("Not run for this base model yet: press the button above.")
elif not diag_job.running:
    diag = V.job_result(diag_job, "Check that the base model is the one the adapter was trained on.")
    if diag is not None:
        V.show_diagnostics(diag, name, "aln_diag")
