"""asymviz.figures: pure frame -> figure builders; one colour per mode; axis titles everywhere."""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from asymviz import figures as F
from asymviz.results import alignment_by_mode, mean_se


def _axis_titles(fig):
    layout = fig.to_plotly_json()["layout"]
    return {k: v.get("title", {}).get("text") for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))}


def _runs():
    rows = []
    for task in ("fine_foods", "tweet_source"):
        for mode, base in (("ab", 0.8), ("b_only", 0.79), ("a_only", 0.7)):
            for seed in range(3):
                rows.append({"task": task, "mode": mode, "seed": seed, "test_accuracy": base + 0.01 * seed,
                             "trainable_params": {"ab": 200, "b_only": 100, "a_only": 100}[mode]})  # fmt: skip
    return pd.DataFrame(rows)


def test_mode_vocabulary_is_consistent():
    assert set(F.MODE_COLORS) == set(F.MODE_LABELS) == {"ab", "b_only", "a_only", "head_only"}
    assert F.MODES == ("ab", "b_only", "a_only")
    assert F.MODE_LABELS == {
        "ab": "A&B",
        "b_only": "B only (random A frozen)",
        "a_only": "A only (random B frozen)",
        "head_only": "head only (no adapter)",
    }
    assert len(set(F.MODE_COLORS.values())) == 4


def test_format_mean_se():
    assert (
        F.format_mean_se(0.8123, 0.0041) == "0.812 ± 0.004" and F.format_mean_se(0.8, float("nan")) == "0.800"
    )


def test_mode_bar_figure_uses_mode_colours_and_order():
    summary = mean_se(_runs(), by=["task", "mode"], value="test_accuracy")
    summary["trainable_params"] = summary["mode"].map({"ab": 200, "b_only": 100, "a_only": 100})
    fig = F.mode_bar_figure(summary.iloc[::-1], "test accuracy")
    assert [t.name for t in fig.data] == [F.MODE_LABELS[m] for m in F.MODES]
    assert [t.marker.color for t in fig.data] == [F.MODE_COLORS[m] for m in F.MODES]
    assert np.allclose(fig.data[0].error_y.array, 0.01 / math.sqrt(3))
    titles = _axis_titles(fig)
    assert titles["xaxis"] == "task" and titles["yaxis"] == "test accuracy"
    assert "empty" not in fig.layout.title.text


def test_module_roles_split_a_kind_only_where_it_covers_several_roles():
    modules = ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.output.dense",
               "bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.0.output.dense",
               "bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.output.dense"]  # fmt: skip
    kinds = ["query", "dense", "dense", "dense", "query", "dense"]
    roles = F.module_roles(modules, [0, 0, 0, 0, 1, 1], kinds)
    assert roles == [
        "query",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
        "query",
        "output.dense",
    ]
    assert F.module_roles(["model.layers.3.self_attn.q_proj", "lm_head"], [3, None], ["q_proj", "lm_head"]) == [
        "q_proj", "lm_head"]  # fmt: skip


def test_log_axis_ticks_are_powers_of_ten_over_a_decade():
    spectrum = pd.DataFrame({"module": "m", "layer": 0, "which": ["A"] * 3 + ["B"] * 3, "k": [1, 2, 3] * 2,
                             "sigma": [3.0, 2.0, 1.0, 100.0, 1.0, 0.01]})  # fmt: skip
    fig = F.spectrum_figure(spectrum, which=("A", "B"))
    assert fig.layout.yaxis.dtick is None  # A spans under a decade: Plotly's own ticks (0.5, 1, 1.5, ...)
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.dtick == 1


def test_module_similarity_one_panel_per_factor_so_equal_lines_cannot_hide():
    pairs = pd.DataFrame({"module": ["m0", "m1"] * 3, "which": ["A", "A", "B", "B", "delta", "delta"],
                          "similarity": [0.02, 0.03, 0.02, 0.03, 0.5, 0.4], "random_baseline": 0.02})  # fmt: skip
    fig = F.module_similarity_figure(pairs)
    learned = [t for t in fig.data if t.mode == "markers+lines"]
    assert [t.yaxis for t in learned] == ["y", "y2", "y3"]  # A and B equal, yet each on its own panel
    assert [a.text.split(":")[0] for a in fig.layout.annotations] == [
        F.WHICH_LABELS[w] for w in ("A", "B", "delta")
    ]


def test_head_only_is_the_floor_a_dashed_line_across_each_task_not_a_bar():
    runs = pd.concat([_runs(), pd.DataFrame({"task": ["t1", "t1", "t2"], "mode": "head_only", "seed": [0, 1, 0],
                                             "test_accuracy": [0.5, 0.6, 0.4]})])  # fmt: skip
    summary = mean_se(runs, by=["task", "mode"], value="test_accuracy")
    fig = F.mode_bar_figure(summary, "test accuracy")
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == [F.MODE_LABELS[m] for m in F.MODES]  # the three LoRA modes only
    floor = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]  # the hover marker
    assert len(floor) == 1 and floor[0].name.startswith(F.MODE_LABELS["head_only"])
    # its legend key is a dashed line like the floor it names (a marker's outline cannot be dashed)
    (key,) = [t for t in fig.data if t.type == "scatter" and t.showlegend is not False]
    assert (key.name, key.mode, key.line.dash) == (floor[0].name, "lines", "dash")
    assert floor[0].showlegend is False
    assert list(floor[0].y) == pytest.approx([0.55, 0.4])
    tasks = list(fig.layout.xaxis.categoryarray)
    lines = {(s.x0, s.x1, s.y0) for s in fig.layout.shapes}
    expected = {(tasks.index(t) - 0.42, tasks.index(t) + 0.42, v) for t, v in (("t1", 0.55), ("t2", 0.4))}
    assert {(round(a, 6), round(b, 6), round(c, 6)) for a, b, c in lines} == {
        (round(a, 6), round(b, 6), round(c, 6)) for a, b, c in expected}  # fmt: skip
    assert all(
        s.line.color == F.MODE_COLORS["head_only"] and s.line.dash == "dash" for s in fig.layout.shapes
    )
    # its legend key and centre marker in the control's grey too (an open line symbol is drawn in
    # marker.color: without it Plotly took the next colour of its colorway, a purple)
    assert floor[0].marker.color == F.MODE_COLORS["head_only"]


def test_a_linear_probe_is_a_dotted_line_per_task():
    summary = mean_se(_runs(), by=["task", "mode"], value="test_accuracy")
    probe = pd.DataFrame(
        {"task": ["fine_foods", "other"], "value": [0.6, 0.9]}
    )  # a task without bars is left out
    fig = F.mode_bar_figure(summary, "test accuracy", probe=probe)
    (line,) = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert line.name == "linear probe (frozen features)" and list(line.y) == [0.6]
    assert [(s.y0, s.line.dash) for s in fig.layout.shapes] == [(0.6, "dot")]
    # the legend draws it dotted as the chart does (it was a solid line symbol)
    (key,) = [t for t in fig.data if t.type == "scatter" and t.showlegend is not False]
    assert (key.name, key.mode, key.line.dash, line.showlegend) == (line.name, "lines", "dot", False)


def test_the_accuracy_axis_starts_near_the_data_not_at_zero():
    """Differences of ~0.01 between modes must show: the range spans the error bars and the probe, padded 10 %
    of that span below (never under the floor, 0) and 20 % above (the numbers written over the bars)."""
    summary = pd.DataFrame({"task": ["t", "t", "t"], "mode": ["ab", "b_only", "head_only"],
                            "mean": [0.90, 0.91, 0.80], "se": [0.01, float("nan"), 0.02], "n": [3, 1, 3]})  # fmt: skip
    probe = pd.DataFrame({"task": ["t"], "value": [0.95]})
    assert F.near_data_range(summary) == pytest.approx((0.78 - 0.013, 0.91 + 0.026))
    assert F.near_data_range(summary, probe) == pytest.approx((0.78 - 0.017, 0.95 + 0.034))
    low = summary.assign(mean=[0.02, 0.3, 0.01], se=0.005)  # never below the metric's floor (0.005 - 0.03)
    assert F.near_data_range(low)[0] == 0.0


def test_learning_curves_one_line_per_run_one_legend_entry_per_mode():
    curves = pd.DataFrame(
        [{"run_id": f"{m}-{s}", "mode": m, "step": step, "value": 1.0 / (step + 1)}
         for m in F.MODES for s in range(2) for step in range(5)]
    )  # fmt: skip
    fig = F.learning_curve_figure(curves, "training loss (nats)")
    assert len(fig.data) == 6
    assert sum(bool(t.showlegend) for t in fig.data) == 3
    assert {t.line.color for t in fig.data if t.legendgroup == "b_only"} == {F.MODE_COLORS["b_only"]}
    assert _axis_titles(fig)["yaxis"] == "training loss (nats)"


def _spectrum():
    rows = []
    for layer in range(2):
        for kind in ("query", "value"):
            for which in ("A", "B", "delta"):
                for k in range(1, 5):
                    rows.append({"module": f"l.{layer}.{kind}", "layer": layer, "kind": kind, "which": which,
                                 "k": k, "sigma": 1.0 / k, "sigma_rel": 1.0 / k, "energy_cum": k / 4})  # fmt: skip
    return pd.DataFrame(rows)


def test_spectrum_and_heatmap():
    fig = F.spectrum_figure(_spectrum())
    assert len(fig.data) == 3 * (4 + 1)  # per panel: one line per module + the median
    assert fig.layout.yaxis.type == "log"
    summary = _spectrum().groupby(["module", "layer", "kind", "which"], as_index=False)["sigma"].sum()
    summary = summary.rename(columns={"sigma": "fro_norm"})
    summary["layer"] = summary["layer"].astype("Int64")
    heat = F.layer_module_heatmap(summary, "fro_norm", "delta", "Frobenius norm ‖ΔW‖_F")
    z = np.asarray(heat.data[0].z)
    assert z.shape == (2, 2) and np.allclose(z, 1 + 1 / 2 + 1 / 3 + 1 / 4)
    assert list(heat.data[0].y) == ["layer 0", "layer 1"]
    assert "ΔW" in heat.layout.title.text


def test_similarity_heatmaps_show_learned_next_to_random():
    pairs = pd.DataFrame(
        [{"adapter_1": a, "adapter_2": b, "module": "m", "which": "A", "similarity": s, "random_baseline": 0.1}
         for a, b, s in (("s0", "s1", 0.9), ("s0", "s2", 0.8), ("s1", "s2", 0.7))]
    )  # fmt: skip
    fig = F.similarity_heatmaps(pairs, "A")
    assert len(fig.data) == 2
    learned, random = (np.asarray(t.z, dtype=float) for t in fig.data)
    assert learned[0, 1] == learned[1, 0] == pytest.approx(0.9) and np.allclose(np.diag(learned), 1)
    assert random[0, 2] == pytest.approx(0.1)
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1


def test_drift_and_theory_figures():
    drift = pd.DataFrame(
        [{"mode": m, "layer": layer, "which": w, "rel_change": 0.1 if w == "A" else 2.0}
         for m in ("ab", "b_only") for layer in range(3) for w in ("A", "B")]
    )  # fmt: skip
    fig = F.drift_figure(drift)
    assert {a.text for a in fig.layout.annotations} >= {F.MODE_LABELS["ab"], F.MODE_LABELS["b_only"]}
    assert F.drift_figure(drift.iloc[:0]).layout.annotations  # says why it is empty
    draws = pd.DataFrame({"mode": ["b_only"] * 5 + ["a_only"] * 5, "relative_excess": np.linspace(0, 1, 10)})
    expected = pd.DataFrame({"mode": ["b_only", "a_only", "ab"], "relative_expected": [0.2, 0.7, 0.1]})
    fig = F.excess_loss_figure(draws, expected)
    hist = [t for t in fig.data if isinstance(t, go.Histogram)]
    assert [t.marker.color for t in hist] == [F.MODE_COLORS["b_only"], F.MODE_COLORS["a_only"]]
    assert len(fig.layout.shapes) == 3


def test_empty_inputs_give_an_explaining_figure():
    empty = pd.DataFrame(columns=["task", "mode", "mean", "se", "n"])
    fig = F.mode_bar_figure(empty, "accuracy")
    assert fig.layout.annotations and "no finished runs" in fig.layout.annotations[0].text


def test_html_export_is_standalone():
    html = F.figure_html(F.bound_figure(pd.DataFrame({"mode": ["ab", "b_only"], "bound": [0.2, 0.14]})))
    assert "<html>" in html[:100] and "B only" in html
    assert '<script src="https://cdn.plot.ly' not in html and len(html) > 1_000_000  # plotly.js embedded


# ---- alignment and diagnostics (asymviz.probes.alignment, asymviz.probes.diagnostics) ----------------------------------


def _alignment_rows(sim_a=0.5, sim_b=0.8, runs=(("r0", "ab"),)):
    rows = []
    for run_id, mode in runs:
        for layer in (0, 1):
            for kind in ("query", "value"):
                for source in ("trained", "init"):
                    for which, side, ref, sim in (
                        ("A", "input", "input second moment", sim_a),
                        ("B", "output", "output gradient second moment", sim_b),
                        ("A", "weight", "W0 right singular vectors", 0.1),
                        ("B", "weight", "W0 left singular vectors", 0.1),
                    ):
                        init_b = source == "init" and which == "B"
                        rows.append({
                            "run_id": run_id, "mode": mode, "module": f"layer.{layer}.{kind}", "layer": layer,
                            "kind": kind, "source": source, "which": which, "side": side, "reference": ref,
                            "dim": 32, "k_factor": 4, "k_reference": 8,
                            "similarity": math.nan if init_b else (sim if source == "trained" else 0.25) + layer / 10,
                            "random_baseline": math.nan if init_b else 0.25,
                            "energy_share": math.nan if init_b else 0.3, "energy_baseline": 0.125,
                        })  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def test_alignment_layer_figure_trained_next_to_init_with_the_baseline():
    fig = F.alignment_layer_figure(_alignment_rows())
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert set(bars) == {"A trained", "A at init (step 0)", "B trained"}  # B = 0 at init: no bar
    assert list(bars["A trained"].y) == pytest.approx([0.5, 0.6])  # mean over the layer's modules
    assert list(bars["B trained"].x) == ["0", "1"]
    assert bars["A trained"].marker.color == F.WHICH_COLORS["A"] == bars["A at init (step 0)"].marker.color
    assert bars["B trained"].marker.color == F.WHICH_COLORS["B"]
    baselines = [t for t in fig.data if t.type == "scatter"]
    assert len(baselines) == 2 and all(list(t.y) == [0.25, 0.25] for t in baselines)
    assert sum(t.showlegend is not False for t in baselines) == 1
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:2] == [
        "A (row space) vs the module's inputs",
        "B (column space) vs the loss gradients at its output",
    ]
    assert _axis_titles(fig)["yaxis"] == "subspace similarity (0–1)"
    weight = F.alignment_layer_figure(_alignment_rows(), (("A", "weight"), ("B", "weight")), "energy_share")
    assert [a.text for a in weight.layout.annotations][:2] == [
        "A vs W0's top right singular vectors", "B vs W0's top left singular vectors"]  # fmt: skip
    assert {t.name for t in weight.data if t.type == "scatter"} == {"random subspace (baseline)"}
    assert list(next(t for t in weight.data if t.type == "scatter").y) == [0.125, 0.125]


def test_alignment_mode_figure_mean_and_se_over_seeds_in_mode_colours():
    frame = pd.concat([
        _alignment_rows(0.4, 0.6, runs=(("a0", "ab"),)), _alignment_rows(0.6, 0.8, runs=(("a1", "ab"),)),
        _alignment_rows(0.3, 0.9, runs=(("b0", "b_only"),)),
    ])  # fmt: skip
    fig = F.alignment_mode_figure(alignment_by_mode(frame))
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == [F.mode_label("ab"), F.mode_label("b_only")] * 2
    assert [t.marker.color for t in bars[:2]] == [F.MODE_COLORS["ab"], F.MODE_COLORS["b_only"]]
    ab_a = bars[0]
    assert list(ab_a.y) == pytest.approx([0.5, 0.6])  # mean over the two seeds
    assert list(ab_a.error_y.array) == pytest.approx([0.1, 0.1])  # std 0.1414 / sqrt(2)
    assert list(bars[1].error_y.array) == [0.0, 0.0]  # one seed: no error bar
    assert sum(t.showlegend is not False for t in bars) == 2


def test_diagnostics_figure_three_panels_one_series_per_kind():
    diag = pd.DataFrame({"module": ["l0.q", "l0.v", "l1.q", "l1.v"], "layer": [0, 0, 1, 1],
                         "kind": ["q", "v", "q", "v"], "k": 10, "n_intruders": [0, 1, 2, 0],
                         "amplification": [1.0, math.inf, 3.0, 2.0], "direction_change": [0.01, 0.02, 0.0, 0.1]})  # fmt: skip
    fig = F.diagnostics_figure(diag)
    assert len(fig.data) == 6 and [t.name for t in fig.data[:2]] == ["q", "v"]
    assert sum(t.showlegend for t in fig.data) == 2
    amp_v = fig.data[3]
    assert math.isnan(amp_v.y[0]) and amp_v.y[1] == 2.0  # an infinite amplification is left out, not drawn
    assert [a.text for a in fig.layout.annotations] == [
        "intruder dimensions",
        "amplification factor",
        "direction change",
    ]
    assert F.diagnostics_figure(diag.iloc[:0]).layout.annotations[0].text == "no modules"
    assert F.alignment_layer_figure(_alignment_rows().iloc[:0]).layout.annotations[0].text.startswith("no ")
