"""The whole app in a real headless browser: Playwright driving Debian's chromium against `streamlit run`.

    python -m pytest tests/test_browser.py -m browser -s      # needs: apt-get install -y chromium; pip install playwright

Starts the server on a free localhost port with an empty temporary run store, opens every page, uploads an
adapter .zip on the inspector page and waits for its spectrum figure, starts a tiny live fine-tune and waits
for it to finish. Screenshots go to test-artifacts/ (git-ignored), with timings.json: the time from starting
the server to the first painted page, and page switches (cold and warm). Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from app_helpers import REPO, write_bert_like_adapter, zip_folder
from streamlit_server import start_server, stop_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("ASYMVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
PAGES = [  # (link text in the sidebar, the page's title)
    ("Overview", "asymviz"),
    ("Compare runs", "Compare runs"),
    ("Inspect an adapter", "Inspect an adapter"),
    ("Live fine-tune", "Live fine-tune"),
    ("Theory", "Theory"),
    ("Alignment", "Alignment"),
]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    t0 = time.perf_counter()
    try:
        proc, url = start_server(store, tmp_path_factory.mktemp("server") / "streamlit.log", timeout=60)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    TIMINGS["server_ready_s"] = time.perf_counter() - t0
    yield url, t0
    stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, server):
    """One browser tab on the app, opened as a user would right after the server started (the time from
    starting the server to the first painted page is recorded as start_to_first_paint_s)."""
    ARTIFACTS.mkdir(exist_ok=True)
    url, t0 = server
    context = browser.new_context(viewport={"width": 1366, "height": 900})  # a laptop screen
    page = context.new_page()
    page.goto(url)
    heading(page, "asymviz").wait_for(timeout=60_000)
    TIMINGS["start_to_first_paint_s"] = time.perf_counter() - t0
    wait_idle(page)
    yield page
    context.close()
    (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=1))


_NOT_RUNNING = "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit finished the current script run (and stays finished for a moment: a widget's
    change can start the next run right after)."""
    for _ in range(2):
        page.wait_for_timeout(200)
        page.wait_for_function(_NOT_RUNNING, timeout=timeout)


def shot(page, name: str) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main container, so grow the viewport to
    the content's height first (full_page alone would stop at the window's height)."""
    size = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], [data-testid=stMainBlockContainer]')]"
        ".map(e => e.scrollHeight), 0)"
    )
    page.set_viewport_size(
        {"width": size["width"], "height": int(min(max(height + 80, size["height"]), 9000))}
    )
    page.wait_for_timeout(600)  # Plotly re-lays out to the new size
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def heading(page, text: str):
    return page.locator("h1").filter(has_text=text).first


def go_to(page, link: str, title: str) -> float:
    t = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    heading(page, title).wait_for(timeout=30_000)
    page.wait_for_function(_NOT_RUNNING, timeout=60_000)
    elapsed = time.perf_counter() - t  # from the click to the new page's script run finished (all drawn)
    wait_idle(page)
    return elapsed


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "the page shows a traceback"


def test_first_paint_and_every_page(page, server):
    shot(page, "01_overview")
    no_exception(page)
    warm: dict[str, list[float]] = {}
    for rnd in range(4):  # round 0 is cold (first visit of each page), rounds 1-3 are warm
        for i, (link, title) in enumerate(PAGES[1:] + PAGES[:1], 2):
            elapsed = go_to(page, link, title)
            no_exception(page)
            if rnd == 0:
                TIMINGS[f"switch_cold_{link}"] = elapsed
                shot(page, f"{i:02d}_{link.lower().replace(' ', '_')}")
            else:
                warm.setdefault(link, []).append(elapsed)
    for link, values in warm.items():
        TIMINGS[f"switch_warm_median_{link}"] = sorted(values)[len(values) // 2]
    TIMINGS["load_average_1min"] = os.getloadavg()[0]  # these are wall times on a possibly busy machine
    print(json.dumps(TIMINGS, indent=1))


def test_upload_an_adapter_zip_and_see_its_spectrum(page, server, tmp_path):
    folder = write_bert_like_adapter(tmp_path / "my_adapter", seed=3)
    archive = zip_folder(folder, tmp_path / "my_adapter.zip")
    go_to(page, "Inspect an adapter", "Inspect an adapter")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(archive))
    t = time.perf_counter()
    page.locator(".gtitle").filter(has_text="Singular values per module").first.wait_for(timeout=60_000)
    wait_idle(page)
    TIMINGS["upload_to_spectrum_s"] = time.perf_counter() - t
    no_exception(page)
    assert page.get_by_text("adapted modules").count() >= 1
    shot(page, "10_inspect_uploaded")
    # the figure's PNG download: rendered on the server by kaleido driving the local Chromium, offline
    t = time.perf_counter()
    with page.expect_download(timeout=60_000) as download:
        page.locator('[data-testid="stDownloadButton"] button').filter(has_text="PNG").first.click()
    png = Path(download.value.path()).read_bytes()
    TIMINGS["png_export_s"] = time.perf_counter() - t
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert int.from_bytes(png[16:20], "big") == 2400  # 1200 px at scale 2: kaleido's, not the browser's own
    (ARTIFACTS / "13_spectrum_export.png").write_bytes(png)
    page.get_by_text("Layer × module", exact=True).first.click()
    page.locator(".gtitle").filter(has_text="per layer and module").first.wait_for(timeout=30_000)
    wait_idle(page)
    shot(page, "11_inspect_heatmap")


def test_a_malformed_upload_is_refused_clearly(page, server, tmp_path):
    bad = tmp_path / "not_an_adapter.zip"
    bad.write_bytes(b"this is not a zip archive")
    go_to(page, "Theory", "Theory")  # leave and come back: a fresh uploader
    go_to(page, "Inspect an adapter", "Inspect an adapter")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(bad))
    error = page.locator('[data-testid="stAlertContentError"]').first
    error.wait_for(timeout=30_000)
    assert "not_an_adapter.zip" in error.inner_text()
    no_exception(page)
    shot(page, "12_inspect_bad_upload")


def select(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()
    wait_idle(page)


def fill(page, kind: str, label: str, text: str) -> None:
    """Type into a text or number input (kind: stTextInput, stNumberInput) and commit with Enter."""
    box = page.locator(f'[data-testid="{kind}"]').filter(has_text=label).first.locator("input")
    box.fill(text)
    box.press("Enter")
    wait_idle(page)


def test_a_tiny_live_fine_tune_runs_to_the_end(page, server, tmp_path):
    from app_helpers import write_tiny_model_and_task

    model, task = write_tiny_model_and_task(tmp_path / "tiny")
    go_to(page, "Live fine-tune", "Live fine-tune")
    select(page, "Model", "another model (id or local folder)")
    fill(page, "stTextInput", "Model id or local folder", str(model))
    select(page, "Task", "my CSV/JSONL file")
    fill(page, "stTextInput", "File with text and label columns", str(task))
    fill(page, "stNumberInput", "rank r", "4")
    fill(page, "stNumberInput", "training steps", "3")
    page.locator('[data-testid="stCheckbox"]').filter(has_text="demo settings").first.locator("label").click()
    wait_idle(page)
    shot(page, "20_live_form")
    t = time.perf_counter()
    page.get_by_role("button", name="Start").click()
    page.get_by_text("waiting for its turn").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    shot(page, "21_live_running")
    page.get_by_text("Final test metrics of the finished runs").first.wait_for(timeout=240_000)
    page.wait_for_function("() => document.body.innerText.includes('completed · elapsed')", timeout=60_000)
    TIMINGS["live_three_tiny_runs_s"] = time.perf_counter() - t
    wait_idle(page)
    no_exception(page)
    assert page.get_by_text("failed").count() == 0
    shot(page, "22_live_done")
    # the finished runs are on the other pages now
    go_to(page, "Overview", "asymviz")
    page.locator(".gtitle").filter(has_text="on the test split by mode").first.wait_for(timeout=30_000)
    shot(page, "23_overview_with_runs")
    go_to(page, "Compare runs", "Compare runs")
    page.locator(".gtitle").filter(has_text="train loss").first.wait_for(timeout=30_000)
    shot(page, "24_compare_curves")
    page.get_by_text("Drift from init", exact=True).first.click()
    page.locator(".gtitle").filter(has_text="moved from their init").first.wait_for(timeout=60_000)
    wait_idle(page)
    shot(page, "25_compare_drift")
    no_exception(page)


def test_alignment_of_a_tiny_stored_run(page, server, store, tmp_path):
    from app_helpers import train_tiny_store

    # a real tiny run with its init, in the server's store (the app's run list is cached for 3 s)
    train_tiny_store(store, tmp_path, runs=(("ab", 7),))  # seed 7: told apart from the live test's runs
    page.wait_for_timeout(3500)
    go_to(page, "Alignment", "Alignment")
    run_id = next(p.name for p in store.iterdir() if p.name.startswith("task_base_ab_r4_s7_"))
    select(page, "Run", "task.jsonl.gz · base · ab · r=4 · seed 7 (completed)")
    shot(page, "30_alignment_form")
    t = time.perf_counter()
    page.get_by_role("button", name="Run alignment and diagnostics").click()
    page.locator(".gtitle").filter(has_text="Where A and B point").first.wait_for(timeout=120_000)
    page.locator(".gtitle").filter(has_text="Diagnostics per module").first.wait_for(timeout=60_000)
    wait_idle(page)
    TIMINGS["alignment_tiny_run_click_to_figures_s"] = time.perf_counter() - t
    no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert page.get_by_text("A vs inputs, at init (step 0)").count() >= 1
    assert page.locator(".gtitle").filter(has_text=run_id).count() >= 2  # the figures name the run
    shot(page, "31_alignment_done")
