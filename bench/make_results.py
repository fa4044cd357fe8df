"""Write cached_runs/RESULTS.md from the shipped run stores: every number in it is computed here from run.json,
metrics.csv, sweep.json, lr_selection.csv and the stored adapters; nothing is typed in by hand.

    python bench/make_results.py                 # reads cached_runs/, writes cached_runs/RESULTS.md
    python bench/make_results.py --root DIR --out FILE

Every table and verdict comes from asymviz.results (the code behind the app's Overview and `asymviz runs
compare`): mean ± s.e. over seeds, modes compared over paired seeds with a 95 % t interval (a bootstrap over
tasks and seeds for the mean over tasks), Holm-adjusted p-values within each experiment, and verdicts better /
worse / equivalent (TOST, ±1 point) / inconclusive. With 3 seeds most cells are honestly inconclusive.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asymviz import results as R  # noqa: E402
from asymviz.modes import LORA_MODES as MODES  # noqa: E402
from asymviz.runs import GENERATIONS_FILE, LR_FILE, SWEEP_FILE, RunStore  # noqa: E402

LABEL = {"ab": "A&B", "b_only": "B only (random A)", "a_only": "A only (random B)"}
PAIRS = (("b_only", "ab"), ("a_only", "ab"), ("b_only", "a_only"))  # (mode, baseline) compared in every exp
SHORT = {"ab": "A&B", "b_only": "B only", "a_only": "A only"}


def counted(root: Path, a_init: str | None = "auto") -> pd.DataFrame:
    """The runs every table counts (asymviz.results.counted_runs) of one store."""
    return R.counted_runs(RunStore(root).list(), a_init=a_init)


def mean_se_of(frame: pd.DataFrame, metric: str, by: list[str]) -> dict:
    """{group key: (mean, se, n)} of `metric` over seeds (asymviz.results.summary_table)."""
    s = R.summary_table(frame, metric, by=by)
    return {k[0] if len(by) == 1 else k: (m, e, int(n)) for k, m, e, n in
            zip(s[by].itertuples(index=False, name=None), s["mean"], s["se"], s["n"], strict=True)}  # fmt: skip


def fmt(m: float, s: float, digits: int = 3) -> str:
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s == s else f"{m:.{digits}f}"


def ci(row, digits: int = 3) -> str:
    """'-0.004 [-0.012, +0.003]' (no interval with one seed pair)."""
    if row["ci_low"] != row["ci_low"]:
        return f"{row['diff_mean']:+.{digits}f} [no interval]"
    return f"{row['diff_mean']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"


def pair_verdicts(comp: pd.DataFrame, pairs=PAIRS) -> str:
    """'B only vs A&B: inconclusive (-0.035 [-0.091, +0.021])' for each pair, from the one task's rows."""
    out = []
    for mode, base in pairs:
        row = comp[(comp["mode"] == mode) & (comp["baseline"] == base)]
        if len(row):
            out.append(f"{SHORT[mode]} vs {SHORT[base]}: {row.iloc[0]['verdict']} ({ci(row.iloc[0])})")
    return ", ".join(out)


def comparison_table(comp: pd.DataFrame) -> str:
    """The paired comparisons as a Markdown table (task "all": the mean over tasks, bootstrap interval)."""
    rows = [{"comparison": f"{SHORT[r['mode']]} − {SHORT[r['baseline']]}", "task": r["task"], "r": r["rank"],
             "pairs": r["n_pairs"], "diff [95 % CI]": ci(r), "p (Holm)": f"{r['p_holm']:.2g}" if r["p_holm"] == r["p_holm"] else "–",
             "verdict": r["verdict"]} for _, r in comp.iterrows()]  # fmt: skip
    return table(
        pd.DataFrame(rows), ["comparison", "r", "task", "pairs", "diff [95 % CI]", "p (Holm)", "verdict"]
    )


def table(frame: pd.DataFrame, cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n| " + " | ".join("---" for _ in cols) + " |\n"
    return head + "".join("| " + " | ".join(str(r[c]) for c in cols) + " |\n" for _, r in frame.iterrows())


table_md = table  # the Markdown table writer, under a name no local variable shadows


def sweeps(root: Path) -> pd.DataFrame:
    data = json.loads((root / SWEEP_FILE).read_text())["sweeps"]
    return pd.DataFrame(data)


# ----------------------------------------------------------------------------------------------------------


def exp1(root: Path) -> tuple[str, dict]:
    f = counted(root)  # B only: the orthogonal frozen A (the other inits are exp 5)
    by = ["task", "rank", "mode"]
    acc, f1 = mean_se_of(f, "test_accuracy", by), mean_se_of(f, "test_macro_f1", by)
    rows = []
    for (task, rank, m), part in f.groupby(by, sort=True):
        rows.append((task, rank, MODES.index(m), {
            "task": task, "r": rank, "mode": LABEL[m],
            "test accuracy": fmt(*acc[task, rank, m][:2]), "macro-F1": fmt(*f1[task, rank, m][:2]),
            "seeds": acc[task, rank, m][2],
            "LoRA params": f"{int(part['trainable_lora'].median()):,}",
            "head params": f"{int(part['trainable_head'].median()):,}",
            "lr": f"{part['lr'].iloc[0]:g}",
        }))  # fmt: skip
    rows = [r for *_, r in sorted(rows, key=lambda x: x[:3])]
    comp = R.paired_comparisons(f, PAIRS, "test_accuracy")
    claims = R.claim_table(comp)
    means = f.groupby(["mode", "rank"])["test_accuracy"].mean().unstack()
    per_task = comp[comp["task"] != "all"]
    summary = {
        "comp": comp,
        "claims": claims,
        "means": means,
        "n_runs": len(f),
        "seeds": sorted(set(acc[k][2] for k in acc)),
    }
    a_ab = per_task[(per_task["mode"] == "a_only") & (per_task["baseline"] == "ab")]["verdict"].value_counts()
    summary["a_vs_ab"] = ", ".join(f"{int(a_ab[v])} {v}" for v in R.VERDICTS if v in a_ab)
    lr = pd.read_csv(root / LR_FILE)
    chosen = lr[lr["chosen"]].copy()
    chosen["mode"] = [
        LABEL[m] + (f" ({a})" if m == "b_only" else "")
        for m, a in zip(chosen["mode"], chosen["a_init"], strict=True)
    ]
    chosen = chosen.assign(lr=chosen["lr"].map("{:g}".format), value=chosen["value"].map("{:.3f}".format))
    grid = sorted(lr["lr"].unique())
    edges = chosen[chosen["lr"].astype(float).isin([grid[0], grid[-1]])]
    sw = sweeps(root)
    e1 = sw[sw["name"] == "exp1"]
    text = (
        table(pd.DataFrame(rows), ["task", "r", "mode", "test accuracy", "macro-F1", "seeds", "LoRA params",
                                   "head params", "lr"])  # fmt: skip
        + "\nMean test accuracy over the five tasks (3 seeds each):\n\n"
        + table(
            pd.DataFrame(
                [{"mode": LABEL[m], **{f"r = {r}": f"{means.loc[m, r]:.3f}" for r in means.columns}} for m in MODES]
            ),
            ["mode"] + [f"r = {r}" for r in means.columns],
        )
        + "\nMode against mode over paired seeds (diff: the first mode's test accuracy minus the second's, mean "
        "over seed pairs; 95 % CI: Student t per task, a bootstrap over tasks and seeds within for task *all*, "
        f"{R.N_BOOT:,} resamples; p: paired t-test, Holm-adjusted over the {comp['p'].notna().sum()} rows; "
        f"equivalent: the 90 % CI inside ±{R.MARGIN:g}):\n\n"
        + comparison_table(comp)
        + f"\nLearning rates chosen on validation (grid {', '.join(f'{x:g}' for x in grid)}; seed 0, r = 8; "
        "validation accuracy of the chosen lr):\n\n"
        + table(chosen, ["task", "mode", "lr", "value"])
        + (
            f"\n{len(edges)} of {len(chosen)} choices sit at an end of the grid "
            f"({'; '.join(f'{t} {m} at {v}' for t, m, v in zip(edges['task'], edges['mode'], edges['lr'], strict=True))})."
            if len(edges) else "\nEvery choice is inside the grid."
        )
        + "\n"
    )  # fmt: skip
    summary["exp1_sweeps"] = e1
    return text, summary


def exp5(root: Path) -> str:
    f = counted(root, a_init=None)
    f = f[(f["mode"] == "b_only") & (f["rank"] == 8) & f["task"].isin(["fine_foods", "word_polarity"])]
    acc = mean_se_of(f, "test_accuracy", ["task", "a_init"])
    rows = []
    for (task, a_init), g in f.groupby(["task", "a_init"]):
        m, s, n = acc[task, a_init]
        rows.append({"task": task, "frozen A": a_init, "test accuracy": fmt(m, s), "seeds": n,
                     "lr": f"{g['lr'].iloc[0]:g}"})  # fmt: skip
    return table(pd.DataFrame(rows), ["task", "frozen A", "test accuracy", "seeds", "lr"])


def exp2(root: Path) -> tuple[str, dict]:
    from asymviz.similarity import pairwise_similarity

    store = RunStore(root)
    f = counted(root, a_init=None)
    ff = f[f["task"] == "fine_foods"]
    sets = {
        "5 seeds, each its own init (fine_foods)": ff[ff["init_seed"] == ff["seed"]],
        "5 seeds, one shared init (fine_foods)": ff[ff["init_seed"] == 0],
        "4 tasks, one shared init (seed 0)": f[f["seed"] == 0],
    }
    rows, by_layer, out = [], [], {}
    for name, runs in sets.items():
        adapters = [store.get(r).load_adapter() for r in runs["run_id"]]
        labels = [
            f"{t}/s{s}/i{i}" for t, s, i in zip(runs["task"], runs["seed"], runs["init_seed"], strict=True)
        ]
        d = pairwise_similarity(adapters, labels, which=("A", "B"))
        agg = d.groupby("which")[["similarity", "random_baseline"]].mean()
        out[name] = agg
        rows.append({
            "runs compared": f"{name}: {len(runs)} runs, {len(runs) * (len(runs) - 1) // 2} pairs",
            "A (row space)": f"{agg.loc['A', 'similarity']:.3f}", "B (column space)": f"{agg.loc['B', 'similarity']:.3f}",
            "random baseline": f"{agg.loc['A', 'random_baseline']:.3f}",
        })  # fmt: skip
        lay = d.groupby(["which", "layer"])["similarity"].mean().unstack(0)
        for layer, r in lay.iterrows():
            by_layer.append(
                {"runs compared": name, "layer": layer, "A": f"{r['A']:.2f}", "B": f"{r['B']:.2f}"}
            )
    text = (
        table(pd.DataFrame(rows), ["runs compared", "A (row space)", "B (column space)", "random baseline"])
        + "\nPer layer (mean over query and value and over pairs):\n\n"
        + table(pd.DataFrame(by_layer), ["runs compared", "layer", "A", "B"])
    )
    return text, out


def exp3(root: Path) -> tuple[str, dict]:
    f = counted(root)
    losses, ppls = mean_se_of(f, "test_loss", ["mode"]), mean_se_of(f, "test_perplexity", ["mode"])
    rows, stats = [], {}
    for m in MODES:
        g = f[f["mode"] == m]
        if g.empty:
            continue
        loss, ppl = losses[m], ppls[m]
        stats[m] = loss
        rows.append({"mode": LABEL[m], "test answer loss (nats/token)": fmt(*loss[:2]),
                     "test perplexity": fmt(*ppl[:2], digits=1), "seeds": loss[2],
                     "LoRA params": f"{int(g['trainable_lora'].median()):,}", "lr": f"{g['lr'].iloc[0]:g}",
                     "wall (s, CPU)": f"{g['wall_s'].mean():.0f}"})  # fmt: skip
    text = table(pd.DataFrame(rows), list(rows[0]) if rows else ["mode"])
    if (root / LR_FILE).exists():
        lr = pd.read_csv(root / LR_FILE)
        lr = lr.assign(mode=lr["mode"].map(LABEL), lr=lr["lr"].map("{:g}".format),
                       value=lr["value"].map("{:.3f}".format), chosen=lr["chosen"].map({True: "yes", False: ""}))  # fmt: skip
        text += "\nLearning rate chosen per mode on the validation answer loss (seed 0):\n\n" + table(
            lr, ["mode", "lr", "value", "chosen"]
        )
    gens = {}
    for m in MODES:
        g = f[(f["mode"] == m) & (f["seed"] == 0)]
        if len(g):
            path = Path(g["path"].iloc[0]) / GENERATIONS_FILE
            if path.exists():
                gens[m] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if gens:
        text += (
            "\nGreedy answers to the first test questions (seed 0 of each mode, 40 new tokens at most):\n\n"
        )
        first = next(iter(gens.values()))
        for i, item in enumerate(first[:3]):
            text += f"**Q:** {item['question'].strip()}  \n*reference:* {item['reference'].strip()}\n\n"
            for m, items in gens.items():
                answer = items[i]["generated"].strip().replace("\n", " ") if i < len(items) else ""
                text += f"- {LABEL[m]}: {answer}\n"
            text += "\n"
    stats["comp"] = R.paired_comparisons(f, PAIRS, "test_loss")
    return text, stats


def exp4(root: Path, model: Path) -> tuple[str, dict]:
    f = counted(root)
    tests, helds = mean_se_of(f, "test_accuracy", ["mode"]), mean_se_of(f, "heldout_accuracy", ["mode"])
    rows, stats = [], {}
    for m in MODES:
        g = f[f["mode"] == m]
        if g.empty:
            continue
        test, held = tests[m], helds[m]
        stats[m] = (test, held)
        rows.append({"mode": LABEL[m], "in-domain test accuracy": fmt(*test[:2]),
                     "held-out (rotated 30°) accuracy": fmt(*held[:2]), "seeds": test[2],
                     "LoRA params": f"{int(g['trainable_lora'].median()):,}",
                     "head params": f"{int(g['trainable_head'].median()):,}", "lr": f"{g['lr'].iloc[0]:g}"})  # fmt: skip
    pre = json.loads((model / "pretraining.json").read_text())
    text = (
        f"Base model: {pre['params']:,}-parameter ViT pretrained {pre['config']['epochs']} epochs on Fashion-MNIST "
        f"in {pre['train_s']:.0f} s on {pre['device']} (Fashion-MNIST test accuracy {pre['test_accuracy']:.3f}).\n\n"
        + table(pd.DataFrame(rows), list(rows[0]))
    )
    stats["comp"] = R.paired_comparisons(f, PAIRS, "test_accuracy")
    return text, stats


# ----------------------------------------------------------------------------------------------------------
# the v2 experiments (issue 13): each section says so when its folder is missing or its table cannot be computed


def missing(root: Path, *groups: str) -> str | None:
    """'(not run: ...)' when a group folder the experiment reads is not in `root`, else None."""
    lacking = [g for g in groups if not (root / g).is_dir()]
    return f"(not run: this folder has no {', '.join(f'`{g}/`' for g in lacking)})\n" if lacking else None


def cmp_rows(frame: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    """Markdown-ready rows of a comparison frame: `first` columns, then comparison, pairs, diff [CI], p, verdict."""
    return pd.DataFrame([{**{c: r[c] for c in first}, "comparison": f"{SHORT_ALL[r['mode']]} − {SHORT_ALL[r['baseline']]}",
                          "pairs": r["n_pairs"], "diff [95 % CI]": ci(r),
                          "p (Holm)": f"{r['p_holm']:.2g}" if r["p_holm"] == r["p_holm"] else "–",
                          "verdict": r["verdict"]} for _, r in frame.iterrows()])  # fmt: skip


SHORT_ALL = {**SHORT, "head_only": "head only"}


def rank_section(root: Path) -> tuple[str, list[str]]:
    """Exp 2 (d/r sweep): B − A and B − A&B at every rank, and whether each gap grows with d/r."""
    from asymviz import rank_sweep as RS

    gap = missing(root, RS.RANK_GROUP)
    if gap:
        return gap, []
    store = RunStore(root).list()
    runs = R.counted_runs(store, group=RS.RANK_GROUP)
    try:
        dims = RS.d_in_of(runs, source=store)
        table = RS.rank_sweep_table(runs, d_in=dims)
        trend = RS.rank_trend_table(runs, d_in=dims)
    except R.ResultsError as exc:
        return f"(cannot compute: {exc})\n", []
    main = table[table["baseline"] != "head_only"].assign(d_over_r=lambda f: f["d_over_r"].map("{:g}".format))
    control = table[table["baseline"] == "head_only"].assign(
        d_over_r=lambda f: f["d_over_r"].map("{:g}".format)
    )
    cols = ["task", "comparison", "r", "d/r", "pairs", "diff [95 % CI]", "p (Holm)", "verdict"]
    text = (
        f"{len(runs)} counted runs (`{RS.RANK_GROUP}/`). Test accuracy, paired over seeds; d = {', '.join(map(str, sorted(set(dims.values()))))} "
        f"(the adapted modules' d_in); Holm over the {table['p'].notna().sum()} rows of the table. Reproduce with "
        f"`asymviz runs compare --store {root.name} --design rank` (and `--design rank-trend`).\n\n"
        + "Does the gap grow with d/r? The paired difference regressed on log2(d/r) per seed, then the slopes over "
        "seeds (t interval, Holm over these rows):\n\n"
        + "".join(f"- {line}\n" for line in RS.trend_lines(trend))
        + "\nThe LoRA modes against each other at every rank:\n\n"
        + table_md(cmp_rows(main, ["task", "rank", "d_over_r"]).rename(columns={"rank": "r", "d_over_r": "d/r"}), cols)
        + "\nEach LoRA mode against the head-only control (no adapter; its runs pair with every rank):\n\n"
        + table_md(cmp_rows(control, ["task", "rank", "d_over_r"]).rename(columns={"rank": "r", "d_over_r": "d/r"}), cols)
    )  # fmt: skip
    return text, RS.trend_lines(trend)


def head_section(root: Path) -> tuple[str, list[str]]:
    """Exp 3 (head factorial): the modes within each head arm and how each gap moves with the head."""
    from asymviz import head_factorial as HF

    gap = missing(root, *HF.HEAD_GROUPS)
    if gap:
        return gap, []
    store = RunStore(root).list()
    runs = pd.concat([R.counted_runs(store, group=g) for g in HF.HEAD_GROUPS], ignore_index=True)
    try:
        fact = HF.head_factorial_table(runs)
        inter = HF.head_interaction_table(runs)
    except R.ResultsError as exc:
        return f"(cannot compute: {exc})\n", []
    irows = pd.DataFrame([{"task": r["task"], "contrast": f"{SHORT_ALL[r['mode']]} − {SHORT_ALL[r['baseline']]}",
                           "gap, pooler + classifier": f"{r['diff_full_head']:+.3f}",
                           "gap, classifier only": f"{r['diff_classifier_head']:+.3f}",
                           "interaction [95 % CI]": ci(pd.Series({"diff_mean": r["interaction"], "ci_low": r["ci_low"],
                                                                  "ci_high": r["ci_high"]})),
                           "CI": r["ci_method"], "verdict": r["verdict"]} for _, r in inter.iterrows()])  # fmt: skip
    text = (
        f"{len(runs)} counted runs at r = 8 (`{'/`, `'.join(HF.HEAD_GROUPS)}/`): the head arm of a run is the head "
        "modules it trained (run.json head_modules). Reproduce with `asymviz runs compare --store "
        f"{root.name} --design head` and `--design head-interaction`.\n\n"
        "Does the trained head absorb what a frozen factor loses? Interaction = the gap with the classifier-only "
        "head minus the gap with pooler + classifier (positive: the gap is larger when the pooler is frozen), "
        "paired by seed across arms (a seed fixes data order, dropout and init in both arms), Holm over the "
        f"{inter['p'].notna().sum()} rows; equivalent: the 90 % CI inside ±{R.MARGIN:g}:\n\n"
        + "".join(f"- {line}\n" for line in HF.interaction_lines(inter))
        + "\n" + table_md(irows, list(irows.columns))
        + "\nThe modes within each arm (task *all*: the mean over tasks, bootstrap interval):\n\n"
        + table_md(cmp_rows(fact, ["head", "task"]), ["head", "comparison", "task", "pairs", "diff [95 % CI]", "p (Holm)", "verdict"])
    )  # fmt: skip
    return text, HF.interaction_lines(inter)


def similarity_section(root: Path) -> tuple[str, list[str]]:
    """Exp 5 (2×2 similarity): A's and B's similarity in the four cells, and the contrasts between them."""
    from asymviz import similarity_design as SD

    gap = missing(root, SD.SIMILARITY_GROUP)
    if gap:
        return gap, []
    store = RunStore(root).list()
    try:
        runs = SD.design_runs(store[store["group"] == SD.SIMILARITY_GROUP])
        pairs = SD.similarity_pairs(runs)
        cells = SD.similarity_2x2(pairs)
        con = SD.similarity_contrasts(pairs)
    except R.ResultsError as exc:
        return f"(cannot compute: {exc})\n", []
    crows = pd.DataFrame([{"factor": c["which"], "cell": SD.cell_name(c["same_init"], c["same_task"]),
                           "pairs": c["n_pairs"], "runs": c["n_runs"],
                           "similarity [95 % CI]": f"{c['mean']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]",
                           "random baseline": f"{c['random_baseline']:.3f}", "k": c["k"]} for _, c in cells.iterrows()])  # fmt: skip
    krows = pd.DataFrame([{"factor": c["which"], "contrast": c["contrast"],
                           "estimate [95 % CI]": f"{c['estimate']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]",
                           "verdict": c["verdict"]} for _, c in con.iterrows()])  # fmt: skip
    key = con.set_index(["which", "contrast"])
    lines = []
    for which, contrast, words in (("A", "same init - other init", "A's similarity follows the init"),
                                   ("A", "same task - other task", "A's similarity follows the task"),
                                   ("B", "same task - other task", "B's similarity follows the task"),
                                   ("B", "same init - other init", "B's similarity follows the init"),
                                   ("B-A", "B - A, other init, other task", "across tasks and inits B is more shared than A")):  # fmt: skip
        if (which, contrast) in key.index:
            c = key.loc[(which, contrast)]
            lines.append(f"**{words}?** {contrast.replace('-', '−')} ({which}): {c['estimate']:+.3f} [95 % CI "
                         f"{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], verdict **{c['verdict']}**.")  # fmt: skip
    text = (
        f"{len(runs)} runs (`{SD.SIMILARITY_GROUP}/`: mode ab, r = {int(runs['rank'].iloc[0])}, tasks "
        f"{', '.join(sorted(runs['task'].unique()))}; init_seed × seed), {len(pairs) // pairs['which'].nunique()} "
        "pairs. Similarity ‖U1ᵀU2‖²_F / min(k1, k2) of A's row space and B's column space, mean over the "
        "modules, then over the cell's pairs; the 95 % interval is a bootstrap over runs (a run sits in many "
        "pairs; asymviz.similarity_design), verdict higher / lower / inconclusive by that interval. Reproduce with "
        f"`asymviz runs similarity-2x2 --store {root.name}` (`--table contrasts`).\n\n"
        + "".join(f"- {line}\n" for line in lines)
        + "\n" + table_md(crows, list(crows.columns))
        + "\n" + table_md(krows, list(krows.columns))
    )  # fmt: skip
    return text, lines


# ----------------------------------------------------------------------------------------------------------


HEADER = [
    "# Results: what our runs say about the paper's claims",
    "",
    "Generated by `python bench/make_results.py` from the runs in this folder: every number below is computed",
    "from their run.json, metrics.csv and adapters (the one exception is marked as a quote). Paper: Zhu et al., *Asymmetry in Low-Rank Adapters of",
    "Foundation Models*, ICML 2024. Our models and data are small offline stand-ins for the paper's (MiniLM-L6",
    "for RoBERTa, five small text tasks for GLUE, SmolLM2-135M for LLaMA-2, a 455k-parameter ViT for the",
    "ImageNet ViT), so agreement or disagreement here is evidence about these settings, not a replication.",
    "",
]
V1_GROUPS = (
    "minilm_tasks",
    "similarity",
    "vit_mnist",
)  # what the full report (exp 1-5 of the first run) reads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="cached_runs")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    root = Path(args.root)
    v2 = {
        "d/r sweep": rank_section(root),
        "head factorial": head_section(root),
        "2×2 similarity": similarity_section(root),
    }
    lacking = missing(root, *V1_GROUPS)
    text = partial_report(root, lacking, v2) if lacking else full_report(root, v2)
    out = Path(args.out) if args.out else root / "RESULTS.md"
    out.write_text(text)
    print(f"wrote {out} ({len(text):,} characters)")
    return 0


def v2_sections(v2: dict) -> list[str]:
    """The v2 experiments' sections, in order (each says when it was not run)."""
    (t_rank, _), (t_head, _), (t_sim, _) = v2.values()
    return [
        "## The d/r sweep (issue 13, exp 2): B only − A only and B only − A&B against d/r",
        "",
        t_rank,
        "## The head factorial (issue 13, exp 3): pooler + classifier vs classifier only",
        "",
        t_head,
        "## Similarity, the 2×2 design (issue 13, exp 5): same or other init × same or other task",
        "",
        t_sim,
    ]


def v2_verdicts(v2: dict) -> list[str]:
    """One line naming what the v2 experiments gave, then their verdict sentences as bullets."""
    head = "Replication v2 (issue 13): " + "; ".join(
        f"{name}: {'below' if got else 'not in this folder or not computable'}"
        for name, (_, got) in v2.items()
    )
    return [head + ".", "", *(f"- {line}" for _, got in v2.values() for line in got)]


def partial_report(root: Path, lacking: str, v2: dict) -> str:
    """The report of a folder without every experiment of the first run: what is missing, then the v2 ones."""
    return "\n".join([*HEADER, "## Verdict", "", f"The first run's report (its exp 1-5) reads {', '.join(f'`{g}/`' for g in V1_GROUPS)}: "
                      f"{lacking.strip()}.", "",
                      *v2_verdicts(v2), "", *v2_sections(v2)])  # fmt: skip


def full_report(root: Path, v2: dict) -> str:
    """The report of a folder with the first run's experiments (and whichever v2 ones it has)."""
    t1, s1 = exp1(root / "minilm_tasks")
    t5 = exp5(root / "minilm_tasks")
    t2, s2 = exp2(root / "similarity")
    t3, s3 = exp3(root / "smollm2_qa") if (root / "smollm2_qa").is_dir() else ("(not run)\n", {})
    t4, s4 = exp4(root / "vit_mnist", root / "models" / "vit-fmnist")
    e1 = s1["exp1_sweeps"]
    versions = json.loads(next((root / "minilm_tasks").glob("*/run.json")).read_text()).get("versions", {})
    walls = [w for w in e1["wall_s"] if w == w and w is not None]
    first_call = _interrupted_seconds(e1)
    gpu_wall = sum(walls) + first_call
    means = s1["means"]
    sim = {k: v.loc[:, "similarity"] for k, v in s2.items()}
    names = list(sim)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    base = float(s2[names[0]].loc["A", "random_baseline"])
    own, shared, tasks = names
    fig1 = (sim[shared]["A"] > 3 * sim[own]["A"] and sim[tasks]["A"] > 3 * sim[own]["A"]
            and sim[own]["B"] > sim[tasks]["B"] and sim[shared]["B"] > sim[tasks]["B"])  # fmt: skip

    def m(mode, r):
        return means.loc[mode, r]

    ranks = list(means.columns)
    per_task = s1["comp"][s1["comp"]["task"] != "all"]
    n1 = per_task["verdict"].value_counts()
    half_width = float(((per_task["ci_high"] - per_task["ci_low"]) / 2).median())
    lines = [
        *HEADER,
        "## Verdict",
        "",
        f"MiniLM-L6 on five tasks, {'/'.join(map(str, s1['seeds']))} seeds per cell, modes compared over paired "
        f"seeds; equivalence margin ±{R.MARGIN:g} (one point of accuracy). Of the {len(per_task)} per-task "
        "comparisons, "
        + ", ".join(f"{int(n1[v])} are {v}" for v in R.VERDICTS if v in n1)
        + f": with so few seeds the 95 % t interval of a task is wide (median half-width "
        f"{half_width:.3f}), so most cells cannot tell a difference from equivalence, and the verdicts below say "
        "so. Mean test accuracy over the five tasks: "
        + "; ".join(f"r = {r}: " + ", ".join(f"{SHORT[k]} {m(k, r):.3f}" for k in MODES) for r in ranks)
        + ".",
        "",
        *(f"- {line}" for line in R.claim_lines(s1["claims"])),
        f"- A only vs A&B per task (not a claim of the paper, for reference): {s1['a_vs_ab']}. An earlier single GPU "
        "run quoted in the project brief (fine_foods: A&B 0.843, B only 0.825, A only 0.829) is a single seed and "
        "has no interval.",
        "- **Learned A's agree when they share an init; learned B's agree across seeds of a task, not across "
        "tasks** (Figure 1). Mean subspace similarity (random baseline "
        f"{base:.3f}): "
        + "; ".join(
            f"{n}: A {sim[n]['A']:.3f} ({sim[n]['A'] / base:.1f}× chance), B "
            f"{sim[n]['B']:.3f} ({sim[n]['B'] / base:.1f}× chance)"
            for n in names
        )
        + f". **{'Holds' if fig1 else 'Does not hold'}**: "
        + (
            "A's similarity follows its init (own inits vs a shared init), whatever the task; B is more similar "
            "across seeds of one task than across tasks."
            if fig1
            else "see the table of exp 2."
        ),
    ]
    if s3:
        lines.append(
            "- **Causal LM (SmolLM2-135M on chatterbot_qa, CPU, lower is better)**: test answer loss "
            + ", ".join(f"{LABEL[k]} {s3[k][0]:.3f}" for k in MODES if k in s3)
            + " (lr chosen per mode on validation); "
            + pair_verdicts(s3["comp"], PAIRS[::2])
            + f" ({'/'.join(sorted({str(n) for n in s3['comp']['n_pairs']}))} seed pairs; diff = the second mode's "
            "loss minus the first's, so positive means the first is better; margin ±"
            f"{R.MARGIN:g} nats)."
        )
    if s4:
        lines.append(
            "- **ViT (pretrained on Fashion-MNIST, adapted to MNIST digits)**: in-domain / rotated held-out "
            "accuracy "
            + ", ".join(f"{LABEL[k]} {s4[k][0][0]:.3f} / {s4[k][1][0]:.3f}" for k in MODES if k in s4)
            + "; in-domain, "
            + pair_verdicts(s4["comp"], PAIRS[::2])
            + f" ({'/'.join(sorted({str(n) for n in s4['comp']['n_pairs']}))} seed pairs)."
        )
    lines += ["", *v2_verdicts(v2)]
    lines += [
        "",
        "## Exp 1 · MiniLM-L6 on five tasks (the paper's Table 1)",
        "",
        f"{s1['n_runs']} counted runs (`minilm_tasks/`, see its README for the exact sweep). Test accuracy and "
        "macro-F1: mean ± standard error over 3 seeds. LoRA params: the factors the mode trains; the head (pooler "
        "and classifier) is trained in full in every mode and counted apart.",
        "",
        t1,
        "### GPU wall time (one NVIDIA H200)",
        "",
        f"Experiment 1 took **{gpu_wall:.0f} s** of wall time on one H200 with 12 runs in flight "
        f"({len(e1)} sweep calls: the first ran {first_call:.0f} s before its time limit stopped it and the second "
        "finished the 3-point lr grid in "
        f"{walls[0]:.0f} s; widening the grid to 5 points took {walls[-1]:.0f} s more). Versions on the GPU: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        "## Exp 5 · The frozen A's distribution (the paper's Table 2)",
        "",
        "B only at r = 8, 3 seeds, lr chosen per init on validation:",
        "",
        t5,
        "## Exp 2 · Similarity of learned A and B (the paper's Figure 1)",
        "",
        "Subspace similarity ‖U1ᵀU2‖²_F / min(r1, r2) of A's row space and B's column space, mean over the 12 "
        "LoRA modules and all pairs of runs; the random baseline is the expected value for random subspaces of "
        "the same dimensions (8 / 384).",
        "",
        t2,
        "## Exp 3 · SmolLM2-135M (LLaMA architecture) on chatterbot_qa (the paper's LLaMA-2 / Alpaca)",
        "",
        "Run on this project's 2-core CPU machine (the model does not fit in what travels to the GPU machine): "
        "LoRA r = 8 on q_proj and v_proj of all 30 layers, 150 steps of batch 8, loss on the answer tokens only; "
        + (
            "the lr chosen per mode on the validation loss from a small grid (table below)."
            if (root / "smollm2_qa" / LR_FILE).exists()
            else "lr 2e-3 for every mode (no lr grid)."
        ),
        "",
        t3,
        "## Exp 4 · A small ViT, Fashion-MNIST → MNIST (the paper's ViT / DomainBed)",
        "",
        t4,
        *v2_sections(v2),
        "## What is not here",
        "",
        f"- Seeds: {'/'.join(map(str, s1['seeds']))} per cell in exp 1 "
        f"(of the {len(per_task)} per-task comparisons: {', '.join(f'{int(n1[v])} {v}' for v in R.VERDICTS if v in n1)}); "
        "more seeds would narrow the intervals. Equivalence is judged per comparison at α = 0.05 (TOST) without a "
        "multiplicity correction; differences need a Holm-adjusted p < 0.05.",
        "- The classification head (MiniLM's pooler and classifier, about 149k parameters, more than the LoRA "
        "factors) is trained in full in every mode, as in the paper; on tasks this small it may carry much of the "
        "adaptation and so shrink the differences between modes. A run without it was not made.",
        "- Weights are shipped for seed 0 at r = 8 only (fp16); the other runs keep their metrics and curves.",
        "- The paper's generalisation-bound experiments are on the Theory page (closed form), not trained here.",
        f"- cached_runs/ is {size / 2**20:.1f} MiB.",
        "",
    ]
    return "\n".join(lines)


def _interrupted_seconds(e1: pd.DataFrame) -> float:
    """Wall time of the exp-1 sweep calls that were stopped at their time limit before they could record it:
    the limit each was given, read from the GPU job's logs (bench/results/gpu_experiments_call*.log, lines
    `== exp1 (HH:MM:SS, N s left)` followed by `== exp1: exit 137` or 130)."""
    import re

    total = 0.0
    logs = sorted((Path(__file__).resolve().parent / "results").glob("gpu_experiments_call*.log"))
    for log in logs:
        text = log.read_text()
        start = re.search(r"^== exp1 \((\S+), (\d+) s left\)", text, re.M)
        stop = re.search(r"^== exp1: exit (\d+)", text, re.M)
        if start and stop and stop.group(1) in ("124", "130", "137"):
            total += float(start.group(2))
    return total


if __name__ == "__main__":
    raise SystemExit(main())
