"""asymviz.figures.replication: each figure draws the numbers of its contract frame (v2 spec, issue 13) and
nothing else: points at the means, bars reaching exactly to the interval ends, the reference lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from replication_frames import head_frame, mechanism_frame, rank_sweep_frame, similarity_frame

from asymviz import figures as F
from asymviz.figures.replication import DODGE


def _data_traces(fig):
    return [t for t in fig.data if t.x is not None and len(t.x) and t.x[0] is not None]


def _ends(trace):
    """(low, high) of each point's error bar."""
    y = np.asarray(trace.y, float)
    return y - np.asarray(trace.error_y.arrayminus, float), y + np.asarray(trace.error_y.array, float)


# ------------------------------------------------------------------------------------------------------------
# d/r sweep


def test_rank_sweep_draws_b_minus_a_and_b_minus_ab_per_task_with_their_intervals():
    table = rank_sweep_frame()
    fig = F.rank_sweep_figure(table)
    traces = _data_traces(fig)
    assert [(t.name, t.xaxis) for t in traces] == [
        ("B only − A only", "x"), ("B only − A&B", "x"), ("B only − A only", "x2"), ("B only − A&B", "x2"),
    ]  # fmt: skip
    for trace in traces:
        task = "fine_foods" if trace.xaxis == "x" else "word_pos"
        baseline = "a_only" if trace.name.endswith("A only") else "ab"
        rows = table[(table["task"] == task) & (table["mode"] == "b_only") & (table["baseline"] == baseline)]
        rows = rows.sort_values("d_over_r")
        assert np.allclose(trace.y, rows["diff_mean"])
        low, high = _ends(trace)
        assert np.allclose(low, rows["ci_low"]) and np.allclose(high, rows["ci_high"])  # asymmetric, as given
        # dodged by ±DODGE/2 in log10 units around the exact d/r; the hover carries the exact value and r
        ratio = np.log10(np.asarray(trace.x, float) / rows["d_over_r"].to_numpy())
        assert np.allclose(np.abs(ratio), DODGE / 2)
        assert [c[0] for c in trace.customdata] == list(rows["d_over_r"])
        assert [c[1] for c in trace.customdata] == list(rows["rank"])
        assert trace.marker.color == F.MODE_COLORS[baseline]
        decided = [not s.endswith("-open") for s in trace.marker.symbol]
        assert decided == list(rows["verdict"] == "better")
    layout = fig.layout
    assert layout.xaxis.type == "log" and layout.xaxis2.type == "log"
    assert list(layout.xaxis.tickvals) == sorted(384 / r for r in (1, 2, 4, 8, 16, 32, 64))
    assert "r=64" in layout.xaxis.ticktext[0]
    # the zero line and the ±margin band in each panel
    lines = [s for s in layout.shapes if s.type == "line"]
    bands = [s for s in layout.shapes if s.type == "rect"]
    assert len(lines) == 2 and all(s.y0 == 0 == s.y1 for s in lines)
    assert len(bands) == 2 and all((s.y0, s.y1) == (-0.01, 0.01) for s in bands)
    assert any("±0.01" in (t.name or "") for t in fig.data)


def test_rank_sweep_with_other_pairs_and_missing_columns():
    table = rank_sweep_frame()
    fig = F.rank_sweep_figure(table, pairs=(("ab", "head_only"),))
    assert {t.name for t in _data_traces(fig)} == {"A&B − head only"}
    with pytest.raises(ValueError, match="d_over_r"):
        F.rank_sweep_figure(table.drop(columns="d_over_r"))
    with pytest.raises(ValueError, match="margins"):
        F.rank_sweep_figure(table.assign(margin=np.where(table["task"] == "word_pos", 0.02, 0.01)))
    empty = F.rank_sweep_figure(table[table["mode"] == "a_only"])  # neither B − A nor B − A&B
    assert "no comparison" in empty.layout.annotations[0].text


# ------------------------------------------------------------------------------------------------------------
# head factorial


def test_head_factorial_draws_each_head_per_task_and_comparison():
    table = head_frame()
    fig = F.head_factorial_figure(table, margin=0.01)
    traces = _data_traces(fig)
    assert len(traces) == 6  # 3 comparisons × 2 heads
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["B only − A only", "B only − A&B", "A&B − head only"]
    axes = ["x", "x2", "x3"]
    for trace in traces:
        head = trace.name.removeprefix("head: ")
        mode, baseline = [("b_only", "a_only"), ("b_only", "ab"), ("ab", "head_only")][
            axes.index(trace.xaxis)
        ]
        rows = table[(table["head"] == head) & (table["mode"] == mode) & (table["baseline"] == baseline)]
        assert np.allclose(trace.y, rows["diff_mean"])
        low, high = _ends(trace)
        assert np.allclose(low, rows["ci_low"]) and np.allclose(high, rows["ci_high"])
        offset = -0.15 if head == "pooler+classifier" else 0.15
        assert np.allclose(trace.x, np.arange(3) + offset)
        assert [c[0] for c in trace.customdata] == list(rows["task"])
    assert list(fig.layout.xaxis.ticktext) == ["fine_foods", "tweet_source", "word_pos"]
    assert fig.layout.yaxis.title.text == "difference (+ = first better)"
    assert sum(s.type == "rect" for s in fig.layout.shapes) == 3  # the margin band in each panel
    assert sum(s.type == "line" and s.y0 == 0 for s in fig.layout.shapes) == 3


def test_head_factorial_wraps_more_than_three_comparisons_and_skips_the_pooled_row():
    table = head_frame()
    extra = table[table["mode"] == "ab"].assign(mode="a_only")
    pooled = table.iloc[:1].assign(task="all")
    fig = F.head_factorial_figure(pd.concat([table, extra, pooled], ignore_index=True))
    assert len(_data_traces(fig)) == 8
    assert fig.layout.height == 700  # two rows of panels, three columns for three tasks
    assert "all" not in list(fig.layout.xaxis.ticktext)
    assert not any(s.type == "rect" for s in fig.layout.shapes)  # no margin column and none given: no band


def test_head_factorial_with_five_tasks_uses_two_wider_columns_and_breaks_long_names():
    table = head_frame()
    more = pd.concat([table.assign(task=t) for t in ("word_polarity", "chatterbot_topic")], ignore_index=True)
    fig = F.head_factorial_figure(pd.concat([table, more], ignore_index=True))
    assert [a.text for a in fig.layout.annotations[:3]] == [
        "B only − A only",
        "B only − A&B",
        "A&B − head only",
    ]
    assert fig.layout.xaxis3.anchor == "y3" and fig.layout.height == 700  # 3 comparisons: 2 + 1 panels
    assert list(fig.layout.xaxis.ticktext)[-1] == "chatterbot_<br>topic" and fig.layout.xaxis.tickangle == 0


# ------------------------------------------------------------------------------------------------------------
# mechanism


def test_mechanism_points_are_observed_against_predicted_with_the_identity_line():
    table = mechanism_frame()
    fig = F.mechanism_figure(table)
    points = [t for t in fig.data if t.name != "y = x (prediction exact)"]
    assert len(points) == 6
    for trace in points:
        short_mode, model, task = trace.name.split(" · ")
        mode = {"B only": "b_only", "A only": "a_only"}[short_mode]
        row = table[(table["mode"] == mode) & (table["model"] == model) & (table["task"] == task)]
        assert np.allclose(trace.x, row["predicted"]) and np.allclose(trace.y, row["observed"])
        low, high = _ends(trace)
        assert np.allclose(low, row["observed_low"]) and np.allclose(high, row["observed_high"])
        assert trace.marker.color == F.MODE_COLORS[mode]
    identity = next(t for t in fig.data if t.name == "y = x (prediction exact)")
    assert list(identity.x) == list(identity.y)
    lo, hi = table["observed_low"].min(), table["observed_high"].max()
    assert identity.x[0] < lo and identity.x[1] > hi  # spans every point and bar
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "observed (95 % CI)"
    assert fig.layout.title.subtitle.text == "Relative excess loss"  # the quantity, once


def test_mechanism_points_without_an_interval_are_open_and_say_so():
    table = mechanism_frame()
    table.loc[table["task"] == "word_pos", ["observed_low", "observed_high"]] = np.nan
    fig = F.mechanism_figure(table)
    for trace in fig.data:
        if "word_pos" in (trace.name or ""):
            assert trace.marker.symbol[0].endswith("-open") and trace.customdata[0][3] == "no interval"
            assert np.isnan(trace.error_y.array).all()  # no bar, not a zero-width one
        elif " · " in (trace.name or ""):
            assert not trace.marker.symbol[0].endswith("-open") and trace.customdata[0][3].startswith(
                "95 % CI"
            )
    assert "no row has both" in F.mechanism_figure(table.assign(observed=np.nan)).layout.annotations[0].text


def test_mechanism_puts_each_quantity_in_its_own_panel():
    table = mechanism_frame()
    table.loc[table["model"] == "vit-fmnist", "quantity"] = "test loss gap"
    fig = F.mechanism_figure(table)
    assert [a.text for a in fig.layout.annotations[:2]] == ["Relative excess loss", "Test loss gap"]
    assert {t.xaxis for t in fig.data if t.name.endswith("mnist")} == {"x2"}


# ------------------------------------------------------------------------------------------------------------
# 2×2 similarity


def test_similarity_2x2_draws_four_cells_per_factor_with_the_random_baseline():
    table = similarity_frame()
    fig = F.similarity_2x2_figure(table)
    traces = [t for t in _data_traces(fig)]
    assert [(t.name, t.xaxis) for t in traces] == [
        ("same init", "x"), ("other init", "x"), ("same init", "x2"), ("other init", "x2"),
    ]  # fmt: skip
    for trace in traces:
        which = "A" if trace.xaxis == "x" else "B"
        init = trace.name == "same init"
        rows = table[(table["which"] == which) & (table["same_init"] == init)]
        assert np.allclose(trace.y, rows["mean"])
        low, high = _ends(trace)
        assert np.allclose(low, rows["ci_low"]) and np.allclose(high, rows["ci_high"])
        expected_x = np.where(rows["same_task"], 0.0, 1.0) + (-0.12 if init else 0.12)
        assert np.allclose(trace.x, expected_x)
    baselines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(baselines) == 8  # one per cell
    assert sorted({round(s.y0, 3) for s in baselines}) == [0.021, 0.022]
    assert [a.text for a in fig.layout.annotations[:2]] == [F.WHICH_LABELS["A"], F.WHICH_LABELS["B"]]
    assert "top 8 directions" in fig.layout.yaxis.title.text


def test_every_replication_figure_says_why_it_is_blank():
    for build, frame in ((F.rank_sweep_figure, rank_sweep_frame()), (F.head_factorial_figure, head_frame()),
                         (F.mechanism_figure, mechanism_frame()), (F.similarity_2x2_figure, similarity_frame())):  # fmt: skip
        fig = build(frame.iloc[:0])
        assert not fig.data and fig.layout.annotations[0].text.startswith("no ")
