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
