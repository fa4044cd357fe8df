"""Overview: the paper's claim and the one figure that tests it on the runs in the store."""

import streamlit as st

from app import cached, replication, state, tables
from app.components import caption, details, download_frame, figure, guard
from app.state import store_path
from asymviz import figures as F
from asymviz.modes import CONTROL_MODES

st.title("asymviz: are LoRA's A and B equal partners?")
st.markdown(
    "LoRA adds ΔW = (α/r)·**B**·**A** to a frozen weight. Zhu et al. (ICML 2024) argue the two factors play "
    "different roles: **A** extracts features and barely moves from its random init, so a *random, frozen* A "
    "does about as well as a trained one; **B** maps those features to the task, so training **B only** keeps "
    "the accuracy with half the trainable parameters, while training A only does not. Below: what our own "
    "runs measured, mean ± standard error over seeds, same model, data, budget and seed for every mode."
)


def _chose_metric() -> None:
    """The metric the visitor picked (not a default): kept across experiments that have it."""
    st.session_state["ov_metric_chosen"] = st.session_state["ov_metric"]


def _metric_for_experiment(metrics: list[str]) -> None:
    """Set the metric widget's value when the experiment changes: the metric the visitor picked where this
    experiment has it, else the experiment's default (asymviz.results.DEFAULT_METRICS: the first with values)."""
    from asymviz.results import DEFAULT_METRICS

    experiment = (str(store), state.group())
    if (
        st.session_state.get("ov_metric_experiment") == experiment
        and st.session_state.get("ov_metric") in metrics
    ):
        return
    st.session_state["ov_metric_experiment"] = experiment
    chosen = st.session_state.get("ov_metric_chosen")
    default = next((m for m in DEFAULT_METRICS if m in metrics), metrics[0] if metrics else None)
    st.session_state["ov_metric"] = chosen if chosen in metrics else default


store = store_path()
with guard(f"Check the run store folder in the sidebar ({state.where(store)}).", stop=True):
    runs = state.finished_runs(str(store))
    if runs.empty:
        st.info(
            f"The run store {state.where(store)} has no finished runs yet, so there is nothing to show (asymviz "
            "never shows numbers it did not measure). Start the three modes on the **Live fine-tune** page"
            + ("." if state.public() else f", or from a terminal: `asymviz demo --store {store}`."),
            icon=":material/hourglass_empty:",
        )
        st.page_link("app/pages/live.py", label="Start a live fine-tune", icon=":material/play_circle:")
        st.stop()

    metrics = [m for m in tables.TEST_METRICS if m in runs and runs[m].notna().any()]
    c1, c2 = st.columns(2)
    models = sorted(runs["model"].dropna().unique())
    model = c1.selectbox(
        "Model", models, key="ov_model", format_func=tables.short,
        help="Runs of different base models are never pooled.",
    )  # fmt: skip
    _metric_for_experiment(metrics)
    metric = c2.selectbox(
        "Test metric", metrics, format_func=tables.metric_label, key="ov_metric", on_change=_chose_metric,
        help="Each experiment opens on its default metric (test accuracy, else test loss); a metric you pick "
        "stays when you switch to an experiment that has it.",
    )  # fmt: skip
    data = runs[runs["model"] == model]
    control = data["mode"].isin(CONTROL_MODES)  # no adapter, so no rank: the floor at every rank
    ranks = sorted(int(r) for r in data.loc[~control, "rank"].dropna().unique())
    if len(ranks) > 1:
        rank = st.segmented_control(
            "LoRA rank r", ranks, default=ranks[0], key="ov_rank", required=True, format_func=lambda r: f"r = {r}",
            help="Runs of different ranks are never pooled; the control (head only) has no adapter and shows at "
            "every rank.",
        )  # fmt: skip
        data = data[(data["rank"] == rank) | control]
    data = data.assign(task=data["task"].map(tables.short))
    summary = tables.summary_by_mode(data, metric, by=("task", "mode"))
    lower_better = metric in tables.LOWER_IS_BETTER
    probe = tables.probe_rows(cached.linear_probe(str(store), state.group()), model, metric, rank_runs=data)
    fig = cached.figure(
        "mode_bar_figure", summary, tables.metric_label(metric), probe=probe,
        title=f"{metric.removeprefix('test_').replace('_', ' ').capitalize()} on the test split by mode — "
        f"{tables.short(model)} (mean ± s.e. over seeds)",
        # near the data, not from 0: the claims are about differences of ~0.01 (MARGIN)
        y_range=F.near_data_range(summary, probe) if metric in ("test_accuracy", "test_macro_f1") else None,
    )  # fmt: skip
    figure(
        fig, f"overview_{model}_{metric}", "ov_fig",
        f"Each bar is the mean over seeds of one mode's {tables.metric_label(metric)} on a task's held-out test "
        f"split ({'lower' if lower_better else 'higher'} is better); whiskers are ± one standard error; hover for "
        "the number of seeds and trainable parameters. Same colour = same mode on every page.",
    )  # fmt: skip
    from asymviz import results as R

    model_runs = runs[runs["model"] == model]
    comparisons, claims = cached.claims(model_runs.assign(task=model_runs["task"].map(tables.short)), metric)
    if len(ranks) > 1 and len(claims):
        claims = claims[claims["rank"] == rank]
    lines = R.claim_lines(claims)
    if lines:
        st.markdown(
            "**What these runs say about the paper's claims.** Modes are compared over paired seeds (a seed gives "
            "every mode the same batch order and head init); the interval is a 95 % Student t interval per task "
            "and, for the mean over tasks, a bootstrap over tasks and seeds beside a t-test over the task means; "
            "p-values are Holm-adjusted within the per-task comparisons and, apart, within the means over tasks; "
            f"*equivalent* means the 90 % interval lies within ±{R.MARGIN:g} (two one-sided tests), *inconclusive* "
            "that the runs show neither a difference nor equivalence.\n\n"
            + "\n".join(f"- {line}" for line in lines)
        )
    table = tables.mode_table(summary)
    st.dataframe(table, hide_index=True)
    if probe is not None and len(probe):
        st.markdown(
            "**Linear probe** (logistic regression on the frozen model's features, C chosen on validation; "
            "`asymviz probe`): the dotted line in the chart. "
            + " · ".join(f"{t}: {v:.3f}" for t, v in zip(probe["task"], probe["value"], strict=True))
        )
    caption(
        "LoRA params count the factors a mode trains (A&B: r·(d_in+d_out) per module, B only: r·d_out, A only: "
        "r·d_in); the task head (e.g. a classifier), where there is one, is trained in full in every mode."
    )
    download_frame(summary, f"overview_{model}_{metric}", "ov_csv", "summary (CSV)")
    st.caption(f"{len(data)} finished run(s) of `{tables.short(model)}` in {state.where(store)}.")
    if len(claims):
        with details(
            "Paired comparisons behind these verdicts (asymviz runs compare)", "ov_paired_open"
        ) as opened:
            if opened:
                paired = comparisons[comparisons["rank"] == rank] if len(ranks) > 1 else comparisons
                st.dataframe(
                    paired[[*R.COMPARE_COLUMNS, "p", "boot_low", "boot_high", "reason"]], hide_index=True
                )
                download_frame(
                    paired, f"overview_{model}_{metric}_paired", "ov_paired_csv", "paired comparisons (CSV)"
                )

replication.render(store, metric)
