"""The Overview's replication sections (issue 13) on run stores made of hand-written run.json files: the claims
of every experiment, the control row at every rank, each experiment's section when its group folder is there,
and a plain list of the experiments that are not."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import app_test, no_errors
from replication_frames import (
    head_frame,
    head_interaction_frame,
    mechanism_frame,
    rank_sweep_frame,
    similarity_frame,
)
from replication_store import TASKS, train_mechanism_runs, write_replication_store, write_table1

from app import cached as _cached
from asymviz import results as R
from asymviz.runs import list_runs

REAL_MECHANISM_FILE = _cached.mechanism_file  # the contract_frames fixture stands it in


@pytest.fixture(scope="module")
def table1_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("table1") / "store"
    write_table1(store, np.random.default_rng(0))
    return store


@pytest.fixture(scope="module")
def full_store(tmp_path_factory):
    return write_replication_store(tmp_path_factory.mktemp("full") / "store")


def _figures(at):
    """The page's Plotly figures, decoded (typed arrays included)."""
    import plotly.io as pio

    return [pio.from_json(f.proto.spec) for f in at.get("plotly_chart")]


def _values(v) -> np.ndarray:
    """A trace's data array: Plotly's JSON writes numeric arrays as base64 typed arrays ({dtype, bdata})."""
    import base64

    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, float)


def _titles(at) -> list[str]:
    return [f.layout.title.text for f in _figures(at)]


VIEWS = ("rank", "head", "mechanism", "similarity")  # the selector's experiments, after "claims"


EXPANDERS = ("rep_rank_open", "rep_head_open", "rep_mech_open", "rep_sim_open")  # components.details keys


def _show(at, view: str):
    """The Overview with the replication selector on `view` ("claims" or an experiment's key), the tables in
    its expanders opened (they are drawn only when open)."""
    for key in EXPANDERS:
        at.session_state[key] = True
    at.segmented_control(key="rep_view").set_value(view).run()
    no_errors(at)
    return at


def _every_view(at) -> dict:
    """What the page shows with the selector on each experiment in turn (the store holds all four): subheaders,
    figure titles (after Table 1's), tables, markdown and info texts, all views together."""
    seen: dict = {"subheaders": [], "titles": [], "tables": [], "markdown": [], "info": []}
    for view in VIEWS:
        _show(at, view)
        seen["subheaders"] += [s.value for s in at.subheader]
        titles = _titles(at)
        assert "on the test split by mode" in titles[0]  # Table 1's chart stays on top in every view
        seen["titles"] += titles[1:]
        seen["tables"] += [d.value for d in at.dataframe]
        seen["markdown"] += [m.value for m in at.markdown]
        seen["info"] += [i.value for i in at.info]
    return seen


def test_without_the_new_folders_the_page_says_which_experiments_are_missing(table1_store):
    at = app_test("overview", store=table1_store)
    at.run()
    no_errors(at)
    missing = " ".join(i.value for i in at.info)
    for title, folder in (("Experiment 2", "minilm_rank/"), ("Experiment 3", "minilm_head/"),
                          ("Experiment 4", "minilm_mechanism/"), ("Experiment 5", "similarity/")):  # fmt: skip
        assert title in missing and f"`{folder}`" in missing
    assert "`minilm_tasks/`" not in missing  # only the folders that are not there
    assert not at.subheader  # no section of an experiment the store does not hold
    assert len(at.get("plotly_chart")) == 1  # Table 1's chart only


def test_every_claim_of_every_experiment_is_asymviz_results(table1_store):
    """The claims table holds claim_table(claim_comparisons(...)) of each group, as `runs compare --group`."""
    at = app_test("overview", store=table1_store)
    at.run()
    no_errors(at)
    claims = next(d.value for d in at.dataframe if "claim" in d.value)
    runs = R.counted_runs(list_runs(table1_store), group="minilm_tasks")
    expected = R.claim_table(R.claim_comparisons(runs, "test_accuracy"))
    assert len(claims) == len(expected) == 10  # five claims at r = 8 and r = 16: the control pairs at both
    assert list(claims["claim"]) == list(expected["claim"])
    assert np.allclose(claims["difference"], expected["diff_mean"].round(4))
    assert [v.split()[-1] for v in claims["verdict"]] == list(expected["verdict"])
    assert list(claims["holds"]) == list(expected["holds"])
    ci = [f"{lo:+.3f} to {hi:+.3f}" for lo, hi in zip(expected["ci_low"], expected["ci_high"], strict=True)]
    assert list(claims["95 % CI"]) == ci
    # with these seeds the control is clearly below every LoRA mode
    assert set(claims.loc[claims["claim"].str.contains("head only"), "verdict"]) == {"▲ better"}


@pytest.mark.parametrize("rank", [8, 16])
def test_the_control_row_is_in_the_table_and_the_chart_at_every_rank(table1_store, rank):
    """head_only runs are planned at the first rank only; the Overview shows them at r = 16 too."""
    at = app_test("overview", store=table1_store)
    at.run()
    at.segmented_control(key="ov_rank").set_value(rank).run()
    no_errors(at)
    table = at.dataframe[0].value
    control = table[table["mode"] == "head only (no adapter)"]
    assert list(control["task"]) == list(TASKS)
    runs = list_runs(table1_store)
    means = runs[runs["mode"] == "head_only"].groupby("task")["test_accuracy"].mean()
    assert [float(v.split(" ± ")[0]) for v in control["mean ± s.e."]] == [round(means[t], 3) for t in TASKS]
    chart = _figures(at)[0]
    floor = next(
        t for t in chart.data if t.name.startswith("head only") and t.mode == "markers"
    )  # not the key
    assert np.allclose(_values(floor.y), [means[t] for t in TASKS])
    lora = runs[(runs["mode"] == "ab") & (runs["rank"] == rank)].groupby("task")["test_accuracy"].mean()
    bar = next(t for t in chart.data if t.name == "A&B")
    assert np.allclose(_values(bar.y), [lora[t] for t in TASKS])  # the bars are the chosen rank's


@pytest.fixture()
def contract_frames(monkeypatch):
    """The four analyses stood in for by frames in their contract's columns (the library functions are other
    branches' work): the page's own wiring, figures and tables are what is tested."""
    from app import cached, replication

    monkeypatch.setattr(replication, "available", lambda exp: True)
    monkeypatch.setattr(cached, "rank_sweep", lambda store, group, metric: (rank_sweep_frame(), _trend()))
    monkeypatch.setattr(
        cached, "head_factorial", lambda store, groups, metric: (head_frame(), head_interaction_frame())
    )
    monkeypatch.setattr(
        cached,
        "mechanism_file",
        lambda store, group: mechanism_frame() if group == "minilm_mechanism" else None,
    )
    monkeypatch.setattr(cached, "similarity_2x2", lambda store, group: (similarity_frame(), _contrasts()))
    monkeypatch.setattr(
        replication, "_trend_lines", lambda trend: ["**B only − A only against d/r**: a line."]
    )
    monkeypatch.setattr(replication, "_interaction_lines", lambda table: ["**Interaction**: a line."])
    monkeypatch.setattr(replication, "_mechanism_lines", lambda table: ["**Mechanism test**: a line."])


def test_the_mechanism_test_shows_every_shipped_table_the_vits_too(tmp_path, contract_frames, monkeypatch):
    """Experiment 4 reads minilm_mechanism/mechanism.csv and, where the store has it, vit_mechanism's (the same
    columns): both tables one below the other, the ViT's local model path by its last part."""
    import pandas as pd

    from app import cached

    monkeypatch.setattr(cached, "mechanism_file", REAL_MECHANISM_FILE)
    store = write_replication_store(tmp_path / "store")
    frame = mechanism_frame()
    minilm, vit = frame[frame["model"] == "minilm"], frame[frame["model"] != "minilm"]
    minilm.to_csv(store / "minilm_mechanism" / cached.MECHANISM_FILE, index=False)
    (store / "vit_mechanism").mkdir()
    vit.assign(model="/somewhere/.carry/vit-fmnist").to_csv(store / "vit_mechanism" / cached.MECHANISM_FILE,
                                                           index=False)  # fmt: skip
    at = app_test("overview", store=store)
    at.run()
    no_errors(at)
    _show(at, "mechanism")
    shown = next(d.value for d in at.dataframe if "predicted" in d.value)
    assert list(shown["model"]) == ["minilm"] * len(minilm) + ["vit-fmnist"] * len(vit)
    assert list(shown["group"]) == ["minilm_mechanism"] * len(minilm) + ["vit_mechanism"] * len(vit)
    assert np.allclose(shown["observed"], pd.concat([minilm, vit])["observed"])
    mech = next(f for f in _figures(at) if f.layout.title.text.startswith("Mechanism test"))
    assert any("vit-fmnist" in (t.name or "") for t in mech.data)
    assert not any("/somewhere" in (t.name or "") for t in mech.data)


def _contrasts():
    import pandas as pd

    return pd.DataFrame({"which": ["A"], "contrast": ["same init - other init"], "estimate": [0.7], "ci_low": [0.6],
                         "ci_high": [0.8], "verdict": ["higher"], "n_boot": [100]})  # fmt: skip


def _trend():
    import pandas as pd

    return pd.DataFrame({"task": ["fine_foods"], "mode": ["b_only"], "baseline": ["a_only"]})


def test_with_every_folder_each_section_draws_its_figure_and_verdicts(full_store, contract_frames):
    at = app_test("overview", store=full_store)
    at.run()
    no_errors(at)
    assert at.segmented_control(key="rep_view").options == [
        "Every claim",
        *(f"Experiment {n}" for n in range(2, 6)),
    ]
    assert not at.subheader and len(_titles(at)) == 1  # the claims first: Table 1's chart only
    assert not any("Not in this run store" in i.value for i in at.info)
    seen = _every_view(at)
    assert seen["subheaders"] == [
        "Experiment 2: B only's edge against d/r", "Experiment 3: the head factorial",
        "Experiment 4: the mechanism test", "Experiment 5: similarity, the 2×2 design",
    ]  # fmt: skip
    titles = seen["titles"]
    assert len(titles) == 4  # one figure per experiment, each under its own view
    assert titles[0].startswith("B only's edge against d/r") and titles[1].startswith("Head factorial")
    assert titles[2].startswith("Mechanism test") and titles[3].startswith("Similarity of adapters")
    tables = seen["tables"]
    rank = next(t for t in tables if "d_over_r" in t)
    expected = rank_sweep_frame()
    assert len(rank) == len(expected) and list(rank["difference"]) == list(expected["diff_mean"].round(4))
    assert "A&B − head only" in set(rank["comparison"])  # the control row
    interaction = next(t for t in tables if "contrast" in t)
    assert np.allclose(interaction["interaction"], head_interaction_frame()["interaction"].round(4))
    head = next(t for t in tables if "head" in t and "comparison" in t)
    assert "A&B − head only" in set(head["comparison"])
    assert any("B only − A only against d/r" in m for m in seen["markdown"])


def test_the_tables_behind_each_figure_are_drawn_only_when_their_expander_is_open(
    full_store, contract_frames
):
    at = app_test("overview", store=full_store)
    at.run()
    for view, column in (("rank", "d_over_r"), ("head", "head"), ("mechanism", "predicted"),
                         ("similarity", "same_init")):  # fmt: skip
        at.segmented_control(key="rep_view").set_value(view).run()
        no_errors(at)
        assert not any(column in d.value for d in at.dataframe), view  # closed: not computed, not sent
        _show(at, view)
        assert any(column in d.value for d in at.dataframe), view
        for key in EXPANDERS:
            at.session_state[key] = False


def test_the_selector_shows_one_view_at_a_time_and_the_claims_again(full_store, contract_frames):
    """Each experiment's view holds its own subheader and figure and no other's; back on "claims" the claims
    table is what it was on the first run."""
    at = app_test("overview", store=full_store)
    at.run()
    no_errors(at)
    first = next(d.value for d in at.dataframe if "claim" in d.value)
    for view, title in zip(VIEWS, ("B only's edge", "Head factorial", "Mechanism test", "Similarity of"),
                           strict=True):  # fmt: skip
        _show(at, view)
        assert len(at.subheader) == 1 and at.subheader[0].value.startswith("Experiment")
        titles = _titles(at)
        assert len(titles) == 2 and titles[1].startswith(title)  # Table 1's chart, then this experiment's
        assert not any("claim" in d.value for d in at.dataframe)
    _show(at, "claims")
    assert not at.subheader and len(_titles(at)) == 1
    again = next(d.value for d in at.dataframe if "claim" in d.value)
    assert again.equals(first)


def test_with_every_folder_and_the_library_as_it_is(full_store):
    """No stand-ins: the d/r sweep, the head factorial and the 2×2 similarity run asymviz's own analyses on the
    hand-written runs (and tiny adapters); the mechanism test, which needs a base model, ships no table here,
    so the page says so and offers to measure it. The numbers shown are the library's."""
    import pandas as pd

    from asymviz.head_factorial import head_interaction_table
    from asymviz.rank_sweep import rank_sweep_table
    from asymviz.similarity_design import design_runs, similarity_2x2, similarity_pairs

    at = app_test("overview", store=full_store, timeout=300)
    at.run()
    no_errors(at)
    seen = _every_view(at)
    assert len(seen["subheaders"]) == 4
    assert len(seen["titles"]) == 3  # d/r, head factorial, 2×2 (no mechanism table yet)
    assert any("asymviz mechanism minilm_mechanism" in i for i in seen["info"])
    _show(at, "mechanism")
    assert at.button(key="rep_mech_go")
    runs = list_runs(full_store)
    tables = seen["tables"]
    rank = next(t for t in tables if "d_over_r" in t)
    expected = rank_sweep_table(R.counted_runs(runs, group="minilm_rank"), source=runs)  # d_in from Table 1
    assert list(rank["difference"]) == list(expected["diff_mean"].round(4))
    assert set(rank["d_over_r"]) == {384.0, 48.0, 6.0}
    both = pd.concat(
        [R.counted_runs(runs, group=g) for g in ("minilm_tasks", "minilm_head")], ignore_index=True
    )
    interaction = next(t for t in tables if "contrast" in t and "interaction" in t)
    assert np.allclose(interaction["interaction"], head_interaction_table(both)["interaction"].round(4))
    cells = next(t for t in tables if "same_init" in t)
    expected = similarity_2x2(similarity_pairs(design_runs(runs[runs["group"] == "similarity"])))
    assert np.allclose(cells["mean"], expected["mean"])
    a = cells[cells["which"] == "A"].set_index(["same_init", "same_task"])["mean"]
    assert a[(True, False)] > a[(False, True)]  # by construction A follows its init, not its task


@pytest.fixture(scope="module")
def mechanism_store(tmp_path_factory, train_assets):
    return train_mechanism_runs(
        tmp_path_factory.mktemp("mech") / "store", train_assets["bert"], train_assets["task"]
    )


def _mechanism_points(at):
    fig = next(f for f in _figures(at) if f.layout.title.text.startswith("Mechanism test"))
    return {
        t.name.split(" · ")[0]: (_values(t.x)[0], _values(t.y)[0])
        for t in fig.data
        if " · " in (t.name or "")
    }


def test_the_mechanism_test_is_measured_on_request_and_read_from_its_file(mechanism_store):
    """Without mechanism.csv the page measures on a click (asymviz.mechanism.mechanism_table, the base model on
    the CPU); with the file the experiment ships, it draws the file at once. Both show the library's numbers."""
    from app.cached import MECHANISM_FILE
    from asymviz.mechanism import mechanism_table

    expected = mechanism_table(mechanism_store / "minilm_mechanism")
    assert expected["observed"].notna().all()
    want = {label: (p, o) for label, p, o in zip(expected["mode"].map({"b_only": "B only", "a_only": "A only"}),
                                                 expected["predicted"], expected["observed"], strict=True)}  # fmt: skip
    at = app_test("overview", store=mechanism_store, timeout=300)
    at.run()
    no_errors(at)
    _show(at, "mechanism")
    assert not any(f.layout.title.text.startswith("Mechanism test") for f in _figures(at))  # nothing yet
    at.button(key="rep_mech_go").click().run()
    no_errors(at)
    shown = _mechanism_points(at)
    assert shown.keys() == want.keys()
    for label, (p, o) in want.items():
        assert shown[label] == pytest.approx((p, o))
    assert any("**Mechanism test" in m.value for m in at.markdown)  # mechanism_lines

    expected.to_csv(mechanism_store / "minilm_mechanism" / MECHANISM_FILE, index=False)
    at = app_test("overview", store=mechanism_store, timeout=300)
    at.run()
    no_errors(at)
    _show(at, "mechanism")
    assert not at.button  # nothing to measure: the shipped table is drawn
    lines = [m.value for m in at.markdown if "**Mechanism test" in m.value]
    assert lines and not any("nan" in line for line in lines)  # the file's empty texts read back as ""
    shown = _mechanism_points(at)
    for label, point in want.items():
        assert shown[label] == pytest.approx(point)
