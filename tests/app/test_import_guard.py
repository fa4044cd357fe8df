"""app/import_guard.py: torch's first import waits for script runs in progress, and new runs wait for it."""

import sys
import threading
import time

from app import import_guard


def _stand_in(tmp_path, monkeypatch, events: list) -> str:
    """A module that takes 0.3 s to import and records when it starts and ends (torch is already imported)."""
    name = f"slow_stand_in_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text(
        "import time, builtins\n"
        "builtins._guard_events.append('import start')\n"
        "time.sleep(0.3)\n"
        "Tensor = object\n"
        "builtins._guard_events.append('import end')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("builtins._guard_events", events, raising=False)
    return name


def test_the_import_waits_for_a_run_and_new_runs_wait_for_the_import(tmp_path, monkeypatch):
    events: list[str] = []
    name = _stand_in(tmp_path, monkeypatch, events)
    in_run = threading.Event()

    def first_run():
        with import_guard.script_run():
            events.append("run 1 start")
            in_run.set()
            time.sleep(0.3)
            events.append("run 1 end")

    def second_run():
        time.sleep(0.4)  # starts while the import is under way
        with import_guard.script_run():
            events.append("run 2 start")

    threads = [threading.Thread(target=first_run), threading.Thread(target=second_run)]
    threads[0].start()
    in_run.wait()
    threads[1].start()
    import_guard.import_torch(name)  # as the warm-up thread does
    for t in threads:
        t.join(timeout=10)
    assert events == ["run 1 start", "run 1 end", "import start", "import end", "run 2 start"]
    assert import_guard.imported(name)
    import_guard.import_torch(name)  # the second call returns at once
    assert events.count("import start") == 1
    del sys.modules[name]


def test_a_page_that_needs_torch_imports_it_before_its_turn(tmp_path, monkeypatch):
    events: list[str] = []
    name = _stand_in(tmp_path, monkeypatch, events)
    original = import_guard.import_torch
    monkeypatch.setattr(import_guard, "import_torch", lambda: original(name))
    with import_guard.script_run(needs_torch=True):
        events.append("run")
    assert events == ["import start", "import end", "run"]
    del sys.modules[name]


def test_pages_marked_without_torch_never_import_it():
    """The router lets the pages of streamlit_app.PAGES_WITHOUT_TORCH run without importing torch first (~1-2 s
    on a first visit); that is only safe if they never import it themselves (app/import_guard.py says why).
    Every view of each such page (the Overview's replication views), over the shipped runs, in a fresh interpreter
    without the warm-up thread."""
    import ast
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    tree = ast.parse((repo / "streamlit_app.py").read_text())
    (marked,) = [ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "PAGES_WITHOUT_TORCH" for t in n.targets)]  # fmt: skip
    assert marked == {"Overview", "Theory"}
    script = """
import sys
sys.path[:0] = ["tests", "tests/app"]
from app_helpers import app_test, no_errors
for page in ("overview", "theory"):
    at = app_test(page, store="cached_runs", timeout=300)
    at.run()
    no_errors(at)
    if page == "overview":  # every view of the replication section, its tables' expanders open
        for key in ("rep_rank_open", "rep_head_open", "rep_mech_open", "rep_sim_open"):
            at.session_state[key] = True
        for view in ("claims", "rank", "head", "mechanism", "similarity"):
            at.segmented_control(key="rep_view").set_value(view).run()
            no_errors(at)
            assert at.subheader or view == "claims", view
    assert "torch" not in sys.modules, page
print("ok")
"""
    env = dict(os.environ, ASYMVIZ_WARM_UP="0", PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_a_background_analysis_job_imports_torch_through_the_guard_before_its_work(monkeypatch):
    """Pages start alignment and diagnostics jobs in background threads; their work imports torch. Should that be
    torch's first import, it must take import_guard's exclusive turn (no script run in progress), as the
    warm-up's does, or a concurrent page's scipy call fails mid-import."""
    from app import background

    events = []
    monkeypatch.setattr(import_guard, "import_torch", lambda: events.append("import torch"))
    job = background._job(
        ("test-guard", id(events)), "guard test", lambda job: events.append("work"), start=True
    )
    deadline = time.monotonic() + 10
    while job.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.error is None and events == ["import torch", "work"]
