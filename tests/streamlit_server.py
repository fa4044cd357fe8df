"""Start and stop the app's server, `streamlit run streamlit_app.py`, for the browser tests and benchmarks.

    proc, url = start_server(store, log_path)            # returns once /_stcore/health answers
    ...
    stop_server(proc)

Used by tests/app/test_browser.py, tests/load_sessions.py (tests/app/test_load.py, bench/bench_app_load.py) and
bench/bench_app_browser.py (which also serves an older copy of the app: `code`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    store: Path, log_path: Path, code: Path = REPO, timeout: float = 90, poll_s: float = 0.05
) -> tuple[subprocess.Popen, str]:
    """`streamlit run streamlit_app.py` of the app in `code` on a free localhost port, reading the run store
    `store`, its output in `log_path`; returns (process, url) once /_stcore/health answers (polled every
    poll_s seconds). Raises RuntimeError with the log's end if it does not within `timeout` seconds or exits."""
    port = free_port()
    env = {**os.environ, "ASYMVIZ_STORE": str(store), "PYTHONPATH": str(code)}
    log = open(log_path, "wb")  # noqa: SIM115 (the server's lifetime)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()  # the child holds its own copy of the descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(poll_s)
        if proc.poll() is not None:
            break
    stop_server(proc)
    raise RuntimeError("the streamlit server did not start: " + Path(log_path).read_text()[-2000:])


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 15 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
