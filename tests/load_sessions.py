"""Many browser sessions on the app at once (Playwright's async API, one headless Chromium, one context each).

Used by tests/app/test_load.py (asserts every session got its page and result) and bench/bench_app_load.py
(reports the latencies). A session is one visitor: it opens the app, goes to its page and waits for the
result a person would wait for (a figure, an upload's spectrum, a live fine-tune's end). Its latency is the
time from opening the app to that result. Server start-up and tiny-model set-up are in app_helpers and here.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamlit_server import REPO, free_port, start_server, stop_server  # noqa: F401 (re-exported)

CHROMIUM = os.environ.get("ASYMVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
NOT_RUNNING = "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"
TIMEOUT_MS = 300_000  # generous: a shared 2-core machine under load serves ten sessions slowly
ERROR = '[data-testid="stAlertContentError"]'
EXCEPTION = '[data-testid="stException"]'


@dataclass
class Outcome:
    """What one session saw: kind, latency from opening the app to its result (s), and what went wrong."""

    kind: str
    index: int
    latency_s: float | None = None
    error: str | None = None
    notes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# the server


# ----------------------------------------------------------------------------------------------------------
# page helpers (async)


async def wait_idle(page, timeout: float = TIMEOUT_MS) -> None:
    """Until Streamlit finished the current script run, and stays finished for a moment."""
    for _ in range(2):
        await page.wait_for_timeout(200)
        await page.wait_for_function(NOT_RUNNING, timeout=timeout)


async def open_app(page, url: str) -> None:
    await page.goto(url, timeout=TIMEOUT_MS)
    await page.locator("h1").filter(has_text="asymviz").first.wait_for(timeout=TIMEOUT_MS)
    await wait_idle(page)


async def go_to(page, link: str, title: str) -> None:
    await page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    await page.locator("h1").filter(has_text=title).first.wait_for(timeout=TIMEOUT_MS)
    await wait_idle(page)


async def figure(page, title: str, timeout: float = TIMEOUT_MS) -> None:
    await page.locator(".gtitle").filter(has_text=title).first.wait_for(timeout=timeout)


async def check_clean(page) -> None:
    if await page.locator(EXCEPTION).count():
        raise AssertionError(
            "the page shows a traceback: " + (await page.locator(EXCEPTION).first.inner_text())[:300]
        )
    if await page.locator(ERROR).count():
        text = " | ".join((await page.locator(ERROR).first.inner_text()).splitlines())
        raise AssertionError("the page shows an error: " + text[:400])


async def select(page, label: str, option: str) -> None:
    await page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    await page.get_by_role("option", name=option).first.click()
    await wait_idle(page)


async def fill(page, kind: str, label: str, text: str) -> None:
    box = page.locator(f'[data-testid="{kind}"]').filter(has_text=label).first.locator("input")
    await box.fill(text)
    await box.press("Enter")
    await wait_idle(page)


# ----------------------------------------------------------------------------------------------------------
# sessions


async def overview(page, url: str, setup: dict) -> dict:
    await open_app(page, url)
    await figure(page, "on the test split by mode")
    return {}


async def compare(page, url: str, setup: dict) -> dict:
    await open_app(page, url)
    await go_to(page, "Compare runs", "Compare runs")
    await figure(page, "train loss")
    return {}


async def upload(page, url: str, setup: dict) -> dict:
    await open_app(page, url)
    await go_to(page, "Inspect an adapter", "Inspect an adapter")
    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(setup["zip"]))
    await figure(page, "Singular values per module")
    return {}


async def live(page, url: str, setup: dict, seed: int) -> dict:
    """Start a tiny live fine-tune (three modes, a few steps, its own seed) and wait until the page lists its
    request as completed."""
    await open_app(page, url)
    await go_to(page, "Live fine-tune", "Live fine-tune")
    await select(page, "Model", "another model (id or local folder)")
    await fill(page, "stTextInput", "Model id or local folder", str(setup["model"]))
    await select(page, "Task", "my CSV/JSONL file")
    await fill(page, "stTextInput", "File with text and label columns", str(setup["task"]))
    await fill(page, "stNumberInput", "rank r", "4")
    await fill(page, "stNumberInput", "training steps", str(setup.get("steps", 2)))
    await fill(page, "stNumberInput", "seed", str(seed))
    toggle = page.locator('[data-testid="stCheckbox"]').filter(has_text="demo settings").first
    if await toggle.locator("input").is_checked():
        await toggle.locator("label").click()
        await wait_idle(page)
    for _attempt in range(
        3
    ):  # a click during a busy rerun can be dropped by Streamlit: check the request landed
        await page.get_by_role("button", name="Start").click()
        await wait_idle(page)
        await check_clean(page)
        if await _request_written(setup["store"], seed, 30):
            return {"seed": seed}
    raise AssertionError(f"the fine-tune request with seed {seed} never reached the queue")


async def _request_written(store: Path, seed: int, timeout_s: float) -> bool:
    """Whether the live page wrote a request (a JSON list of configs) with `seed` into the store's queue."""
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in (Path(store) / ".queue" / "requests").glob("request-*.json"):
            try:
                if any(c.get("seed") == seed for c in json.loads(path.read_text())):
                    return True
            except (OSError, ValueError):
                pass
        await asyncio.sleep(0.5)
    return False


SESSIONS = {"overview": overview, "compare": compare, "upload": upload, "live": live}


async def _one(browser, url: str, kind: str, index: int, setup: dict, stagger_s: float) -> Outcome:
    out = Outcome(kind, index)
    await asyncio.sleep(stagger_s * index)
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)  # ten sessions on a 2-core machine: clicks wait for busy reruns
    page = await context.new_page()
    t0 = time.perf_counter()
    try:
        fn = SESSIONS[kind]
        out.notes = await (
            fn(page, url, setup, seed=setup.get("seed_offset", 0) + 100 + index)
            if kind == "live"
            else fn(page, url, setup)
        )
        await wait_idle(page)
        await check_clean(page)
        out.latency_s = time.perf_counter() - t0
    except Exception as exc:  # recorded, asserted by the caller
        out.error = f"{type(exc).__name__}: {' | '.join(str(exc).splitlines())[:500]}"
    finally:
        await context.close()
    return out


async def run_sessions(url: str, kinds: list[str], setup: dict, stagger_s: float = 0.2) -> list[Outcome]:
    """Every session in `kinds` at once (started `stagger_s` apart), each in its own browser context."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            return list(await asyncio.gather(*(_one(browser, url, k, i, setup, stagger_s)
                                               for i, k in enumerate(kinds))))  # fmt: skip
        finally:
            await browser.close()


MIX = ["overview", "compare", "live", "upload", "overview", "live", "compare", "live", "overview", "compare"]


def wait_for_jobs(store: Path, n: int, timeout: float) -> list:
    """Until `n` jobs are in the store's queue and none is queued or running; returns them."""
    from asymviz import jobs

    deadline = time.time() + timeout
    while time.time() < deadline:
        listed = jobs.list_jobs(store)
        if len(listed) >= n and not [j for j in listed if j.status in jobs.ACTIVE]:
            return listed
        time.sleep(0.5)
    raise AssertionError(
        f"jobs still active after {timeout} s: {[(j.label, j.status) for j in jobs.list_jobs(store)]}"
    )
