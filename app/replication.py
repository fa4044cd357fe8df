"""The Overview's replication sections (issue 13), one at a time behind a selector: every claim's verdict in
every experiment (the default), or the d/r sweep, the head factorial, the mechanism test or the 2×2 similarity,
each offered when its group folders are in the store; and a plain list of the experiments the store does not
hold.

    replication.render(store, metric)      # the Overview calls it after its own chart

Numbers come from the library through app/cached.py (asymviz.results, rank_sweep, head_factorial, mechanism,
similarity_design); this module only picks columns, rounds and lays out.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import cached, state
from app.components import details, download_frame, figure, guard


@dataclass(frozen=True)
class Experiment:
    key: str  # widget keys and file names
    title: str  # the section's heading
    groups: tuple[str, ...]  # the group folders of the store it needs, all of them
    module: str  # the library module that analyses it
    what: str  # one line: the question it answers
    also: tuple[str, ...] = ()  # group folders shown with it when the store has them (not needed)


EXPERIMENTS = (
    Experiment("rank", "Experiment 2: B only's edge against d/r", ("minilm_rank",), "asymviz.rank_sweep",
               "does B only's edge over A only (and over A&B) grow as d/r grows, as the paper's theory says?"),
    Experiment("head", "Experiment 3: the head factorial", ("minilm_tasks", "minilm_head"),
               "asymviz.head_factorial",
               "does the trained head absorb what a frozen factor loses (pooler + classifier vs classifier only)?"),
    Experiment("mechanism", "Experiment 4: the mechanism test", ("minilm_mechanism",), "asymviz.mechanism",
               "does the paper's linear-regression prediction give the observed B-only vs A-only gap?",
               also=("vit_mechanism",)),
    Experiment("similarity", "Experiment 5: similarity, the 2×2 design", ("similarity",),
               "asymviz.similarity_design",
               "is A's similarity across tasks the shared init's, and is B the more shared factor?"),
)  # fmt: skip
VERDICT_MARKS = {
    "better": "▲ better",
    "worse": "▼ worse",
    "equivalent": "≈ equivalent",
    "inconclusive": "? inconclusive",
}


def present_and_missing(store: str | Path) -> tuple[list[Experiment], list[Experiment]]:
    """The experiments whose group folders are all in the store, and the others."""
    groups = set(state.store_groups(store))
    present = [e for e in EXPERIMENTS if all(g in groups for g in e.groups)]
    return present, [e for e in EXPERIMENTS if e not in present]


def available(exp: Experiment) -> bool:
    """Whether this copy of asymviz has the module that analyses `exp`."""
    return importlib.util.find_spec(exp.module) is not None


CLAIMS = "claims"  # the selector's first option: every claim in every experiment


def render(store: str | Path, metric: str | None) -> None:
    """A selector, then what it picks: every claim in every experiment (the default) or one experiment's
    section; then what the store does not hold. One view at a time: drawing all of them took ~1 s per rerun
    (four figures, eight tables) and the browser as long again to paint them."""
    groups = state.store_groups(store)
    if not groups:
        return  # a flat store (e.g. one's own runs): the Overview above is all there is
    st.header("The replication, experiment by experiment", divider="gray")
    present, missing = present_and_missing(store)
    by_key = {e.key: e for e in present}
    labels = {CLAIMS: "Every claim", **{e.key: e.title.split(":")[0] for e in present}}
    view = st.segmented_control(
        "Show", list(labels), default=CLAIMS, key="rep_view", required=True, format_func=labels.get,
        help="Every claim of the paper in every experiment of the store, or one experiment's figure and tables.",
    )  # fmt: skip
    if view not in by_key:  # the claims (also when a kept choice is no longer in the store)
        with guard("The claims could not be compared on this store's runs."):
            _claims(str(store), tuple(groups), metric)
    else:
        exp = by_key[view]
        st.subheader(exp.title)
        st.markdown(f"*{exp.what[0].upper()}{exp.what[1:]}*")
        if not available(exp):
            st.warning(
                f"The runs are in the store ({', '.join(exp.groups)}) but this copy of asymviz has no "
                f"`{exp.module}` to analyse them: update asymviz.",
                icon=":material/warning:",
            )
        else:
            with guard(f"The {', '.join(exp.groups)} runs could not be analysed."):
                SECTIONS[exp.key](str(store), exp, metric)
    if missing:
        st.info(
            "Not in this run store, so not shown: "
            + "; ".join(f"**{e.title}** (no {' or '.join(f'`{g}/`' for g in e.groups if g not in groups)} folder)"
                        for e in missing)
            + ". asymviz shows only what was measured: train them with the `asymviz sweep` commands in each "
            "experiment's README, or choose a store that has them in the sidebar.",
            icon=":material/info:",
        )  # fmt: skip


def _metric(store: str, groups: tuple[str, ...], metric: str | None) -> str | None:
    """`metric` when the groups' runs have values of it, else None (the library's default)."""
    runs = cached.group_runs(store, groups)
    return metric if metric in runs and runs[metric].notna().any() else None


def _ci(low, high, digits: int = 3) -> str:
    return "–" if low != low or high != high else f"{low:+.{digits}f} to {high:+.{digits}f}"


def _verdict_table(frame, keys: list[str], diff: str = "diff_mean", label: str = "difference"):
    """A comparison frame as people read it: its keys, the difference, the 95 % CI, the verdict."""
    from asymviz.figures import pair_label

    out = frame[keys].copy()
    if "mode" in frame and "baseline" in frame:
        out["comparison"] = [pair_label(m, b) for m, b in zip(frame["mode"], frame["baseline"], strict=True)]
    out[label] = frame[diff].round(4)
    out["95 % CI"] = [_ci(lo, hi) for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
    for c in ("n_pairs", "n_seeds"):
        if c in frame:
            out[c.replace("_", " ")] = frame[c]
    if "p_holm" in frame:
        out["Holm p"] = frame["p_holm"].map(lambda p: "–" if p != p else f"{p:.2g}")
    out["verdict"] = frame["verdict"].map(lambda v: VERDICT_MARKS.get(v, v))
    return out


# ------------------------------------------------------------------------------------------------------------
# the claims


def _claims(store: str, groups: tuple[str, ...], metric: str | None) -> None:
    from app.tables import short
    from asymviz.results import MARGIN

    claims, comparisons = cached.claims_by_group(store, groups, metric)
    if claims.empty:
        st.info("No experiment of this store has two modes to compare yet.", icon=":material/info:")
        return
    table = claims.assign(experiment=claims["group"], model=claims["model"].map(short))
    st.markdown(
        f"**Every claim of the paper in every experiment of this store** ({_constants(table)}), from the same "
        "code as `asymviz runs compare --group <experiment>` (asymviz.results: paired seeds, 95 % CI, Holm over "
        f"each experiment's comparisons, *equivalent* = the 90 % CI inside ±{MARGIN:g}). The control row (head "
        "only) is the floor each LoRA mode is compared with."
    )
    # a column whose value never changes is said in the sentence above instead
    keys = [k for k in ("experiment", "claim", "model", "rank", "metric", "n_tasks")
            if k in ("experiment", "claim", "n_tasks") or table[k].nunique() > 1]  # fmt: skip
    shown = _verdict_table(table, keys)
    shown["holds"] = table["holds"]
    first = [k for k in keys if k != "n_tasks"] + ["verdict", "holds"]  # what a reader looks for, left
    st.dataframe(
        shown[first + [c for c in shown.columns if c not in (*first, "comparison")]], hide_index=True
    )
    download_frame(claims, "claims_by_experiment", "rep_claims_csv", "claims (CSV)")
    download_frame(
        comparisons, "claims_by_experiment_paired", "rep_claims_paired_csv", "paired comparisons (CSV)"
    )


def _constants(table) -> str:
    """'model minilm, r = 8, test_accuracy': what every row of the claims table shares."""
    parts = []
    for col, fmt in (("model", "model {}"), ("rank", "r = {}"), ("metric", "{}")):
        if table[col].nunique() == 1:
            parts.append(fmt.format(table[col].iloc[0]))
    return ", ".join(parts) or "per model, rank and metric"


# ------------------------------------------------------------------------------------------------------------
# one section per experiment


def _rank(store: str, exp: Experiment, metric: str | None) -> None:
    from app.tables import metric_label

    metric = _metric(store, exp.groups, metric)
    table, trend = cached.rank_sweep(store, exp.groups[0], metric)
    label = metric_label(table["metric"].iloc[0]) if "metric" in table and len(table) else "test metric"
    figure(
        cached.figure("rank_sweep_figure", table, label), "rank_sweep", "rep_rank",
        "Each point is the mean over seeds of the paired difference between two modes at one rank (positive = "
        "B only better), the bar its 95 % CI; filled points are verdicts (better / worse), open ones are "
        "equivalent or inconclusive. The grey band is the equivalence margin; d/r = d_in / r on a log axis.",
    )  # fmt: skip
    lines = _trend_lines(trend)
    if lines:
        st.markdown("**Does the gap grow with d/r?** (a slope per seed, then over seeds)\n\n"
                    + "\n".join(f"- {line}" for line in lines))  # fmt: skip
    with details("Every comparison at every rank, with the control (head only)", "rep_rank_open") as opened:
        if opened:
            st.dataframe(_verdict_table(table, ["task", "rank", "d_over_r"]), hide_index=True)
            download_frame(table, "rank_sweep", "rep_rank_csv", "d/r sweep (CSV)")


def _trend_lines(trend) -> list[str]:
    """asymviz.rank_sweep.trend_lines: the slope of each gap against d/r, in words."""
    from asymviz import rank_sweep

    return rank_sweep.trend_lines(trend)


def _interaction_lines(interaction) -> list[str]:
    """asymviz.head_factorial.interaction_lines: each interaction in words."""
    from asymviz import head_factorial

    return head_factorial.interaction_lines(interaction)


def _mechanism_lines(table) -> list[str]:
    """asymviz.mechanism.mechanism_lines: observed against predicted, per model, task and module, in words."""
    from asymviz import mechanism

    return mechanism.mechanism_lines(table)


def _bullets(lines: list[str], lead: str) -> None:
    if lines:
        st.markdown(f"{lead}\n\n" + "\n".join(f"- {line}" for line in lines))


def _head(store: str, exp: Experiment, metric: str | None) -> None:
    from app.tables import metric_label
    from asymviz.results import MARGIN

    metric = _metric(store, exp.groups, metric)
    table, interaction = cached.head_factorial(store, exp.groups, metric)
    shown = table["metric"].iloc[0] if "metric" in table and len(table) else metric or "test_accuracy"
    figure(
        cached.figure("head_factorial_figure", table, metric_label(shown), margin=MARGIN), "head_factorial",
        "rep_head",
        "Per task, each comparison's paired difference with the full head (pooler + classifier, experiment 1's "
        "r = 8 runs) and with the classifier only (the pooler frozen): mean over seeds and 95 % CI; filled "
        "points are verdicts better / worse. A gap that is larger with the classifier-only head is one the full "
        "head absorbs.",
    )  # fmt: skip
    _bullets(_interaction_lines(interaction),
             "**The interaction** (gap with the classifier-only head − gap with the full head):")  # fmt: skip
    with details(
        "Every comparison per head, with the control (head only), and the interactions", "rep_head_open"
    ) as opened:
        if opened:
            st.dataframe(_verdict_table(table, ["task", "head"]), hide_index=True)
            st.dataframe(
                _verdict_table(interaction, ["task", "contrast", "diff_full_head", "diff_classifier_head"],
                               "interaction", "interaction"),
                hide_index=True,
            )  # fmt: skip
            download_frame(table, "head_factorial", "rep_head_csv", "head factorial (CSV)")
            download_frame(interaction, "head_interaction", "rep_head_int_csv", "interaction (CSV)")


def _mechanism(store: str, exp: Experiment, metric: str | None) -> None:
    import pandas as pd

    from app.tables import short

    group = exp.groups[0]
    # every mechanism table the store ships (MiniLM's, the ViT's), one below the other: the figure tells the
    # model · task apart
    shipped = {g: cached.mechanism_file(store, g) for g in (*exp.groups, *exp.also)}
    shipped = {g: _with_group(t, g) for g, t in shipped.items() if t is not None}
    table = pd.concat(shipped.values(), ignore_index=True) if shipped else None
    source = ", ".join(f"`{g}/{cached.MECHANISM_FILE}`" for g in shipped) + ", written by `asymviz mechanism`"
    if group not in shipped:
        st.info(
            f"This experiment ships no `{cached.MECHANISM_FILE}` (the table `asymviz mechanism {group} --format csv "
            f"-o {group}/{cached.MECHANISM_FILE}` writes). It can be measured here: the base model runs the "
            "training split on the CPU to measure the module's input covariance (about a minute for MiniLM).",
            icon=":material/info:",
        )  # fmt: skip
        if st.button("Measure the mechanism test now", key="rep_mech_go", icon=":material/play_arrow:"):
            st.session_state["rep_mech_asked"] = True  # stays measured when another widget reruns the page
        if st.session_state.get("rep_mech_asked"):
            with st.spinner("Measuring the module's input covariance and the predictions …"):
                measured = cached.mechanism(store, group)
            table = pd.concat([measured, *shipped.values()], ignore_index=True)
            source = "measured now by asymviz.mechanism.mechanism_table" + (f"; {source}" if shipped else "")
        elif not shipped:
            return
    # a local model is a path (the ViT's): people read its last part
    table = table.assign(model=table["model"].map(short), task=table["task"].map(short))
    figure(
        cached.figure("mechanism_figure", table),
        "mechanism", "rep_mech",
        "One point per model, task and frozen-factor mode: the share of A&B's gain over head only that the mode "
        "keeps, observed over paired seeds (95 % Fieller CI; none where A&B's gain is not clearly above 0), "
        "against the paper's linear-regression prediction for the module's measured input covariance; on the "
        f"dashed line the prediction is exact. From {source}.",
    )  # fmt: skip
    _bullets(_mechanism_lines(table), "**In words:**")
    with details("The numbers", "rep_mech_open") as opened:
        if opened:
            st.dataframe(table, hide_index=True)
            download_frame(table, "mechanism", "rep_mech_csv", "mechanism test (CSV)")


def _with_group(table, group: str):
    """The table with its group folder in `group` where the file leaves it empty (a table written for one
    folder)."""
    shown = table["group"] if "group" in table else None
    return table.assign(group=group if shown is None else shown.where(shown != "", group))


def _similarity(store: str, exp: Experiment, metric: str | None) -> None:

    cells, contrasts = cached.similarity_2x2(store, exp.groups[0])
    figure(
        cached.figure("similarity_2x2_figure", cells), "similarity_2x2", "rep_sim",
        "Subspace similarity between two trained adapters' A (left) and B (right), by whether they share their "
        "init draw (init_seed) and their task: mean over pairs of runs (each the mean over modules), 95 % CI by "
        "a bootstrap over runs; the dashed grey ticks are what random subspaces of the same shapes give. If A's "
        "cross-task similarity comes from the shared init, it falls to the baseline with another init.",
    )  # fmt: skip
    st.markdown("**What the 2×2 separates** (95 % CI by the same bootstrap over runs; *higher* / *lower*: the "
                "interval is above / below 0):")  # fmt: skip
    shown = contrasts.assign(estimate=contrasts["estimate"].round(4))
    shown["95 % CI"] = [_ci(lo, hi) for lo, hi in zip(contrasts["ci_low"], contrasts["ci_high"], strict=True)]
    st.dataframe(shown[["which", "contrast", "estimate", "95 % CI", "verdict"]], hide_index=True)
    with details("The four cells of A and B", "rep_sim_open") as opened:
        if opened:
            st.dataframe(cells, hide_index=True)
            download_frame(cells, "similarity_2x2", "rep_sim_csv", "2×2 similarity (CSV)")
            download_frame(contrasts, "similarity_contrasts", "rep_sim_con_csv", "contrasts (CSV)")


SECTIONS = {"rank": _rank, "head": _head, "mechanism": _mechanism, "similarity": _similarity}
