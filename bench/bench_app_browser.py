"""The app's cold start and page switches, in a real headless browser, until the first Plotly chart is drawn.

    PYTHONPATH=. python bench/bench_app_browser.py [--reps 3] [--store cached_runs]

Each repetition starts a fresh `streamlit run streamlit_app.py` server (as `asymviz app` does, warm-up thread
on) on the shipped run store and opens it in a new tab of Debian's headless chromium driven by Playwright
(as tests/app/test_browser.py does). Measured, wall clock:
  cold start  : from starting the server process to the first Plotly chart drawn on the Overview (an SVG
                inside `.js-plotly-plot`), and the part of it after the server answered /_stcore/health
  page switch : from the click on a sidebar link to the page's heading shown, its script run finished and
                (on pages that draw one) a Plotly chart drawn; the first visit of each page ("cold") and
                the second ("warm") are reported apart
Prints median [min, max] over repetitions and the load average, and writes bench/results/app_browser.json
(`bench/perf_table.py`). Targets (issue 15): cold start ≤ 2 s, page switch ≤ 0.3 s. Never asserted.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import Figure, Row, write_results  # noqa: E402

CHROMIUM = os.environ.get("ASYMVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# (sidebar link, the page's h1), visited in this order
SWITCHES = [("Compare runs", "Compare runs"), ("Theory", "Theory"), ("Overview", "asymviz")]
CHART = "[data-testid=stMain] .js-plotly-plot .main-svg"
NOT_RUNNING = "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, log: Path) -> tuple[subprocess.Popen, str, float, float]:
    """(process, url, t0 = when it was started, seconds until /_stcore/health answered)."""
    port = free_port()
    env = {**os.environ, "ASYMVIZ_STORE": str(store), "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url, t0, time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("the streamlit server did not start within 120 s: " + log.read_text()[-2000:])


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def heading(page, text: str):
    return page.locator("h1").filter(has_text=text).first


def switch(page, link: str, title: str) -> tuple[float, bool]:
    """Seconds from the click to the page drawn (heading, script finished, a chart if it has one)."""
    t = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=link).first.click()
    heading(page, title).wait_for(timeout=60_000)
    page.wait_for_function(NOT_RUNNING, timeout=60_000)
    charted = page.locator(CHART).count() > 0
    if charted:
        page.locator(CHART).first.wait_for(state="visible", timeout=60_000)
    elapsed = time.perf_counter() - t
    page.wait_for_timeout(300)  # let a follow-up rerun (a widget's default) start and finish
    page.wait_for_function(NOT_RUNNING, timeout=60_000)
    return elapsed, charted


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--store", default=str(REPO / "cached_runs"))
    parser.add_argument("--json", default="app_browser", help="write bench/results/<name>.json ('' for none)")
    args = parser.parse_args()
    if args.reps < 3:
        parser.error("--reps must be at least 3")
    from playwright.sync_api import sync_playwright

    load_start = os.getloadavg()[0]
    cold: list[float] = []
    after_health: list[float] = []
    health: list[float] = []
    switches: dict[str, dict[str, list[float]]] = {}
    charted: dict[str, bool] = {}
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "asymviz-bench-app-browser.log"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for rep in range(args.reps):
            proc, url, t0, ready = start_server(Path(args.store), log)
            try:
                context = browser.new_context(viewport={"width": 1366, "height": 900})
                page = context.new_page()
                t_open = time.perf_counter()
                page.goto(url)
                try:
                    page.locator(CHART).first.wait_for(state="visible", timeout=120_000)
                except Exception:
                    page.screenshot(path=str(log.with_suffix(".png")))
                    raise SystemExit(f"no chart within 120 s: see {log.with_suffix('.png')} and {log}") from None
                t_chart = time.perf_counter()
                cold.append(t_chart - t0)
                after_health.append(t_chart - t_open)
                health.append(ready)
                page.wait_for_function(NOT_RUNNING, timeout=60_000)
                for visit in ("cold", "warm"):
                    for link, title in SWITCHES:
                        elapsed, has_chart = switch(page, link, title)
                        switches.setdefault(link, {}).setdefault(visit, []).append(elapsed)
                        charted[link] = has_chart
                context.close()
            finally:
                stop_server(proc)
            print(f"rep {rep + 1}: cold start {cold[-1]:.2f} s (server ready {ready:.2f} s), switches "
                  + ", ".join(f"{k} {v['cold'][-1]:.2f}/{v['warm'][-1]:.2f}" for k, v in switches.items()),
                  flush=True)  # fmt: skip
        browser.close()

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):5.2f} [{min(xs):.2f}, {max(xs):.2f}]"

    print(f"\n{'what':<44} {'s: median [min, max]':>22}")
    print(f"{'cold start to the first chart':<44} {fmt(cold):>22}")
    print(f"{'  of which: server start to /_stcore/health':<44} {fmt(health):>22}")
    print(f"{'  of which: opening the URL to the chart':<44} {fmt(after_health):>22}")
    for link, v in switches.items():
        for visit in ("cold", "warm"):
            label = f"switch to {link} ({visit}{', chart' if charted[link] else ', no chart'})"
            print(f"{label:<44} {fmt(v[visit]):>22}")
    print(
        f"load average: {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs"
    )

    rows = [Row("app: cold start (server process started) to the first Plotly chart drawn, headless Chromium",
                "s", Figure(cold), target=2.0,
                note=f"server answered /_stcore/health after {statistics.median(health):.2f} s (median); "
                     f"opening the URL to the chart {statistics.median(after_health):.2f} s")]  # fmt: skip
    warm_all = [x for v in switches.values() for x in v["warm"]]
    cold_all = [x for v in switches.values() for x in v["cold"]]
    rows.append(Row("app: page switch, click to the page drawn (incl. its chart), second visit", "s",
                    Figure(warm_all), target=0.3, note="pages: " + ", ".join(switches),
                    extra={k: v["warm"] for k, v in switches.items()}))  # fmt: skip
    rows.append(Row("app: page switch, first visit of a page", "s", Figure(cold_all), target=0.3,
                    note="pages: " + ", ".join(switches), extra={k: v["cold"] for k, v in switches.items()}))  # fmt: skip
    if args.json:
        command = "PYTHONPATH=. python bench/bench_app_browser.py " + " ".join(sys.argv[1:])
        print("wrote", write_results(args.json, command.strip(), rows, load_start,
                                     extra={"charted": charted}))  # fmt: skip


if __name__ == "__main__":
    main()
