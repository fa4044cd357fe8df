"""Compare runs: random-A vs trained-A on the runs of the store — curves, a table, drift and similarity."""

import streamlit as st

from app import cached, state, tables, uploads
from app.components import caption, download_frame, figure, guard
from app.state import store_path
from asymviz import figures as F

VIEWS = [
    "Learning curves",
    "Summary table",
    "Drift from init",
    "Similarity across seeds & tasks",
    "Alignment with data",
]

st.title("Compare runs")
st.markdown(
    "The same model, data, budget and seed trained three ways. Pick what to compare; every number below is "
    "read from the runs in the store."
)

store = store_path()
with guard(f"Check the run store folder in the sidebar ({state.where(store)}).", stop=True):
    runs = state.finished_runs(str(store))
if runs.empty:
    st.info(
        f"No finished runs in {state.where(store)} yet. Start some on the **Live fine-tune** page"
        + ("." if state.public() else f" or with `asymviz sweep ... --store {store}`."),
        icon=":material/hourglass_empty:",
    )
    st.page_link("app/pages/live.py", label="Start a live fine-tune", icon=":material/play_circle:")
    st.stop()


def _pick(where, label, values, key, fmt=str):
    values = sorted(v for v in values if v is not None and v == v)
    chosen = where.pills(label, values, selection_mode="multi", default=values, key=key, format_func=fmt)
    return chosen or []


c1, c2 = st.columns([1, 2])
models = sorted(runs["model"].dropna().unique())
model = c1.selectbox("Model", models, key="cmp_model", format_func=tables.short)
runs = runs[runs["model"] == model]
tasks = c2.multiselect("Tasks", sorted(runs["task"].unique()), default=sorted(runs["task"].unique()),
                       key="cmp_tasks", format_func=tables.short)  # fmt: skip
c3, c4, c5 = st.columns([3, 1, 2])
present = [m for m in F.ALL_MODES if m in set(runs["mode"])]
modes = c3.pills(
    "Modes", present, selection_mode="multi", default=present, format_func=F.mode_label, key="cmp_modes"
)
modes = modes or []
ranks = _pick(c4, "Ranks", runs["rank"].unique(), "cmp_ranks")
seeds = _pick(c5, "Seeds", runs["seed"].unique(), "cmp_seeds")
sel = runs[
    runs["task"].isin(tasks) & runs["mode"].isin(modes) & runs["rank"].isin(ranks) & runs["seed"].isin(seeds)
]
if sel.empty:
    st.warning("No run matches this selection: widen it above.")
    st.stop()
st.caption(f"{len(sel)} run(s) selected.")

view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="cmp_view", required=True)

if view == "Learning curves":
    with guard("The runs' metrics.csv files could not be read."):
        curves = cached.run_metrics(tuple(sel["path"]))
        runs_of = sel[["run_id", "mode", "task", "seed", "rank"]]  # one row per run: label runs, not rows
        runs_of = runs_of.assign(label=runs_of["task"].map(tables.short) + " · " + runs_of["mode"].map(F.mode_label)
                                 + " · r=" + runs_of["rank"].astype(str) + " · seed " + runs_of["seed"].astype(str))  # fmt: skip
        # the (split, metric) pairs from the distinct rows: iterating every row took 0.1 s on 175 runs
        choices = sorted(curves[["split", "metric"]].drop_duplicates().itertuples(index=False, name=None))
        default = next((i for i, c in enumerate(choices) if c == ("train", "loss")), 0)
        split, metric = st.selectbox(
            "Curve", choices, index=default, key="cmp_curve", format_func=lambda c: f"{c[0]} {c[1]}"
        )
        part = curves[(curves["split"] == split) & (curves["metric"] == metric)].merge(runs_of, on="run_id")
        y_label = tables.curve_label(split, metric)
        have = set(part["task"].unique())
        drawn = [t for t in tasks if t in have]
        if len(drawn) > 1:  # one task at a time: all at once were 5 figures of 35 runs (0.7 MB JSON) shipped
            shown = st.segmented_control(
                "Task", drawn, default=drawn[0], key="cmp_curve_task", required=True, format_func=tables.short
            )
            drawn = [shown if shown in drawn else drawn[0]]
        for task in drawn:
            t = part[part["task"] == task]
            figure(
                cached.learning_curve_figure(
                    t, y_label, f"{tables.short(task)}: {y_label}",
                    (0, 1.02) if metric in ("accuracy", "macro_f1") else None,
                ),
                f"curves_{task}_{split}_{metric}", f"cmp_curve_{task}",
                "One line per run (seed, rank), coloured by mode; hover for the run. The same data budget and "
                "schedule in every mode.",
            )  # fmt: skip
        download_frame(part, f"curves_{split}_{metric}", "cmp_curves_csv", "curves (CSV)")

elif view == "Summary table":
    metrics = [m for m in tables.TEST_METRICS if m in sel and sel[m].notna().any()]
    c1, c2, c3 = st.columns(3)
    metric = c1.selectbox("Test metric", metrics, format_func=tables.metric_label, key="cmp_metric")
    q = c2.number_input("bound: bits per parameter q", 1, 64, 32, key="cmp_q")
    sigma = c3.number_input("bound: sub-Gaussian σ of the loss", 0.001, 100.0, 0.5, step=0.1, key="cmp_sigma",
                            help="A loss bounded in [0, 1] is ½-sub-Gaussian; n is each run's training-set size.")  # fmt: skip
    with guard("The runs lack some of the numbers this table needs."):
        table = tables.comparison_table(sel, metric, float(q), float(sigma))
        st.dataframe(table, hide_index=True)
        caption(
            f"{tables.metric_label(metric)} on the held-out test split, mean ± standard error over seeds; LoRA "
            "params: the factors each mode trains (the head is trained in every mode); wall time and peak memory "
            "(MiB) per run; bound: the paper's Lemma 4.5 for the LoRA params and the n training examples."
        )
        download_frame(table, f"comparison_{metric}", "cmp_table_csv", "table (CSV)")
        summary = tables.summary_by_mode(sel, metric, by=("task", "mode"))
        figure(
            F.mode_bar_figure(summary, tables.metric_label(metric)), f"comparison_{metric}", "cmp_bar",
            "Mean ± standard error over the selected seeds (ranks pooled when several are selected).",
        )  # fmt: skip

elif view == "Drift from init":
    with_init = sel[sel["has_init"]]
    if with_init.empty:
        st.info("None of the selected runs stored its initial A and B (init/ folder).")
    else:
        value = st.segmented_control(
            "Measure", list(F.DRIFT_LABELS), default="similarity_to_init", key="cmp_drift_value", required=True,
            format_func=F.DRIFT_LABELS.get,
        )  # fmt: skip
        with guard("The runs' adapter/ and init/ folders must hold the same modules."):
            with st.spinner("Comparing each run with its init…", show_time=True):
                drift = cached.runs_drift(tuple(with_init["path"]))
            drift = drift.merge(with_init[["run_id", "mode", "task", "seed"]], on="run_id")
            figure(
                F.drift_figure(drift, value), f"drift_{value}", "cmp_drift",
                "Per layer, the mean over modules and runs. The paper's observation: a trained A stays close to "
                "its random init (similarity near 1), B moves far. A frozen factor is identical to its init (B "
                "starts at 0 in A&B and B only, so its relative change is undefined there).",
            )  # fmt: skip
            frozen = drift.groupby(["mode", "which"])["unchanged"].all().reset_index()
            frozen = frozen[frozen["unchanged"]]
            if not frozen.empty:
                st.caption(
                    "Bit-identical to init (frozen): "
                    + ", ".join(
                        f"{w} in {F.mode_label(m)}"
                        for m, w in zip(frozen["mode"], frozen["which"], strict=True)
                    )
                )
            download_frame(drift, f"drift_{model}", "cmp_drift_csv", "drift table (CSV)")

elif view == "Alignment with data":
    from app import alignment_view

    alignment_view.compare_panel(sel)

else:  # similarity
    across = st.segmented_control(
        "Across", ["seeds", "tasks"], default="seeds", key="cmp_across", required=True
    )
    c1, c2, c3 = st.columns(3)
    mode = c1.selectbox("Mode", modes, format_func=F.mode_label, key="cmp_sim_mode")
    rank = c2.selectbox("Rank", ranks, key="cmp_sim_rank")
    base = sel[(sel["mode"] == mode) & (sel["rank"] == rank) & sel["has_adapter"]]
    base = base.assign(init_from=base["init_seed"].fillna(base["seed"]).astype(int))  # the seed of each init
    if across == "seeds":
        counts = base.groupby("task").size()
        task_options = [t for t in tasks if t in counts.index] or tasks
        best = max(range(len(task_options)), key=lambda i: counts.get(task_options[i], 0))
        fixed = c3.selectbox("Task", task_options, index=best, key="cmp_sim_task", format_func=tables.short)
        group = base[base["task"] == fixed]
        shared = sorted(set(group.loc[group["init_from"] != group["seed"], "init_from"]))
        if shared:  # runs that started from another seed's init: compare like with like
            options = ["each its own init", *[f"one shared init (seed {k})" for k in shared]]
            kind = st.radio("Inits", options, key="cmp_sim_inits", horizontal=True,
                            help="Runs of this task started from their own init, or from one shared init "
                            "(the paper's Figure 1 shows both).")  # fmt: skip
            if kind == options[0]:
                group = group[group["init_from"] == group["seed"]]
            else:
                group = group[group["init_from"] == shared[options.index(kind) - 1]]
        names = [f"seed {s}" for s in group["seed"]]
    else:
        fixed = c3.selectbox("Seed", seeds, key="cmp_sim_seed")
        group = base[
            (base["seed"] == fixed) & (base["init_from"] == base["seed"])
        ]  # the tasks share seed's init
        names = [tables.short(t) for t in group["task"]]
    if len(group) < 2:
        st.info(
            f"Needs at least two runs with adapters for this choice (found {len(group)}): widen the selection."
        )
    else:
        with guard("The adapters must come from the same base model (same module names and shapes)."):
            with st.spinner("Comparing subspaces…", show_time=True):
                paths = tuple(f"{p}/adapter" for p in group["path"])
                pairs, _, shared, clusters = cached.collection(paths, uploads.signatures(paths), tuple(names))
            left, right = st.columns(2)
            for col, which in ((left, "A"), (right, "B")):
                with col:
                    figure(
                        F.similarity_heatmaps(pairs, which, order=names,
                                              title=f"Learned {which} across {across}"),  # fmt: skip
                        f"similarity_{which}_{across}", f"cmp_sim_{which}",
                        f"Subspace similarity of the learned {which}'s (mean over modules; 1 = same subspace) next "
                        "to what random subspaces of the same sizes give.",
                    )  # fmt: skip
            download_frame(pairs, f"similarity_{across}", "cmp_sim_csv", "similarity table (CSV)")
            left, right = st.columns([3, 2])
            with left:
                figure(
                    F.shared_directions_figure(tables.shared_by_k(shared[shared["which"].isin(["A", "B"])]),
                                               len(names)),  # fmt: skip
                    f"shared_directions_{across}", "cmp_shared",
                    "The share of the adapters' subspaces that k common directions hold (asymviz.collection): 1 "
                    "at k = r when all share one subspace; the dashed lines are N random subspaces. A far above "
                    "its line means a shared init; B far above, a shared task.",
                )  # fmt: skip
            with right:
                st.markdown("**Groups** (average-linkage clusters of the mean similarity)")
                st.dataframe(tables.clusters_table(clusters), hide_index=True)
                caption(
                    "Adapters join a group when their mean similarity is well above the random baseline. Zhu et "
                    "al.: A stays near its init, so A groups by seed; B carries the task, so B groups by task."
                )
