"""The Overview across experiments (group folders): runs of two experiments are never averaged together, the
experiment picker lists the shipped experiments by number and opens on Table 1, and the test metric follows the
experiment (its default, or the metric the visitor picked where the experiment has it)."""

from __future__ import annotations

import json

import pytest
from app_helpers import app_test, no_errors, write_fake_run

# two experiments of the same model, task and modes (as vit_mnist and vit_mechanism are): the means differ
VALUES = {
    "exp_a": {"ab": (0.50, 0.52), "b_only": (0.48, 0.50)},
    "exp_b": {"ab": (0.90, 0.92), "b_only": (0.88, 0.90)},
}


def _write(store, group: str, values: dict, drop: tuple[str, ...] = ()) -> None:
    for mode, by_seed in values.items():
        for seed, value in enumerate(by_seed):
            folder = write_fake_run(store, group, "fine_foods", mode, seed, value, model="vit")
            if drop:  # an experiment without these metrics (as smollm2_qa has no accuracy)
                data = json.loads((folder / "run.json").read_text())
                data["metrics"] = {k: v for k, v in data["metrics"].items() if k not in drop}
                (folder / "run.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory):
    store = tmp_path_factory.mktemp("two_groups") / "store"
    for group, values in VALUES.items():
        _write(store, group, values)
    return store


def _ab_mean(at) -> str:
    table = at.dataframe[0].value
    return dict(zip(table["mode"], table["mean ± s.e."], strict=True))["A&B"]


def test_runs_of_two_experiments_are_never_averaged_together(two_groups):
    """Every choice of the experiment picker shows that experiment's own mean; none shows the mean over both
    (0.71 here, a number nobody measured: the old "All runs of the store" choice showed it)."""
    at = app_test("overview", store=two_groups)
    at.run()
    no_errors(at)
    picker = at.sidebar.selectbox(key="group")
    assert list(picker.options) == ["exp_a", "exp_b"]  # no pooled choice
    seen = {}
    for group in picker.options:
        at.sidebar.selectbox(key="group").set_value(group).run()
        no_errors(at)
        seen[group] = _ab_mean(at)
    assert seen == {"exp_a": "0.510 ± 0.010", "exp_b": "0.910 ± 0.010"}


def test_a_summary_over_two_experiments_is_refused(two_groups):
    from app import tables
    from asymviz.runs import list_runs

    runs = list_runs(two_groups)
    with pytest.raises(ValueError, match="2 experiments"):
        tables.summary_by_mode(runs, "test_accuracy")
    by_group = tables.summary_by_mode(runs, "test_accuracy", by=("group", "task", "mode"))
    assert list(by_group["mean"].round(3)) == [0.51, 0.49, 0.91, 0.89]


def test_the_picker_lists_experiments_by_number_and_opens_on_table_1(tmp_path):
    store = tmp_path / "store"
    groups = ("similarity", "zz_mine", "smollm2_qa", "minilm_head", "aa_mine", "vit_mnist", "minilm_tasks",
              "vit_mechanism", "minilm_mechanism", "minilm_rank")  # fmt: skip
    for group in groups:
        _write(store, group, {"ab": (0.5,)})
    at = app_test("theory", store=store)  # the sidebar is every page's (no sections to analyse here)
    at.run()
    no_errors(at)
    picker = at.sidebar.selectbox(key="group")
    assert list(picker.options) == [
        "minilm_tasks", "minilm_rank", "minilm_head", "minilm_mechanism", "vit_mechanism", "similarity",
        "vit_mnist", "smollm2_qa", "aa_mine", "zz_mine",
    ]  # fmt: skip
    assert picker.value == "minilm_tasks"


@pytest.fixture(scope="module")
def loss_only(tmp_path_factory):
    """exp_a and exp_b with every metric, exp_loss without accuracy and macro-F1 (its default: test loss)."""
    store = tmp_path_factory.mktemp("loss_only") / "store"
    for group, values in VALUES.items():
        _write(store, group, values)
    _write(store, "exp_loss", VALUES["exp_a"], drop=("test_accuracy", "test_macro_f1"))
    return store


def _switch(at, group: str):
    at.sidebar.selectbox(key="group").set_value(group).run()
    no_errors(at)
    return at.selectbox(key="ov_metric").value


def test_the_metric_follows_the_experiment(loss_only):
    at = app_test("overview", store=loss_only)
    at.run()
    no_errors(at)
    assert at.selectbox(key="ov_metric").value == "test_accuracy"  # exp_a's default
    # a default is not a choice: test loss (exp_loss's only metric) does not stay on an experiment with accuracy
    assert _switch(at, "exp_loss") == "test_loss"
    assert _switch(at, "exp_a") == "test_accuracy"
    # a metric the visitor picked stays where the experiment has it, and gives way to the default where not
    at.selectbox(key="ov_metric").set_value("test_macro_f1").run()
    no_errors(at)
    assert _switch(at, "exp_b") == "test_macro_f1"
    assert _switch(at, "exp_loss") == "test_loss"
    assert _switch(at, "exp_a") == "test_macro_f1"
