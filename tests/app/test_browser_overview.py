"""The Overview's replication sections in a real headless browser (Playwright driving Debian's chromium against
`streamlit run`, as tests/app/test_browser.py), on a store that holds every experiment's group folder.

    python -m pytest tests/app/test_browser_overview.py -s      # screenshots in test-artifacts/

Picks each experiment in the replication's selector and checks that its figure is painted (its title drawn by
Plotly in the page) with no traceback, and saves a screenshot of the whole page and of each figure
(test-artifacts/40_*.png) to look at.
"""

from __future__ import annotations

import pytest
from replication_store import train_mechanism_runs, write_replication_store
from test_browser import ARTIFACTS, browser, heading, no_exception, server, shot, wait_idle  # noqa: F401

pytestmark = pytest.mark.browser

FIGURES = (  # (the section's heading, the start of its figure's title)
    ("Experiment 2", "B only's edge against d/r"),
    ("Experiment 3", "Head factorial"),
    ("Experiment 4", "Mechanism test"),
    ("Experiment 5", "Similarity of adapters"),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory, train_assets):
    """The store the server reads (test_browser's `server` fixture takes it): every group folder, with the
    mechanism test's table written by `asymviz mechanism` from real tiny-BERT runs."""
    from asymviz.mechanism import mechanism_table

    root = write_replication_store(tmp_path_factory.mktemp("browser_rep") / "store", mechanism_runs=False)
    train_mechanism_runs(root, train_assets["bert"], train_assets["task"])
    mechanism_table(root / "minilm_mechanism").to_csv(
        root / "minilm_mechanism" / "mechanism.csv", index=False
    )
    return root


def test_every_replication_figure_is_painted(browser, server):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    url, _ = server
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.goto(url)
    heading(page, "asymviz").wait_for(timeout=60_000)
    wait_idle(page, timeout=180_000)  # the claims' bootstraps and the 2×2's similarities on the first visit
    for section, title in FIGURES:  # one experiment at a time: its button in the replication's selector
        page.locator("[data-testid=stButtonGroup] button").filter(has_text=section).first.click()
        wait_idle(page, timeout=180_000)
        page.locator("h3").filter(has_text=section).first.wait_for(timeout=60_000)
        figure = (
            page.locator(".js-plotly-plot").filter(has=page.locator(".gtitle").filter(has_text=title)).first
        )
        figure.scroll_into_view_if_needed()
        figure.wait_for(timeout=60_000)
        figure.screenshot(path=str(ARTIFACTS / f"40_{section.lower().replace(' ', '_')}.png"))
    no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert page.get_by_text("Not in this run store").count() == 0
    shot(page, "40_overview_replication")
    context.close()
