"""The app's cold start and page switches, in a real headless browser, until the first Plotly chart is drawn.

    PYTHONPATH=. python bench/bench_app_browser.py [--reps 3] [--old REF] [--store cached_runs]

Each repetition starts a fresh `streamlit run streamlit_app.py` server (as `asymviz app` does, warm-up thread
on) on the shipped run store and opens it in a new tab of Debian's headless chromium driven by Playwright
(as tests/app/test_browser.py does). With --old, the app and library as of REF (`git archive` of app/,
asymviz/, streamlit_app.py and .streamlit/ into a temporary folder) run too, on the same store, old and new
alternating within each repetition, so that a busy machine slows both alike. Measured, wall clock:
  cold start  : from starting the server process to the first Plotly chart drawn on the Overview (an SVG
                inside `.js-plotly-plot`), and the part of it after the server answered /_stcore/health
  page switch : from the click on a sidebar link to the page's heading shown, its script run finished and
                (on pages that draw one) a Plotly chart drawn; the first visit of each page ("cold") and
                the second ("warm") are reported apart
With --floor, a third app runs too: Streamlit alone, the same sidebar links and headings, each page one
small Plotly chart and nothing else (FLOOR_PAGE), with the repository's .streamlit/ settings: what Streamlit's
own boot, websocket, script run and first render cost on this machine, the bound under any app.
Prints median [min, max] over repetitions and the load average, and writes bench/results/app_browser.json
(`bench/perf_table.py`). Targets (issue 15): cold start ≤ 2 s, page switch ≤ 0.3 s. Never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))
from results_io import Figure, Row, write_results  # noqa: E402
from streamlit_server import start_server, stop_server  # noqa: E402  (tests/streamlit_server.py)

CHROMIUM = os.environ.get("ASYMVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# (sidebar link, the page's h1), visited in this order
SWITCHES = [("Compare runs", "Compare runs"), ("Theory", "Theory"), ("Overview", "asymviz")]
CHART = "[data-testid=stMain] .js-plotly-plot .main-svg"
NOT_RUNNING = "() => document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') === 'notRunning'"


# the floor app (--floor): a router and three pages with the headings SWITCHES waits for, one tiny chart each
FLOOR_ROUTER = """import streamlit as st

st.set_page_config(layout="wide")
pages = [st.Page(f"pages/{name}.py", title=title, default=name == "overview")
         for name, title in (("overview", "Overview"), ("compare", "Compare runs"), ("theory", "Theory"))]
st.navigation(pages).run()
"""
FLOOR_PAGE = """import plotly.graph_objects as go
import streamlit as st

st.title({heading!r})
st.plotly_chart(go.Figure(go.Bar(x=["A&B", "B only", "A only"], y=[0.9, 0.89, 0.8])), theme=None)
"""


def floor_app(dest: Path) -> Path:
    """The floor app (FLOOR_ROUTER, FLOOR_PAGE) under dest, with the repository's .streamlit/ settings."""
    import shutil

    (dest / "pages").mkdir(parents=True, exist_ok=True)
    (dest / "streamlit_app.py").write_text(FLOOR_ROUTER)
    for name, heading in (("overview", "asymviz"), ("compare", "Compare runs"), ("theory", "Theory")):
        (dest / "pages" / f"{name}.py").write_text(FLOOR_PAGE.format(heading=heading))
    shutil.copytree(REPO / ".streamlit", dest / ".streamlit", dirs_exist_ok=True)
    return dest


def checkout(ref: str, dest: Path) -> Path:
    """The app as of `ref` under dest (returns dest)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "app", "asymviz", "streamlit_app.py",
                              ".streamlit"], capture_output=True, check=True)  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def start(store: Path, log: Path, code: Path = REPO) -> tuple[subprocess.Popen, str, float, float]:
    """(process, url, t0 = when it was started, seconds until /_stcore/health answered) of the app in `code`."""
    t0 = time.perf_counter()
    try:
        proc, url = start_server(store, log, code=code, timeout=120, poll_s=0.02)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    return proc, url, t0, time.perf_counter() - t0


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


def measure(browser, store: Path, log: Path, code: Path) -> dict:
    """One fresh server of the app in `code`: cold start, then each page of SWITCHES visited twice."""
    proc, url, t0, ready = start(store, log, code)
    out: dict = {"health": ready, "switches": {}, "charted": {}}
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
        out["cold"], out["after_health"] = t_chart - t0, t_chart - t_open
        page.wait_for_function(NOT_RUNNING, timeout=60_000)
        for visit in ("cold", "warm"):
            for link, title in SWITCHES:
                elapsed, has_chart = switch(page, link, title)
                out["switches"].setdefault(link, {})[visit] = elapsed
                out["charted"][link] = has_chart
        context.close()
    finally:
        stop_server(proc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--old", default=None, help="git ref of the old app to measure side by side")
    parser.add_argument("--store", default=str(REPO / "cached_runs"))
    parser.add_argument("--floor", action="store_true", help="also measure Streamlit alone (FLOOR_PAGE)")
    parser.add_argument("--json", default="app_browser", help="write bench/results/<name>.json ('' for none)")
    args = parser.parse_args()
    if args.reps < 3:
        parser.error("--reps must be at least 3")
    import tempfile

    from playwright.sync_api import sync_playwright

    load_start = os.getloadavg()[0]
    log = Path(tempfile.gettempdir()) / "asymviz-bench-app-browser.log"
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        codes = {"old": checkout(args.old, Path(tmp) / "old")} if args.old else {}
        codes["new"] = REPO
        if args.floor:
            codes["floor"] = floor_app(Path(tmp) / "floor")
        runs: dict[str, list[dict]] = {label: [] for label in codes}
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for rep in range(args.reps):
            for label, code in codes.items():
                r = measure(browser, Path(args.store), log, code)
                runs[label].append(r)
                print(f"rep {rep + 1} {label}: cold start {r['cold']:.2f} s (server ready {r['health']:.2f} s), "
                      "switches " + ", ".join(f"{k} {v['cold']:.2f}/{v['warm']:.2f}" for k, v in r["switches"].items()),
                      flush=True)  # fmt: skip
        browser.close()

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):5.2f} [{min(xs):.2f}, {max(xs):.2f}]"

    def series(label: str, key: str, link: str | None = None, visit: str | None = None) -> list[float]:
        return [r[key] if link is None else r["switches"][link][visit] for r in runs[label]]

    labels = list(runs)
    print(f"\n{'what (s: median [min, max])':<44}" + "".join(f"{lab:>22}" for lab in labels))
    lines = [("cold start to the first chart", "cold", None, None),
             ("  of which: server start to /_stcore/health", "health", None, None),
             ("  of which: opening the URL to the chart", "after_health", None, None)]  # fmt: skip
    charted = runs["new"][-1]["charted"]
    for link in runs["new"][0]["switches"]:
        for visit in ("cold", "warm"):
            lines.append((f"switch to {link} ({visit}{', chart' if charted[link] else ', no chart'})", "switches",
                          link, visit))  # fmt: skip
    for name, key, link, visit in lines:
        print(f"{name:<44}" + "".join(f"{fmt(series(lab, key, link, visit)):>22}" for lab in labels))
    print(
        f"load average: {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs"
    )

    def fig(label: str, key: str, visit: str | None = None) -> Figure | None:
        if label not in runs:
            return None
        if visit is None:
            return Figure(series(label, key))
        return Figure([r["switches"][link][visit] for r in runs[label] for link in r["switches"]])

    note_old = f"old = {args.old}, alternating with new on one machine; " if args.old else ""

    def floor(key: str, visit: str | None = None) -> str:
        """'; floor (Streamlit alone, FLOOR_PAGE) 1.23 s' where --floor measured it."""
        if "floor" not in runs:
            return ""
        xs = series("floor", key) if visit is None else fig("floor", key, visit).runs
        return f"; Streamlit alone with one small chart (--floor): {statistics.median(xs):.2f} s median"

    def by_page(label: str, visit: str) -> str:
        return ", ".join(f"{link} {statistics.median(series(label, 'switches', link, visit)):.2f} s"
                         for link in runs[label][0]["switches"])  # fmt: skip

    health = statistics.median(series("new", "health"))
    rows = [Row("app: cold start (server process started) to the first Plotly chart drawn, headless Chromium",
                "s", fig("new", "cold"), fig("old", "cold"), 2.0,
                note=f"{note_old}server answered /_stcore/health after {health:.2f} s (median){floor('cold')}")]  # fmt: skip
    for visit, what in (("warm", "second visit"), ("cold", "first visit of a page")):
        old_pages = f"; old: {by_page('old', visit)}" if "old" in runs else ""
        rows.append(Row(f"app: page switch, click to the page drawn (incl. its chart), {what}", "s",
                        fig("new", "switches", visit), fig("old", "switches", visit), 0.3,
                        note=f"{note_old}each page once per repetition, medians: {by_page('new', visit)}"
                        f"{old_pages}{floor('switches', visit)}"))  # fmt: skip
    if args.json:
        command = "PYTHONPATH=. python bench/bench_app_browser.py " + " ".join(sys.argv[1:])
        print(
            "wrote", write_results(args.json, command.strip(), rows, load_start, extra={"charted": charted})
        )


if __name__ == "__main__":
    main()
