"""app/startup.py: the server's start-up imports the first page's modules in a shared turn, and
`streamlit run streamlit_app.py` serves the file through st.App (its start-up hook) while script runs see the
router."""

import sys
import threading
import time
from pathlib import Path

from app import import_guard, startup

REPO = Path(__file__).resolve().parents[2]


def test_preload_imports_every_module_it_names_and_reports_the_missing():
    assert startup.preload() == []
    for name in startup.PRELOAD:
        assert name in sys.modules
    assert "torch" not in startup.PRELOAD  # torch's first import is import_guard's, after the runs
    assert startup.preload(("asymviz", "no_such_module_here")) == ["no_such_module_here"]


def test_torch_first_import_waits_for_the_preload(tmp_path, monkeypatch):
    """The preload takes a shared turn like a page run: a torch import asked for meanwhile starts after it."""
    events: list[str] = []
    slow = f"slow_preload_{time.monotonic_ns()}"
    (tmp_path / f"{slow}.py").write_text(
        "import time, builtins\nbuiltins._startup_events.append('preload start')\ntime.sleep(0.3)\n"
        "builtins._startup_events.append('preload end')\n"
    )
    torch = f"torch_stand_in_{time.monotonic_ns()}"
    (tmp_path / f"{torch}.py").write_text(
        "import builtins\nbuiltins._startup_events.append('torch import')\nTensor = object\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("builtins._startup_events", events, raising=False)
    thread = threading.Thread(target=startup.preload, args=((slow,),))
    thread.start()
    while not events:  # the preload is under way
        time.sleep(0.01)
    import_guard.import_torch(torch)
    thread.join(timeout=10)
    assert events == ["preload start", "preload end", "torch import"]
    del sys.modules[slow], sys.modules[torch]


def test_streamlit_run_serves_the_router_through_st_app():
    """`streamlit run` looks for an ASGI app by reading the file (no import): it must find `app`, st.App with
    the start-up hook; a script run (`__main__`) defines no `app` and draws the pages (tests/app/test_page_*)."""
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(REPO / "streamlit_app.py")
    assert found.is_asgi_app and found.app_name == "app"
    assert "app = st.App(__file__, lifespan=lifespan)" in (REPO / "streamlit_app.py").read_text()
