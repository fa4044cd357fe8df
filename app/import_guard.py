"""torch's first import in the server never overlaps a page's script run.

    with import_guard.script_run(needs_torch=page.title in TORCH_PAGES):   # the router, around every run
        page.run()
    import_guard.import_torch()                                            # the warm-up thread

Why: scipy (1.15+) asks whether an argument is a torch tensor by reading `sys.modules["torch"].Tensor`. While
another thread is importing torch, that module is partially initialised and scipy raises "partially
initialized module 'torch' has no attribute 'Tensor'". Measured (bench/bench_app_browser.py, load average 16):
the warm-up thread's import of torch overlapped the Overview's statistics, and the page showed that error
instead of its chart. So script runs take a shared turn and torch's first import an exclusive one: the import
waits for the runs in progress to finish and new runs wait for the import (about a second, once per server). A
page that needs torch imports it here, before its run takes its turn; so does the warm-up, so that the first
visit to such a page usually finds it imported.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_turns = threading.Condition()
_running = 0  # script runs in progress
_importers = 0  # threads waiting to import torch, or importing it (new runs wait for them)


def imported(name: str = "torch", attribute: str = "Tensor") -> bool:
    """Whether a module is fully imported (a partially initialised one lacks `attribute` yet)."""
    return _importers == 0 and hasattr(sys.modules.get(name), attribute)


def import_torch(name: str = "torch", attribute: str = "Tensor") -> None:
    """Import torch (`name`: tests use a stand-in) once no script run is in progress; new runs wait until it
    is done. Call it outside script_run (a run waiting for itself would wait forever)."""
    global _importers
    if imported(name, attribute):
        return
    with _turns:  # held during the import: no run starts meanwhile, other importers wait here
        _importers += 1
        try:
            _turns.wait_for(lambda: _running == 0)
            importlib.import_module(name)
        finally:
            _importers -= 1
            _turns.notify_all()


@contextmanager
def script_run(needs_torch: bool = False) -> Iterator[None]:
    """One page's script run: torch imported first if the page needs it, then a shared turn."""
    global _running
    if needs_torch:
        import_torch()
    with _turns:
        _turns.wait_for(lambda: _importers == 0)
        _running += 1
    try:
        yield
    finally:
        with _turns:
            _running -= 1
            _turns.notify_all()
