"""The Theory page: renders, reacts to its settings, and its numbers come from asymviz.theory / asymviz.bound."""

import pytest
from app_helpers import app_test, no_errors

from asymviz.theory import TheoryConfig, expected_excess_loss


@pytest.fixture
def at():
    at = app_test("theory")
    at.run()
    no_errors(at)
    return at


def test_renders_the_simulation_and_the_bound(at):
    assert at.title[0].value.startswith("Theory")
    labels = [m.label for m in at.metric]
    assert "B only: mean relative excess loss" in labels and "A only: mean relative excess loss" in labels
    assert len(at.get("plotly_chart")) == 1  # the histogram; the rest on demand (keeps page switches fast)
    at.toggle(key="th_more").set_value(True).run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 3  # + closed forms against the rank, input spectrum
    at.segmented_control(key="th_view").set_value("Generalisation bound calculator").run()
    no_errors(at)
    assert len(at.get("plotly_chart")) == 1


def test_closed_forms_follow_the_widgets(at):
    at.slider(key="th_r").set_value(8).run()
    at.slider(key="th_k").set_value(8).run()  # inputs on k = r directions: a random A loses nothing
    no_errors(at)
    ref = expected_excess_loss(TheoryConfig(d_in=64, d_out=64, r=8, spectrum="low_rank", k=8))
    assert ref.set_index("mode").loc["b_only", "relative_expected"] == 0.0
    captions = [c.value for c in at.caption]
    assert "closed form 0.000" in captions and "closed form 0.875 (exact)" in captions
    at.selectbox(key="th_spectrum").set_value("power_law").run()
    no_errors(at)
    assert any(c.endswith("(approximate)") for c in (c.value for c in at.caption))


def test_bound_calculator_reacts(at):
    at.segmented_control(key="th_view").set_value("Generalisation bound calculator").run()
    at.selectbox(key="bd_preset").set_value("custom").run()
    at.number_input(key="bd_m").set_value(2).run()
    at.number_input(key="bd_din").set_value(10).run()
    at.number_input(key="bd_dout").set_value(20).run()
    at.number_input(key="bd_r").set_value(1).run()
    no_errors(at)
    table = at.dataframe[-1].value.set_index("mode")
    assert table["trainable_params"].to_dict() == {
        "A&B": 60,
        "B only (random A frozen)": 40,
        "A only (random B frozen)": 20,
    }
