"""asymviz as an installed package: the wheel carries the app and the shipped runs, and works from any folder.

Builds the wheel from this checkout (`pip wheel --no-deps --no-build-isolation`, no network), installs it into
a fresh virtualenv that sees this machine's site-packages for the dependencies, and runs it from a folder that
is not the checkout: `asymviz --version`, the bundle's files, asymviz.paths, the app's Overview page
(AppTest) and `asymviz app` served headless until its health endpoint answers. About 30-40 s on 2 cores.
Also: `python -m asymviz` started beside a folder named `asymviz` (a clone) that shadows the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from streamlit_server import free_port, stop_server

REPO = Path(__file__).resolve().parents[1]


def _clean_env(**extra) -> dict:
    """The environment of a user who has only the installed package: no PYTHONPATH to this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASYMVIZ_STORE")}
    return {**env, "ASYMVIZ_NO_PROGRESS": "1", "ASYMVIZ_WARM_UP": "0", **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        ".",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("asymviz-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, timeout=120
    )
    # --ignore-installed: this machine has an editable asymviz in its site-packages; the venv gets its own
    done = subprocess.run(
        [str(root / "bin" / "pip"), "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
        capture_output=True, text=True, timeout=300, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def _run(venv: Path, args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)


def test_wheel_holds_the_app_and_the_shipped_runs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("streamlit_app.py", "app/__init__.py", "app/components.py", "app/pages/overview.py",
                 "cached_runs/RESULTS.md"):  # fmt: skip
        assert f"asymviz/_bundle/{name}" in names, name
    assert any(
        n.startswith("asymviz/_bundle/cached_runs/minilm_tasks/") and n.endswith("run.json") for n in names
    )
    assert not [n for n in names if "__pycache__" in n or n.startswith("asymviz/_bundle/cached_runs/live/")]
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "cached_runs").rglob("run.json")}
    shipped = {p for p in shipped if not p.startswith("cached_runs/live/")}
    bundled = {n.removeprefix("asymviz/_bundle/") for n in names if n.endswith("/run.json")}
    assert shipped == bundled  # every shipped run, nothing else


def test_installed_version_and_paths_from_another_folder(venv, elsewhere):
    from asymviz import __version__

    done = _run(venv, [str(venv / "bin" / "asymviz"), "--version"], elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asymviz {__version__}"
    code = (
        "import asymviz, asymviz.paths as p; from asymviz.runs import RunStore; "
        "print(asymviz.__file__); print(p.app_script()); print(p.shipped_store()); "
        "print(len(RunStore(p.shipped_store()).list()))"
    )
    done = _run(venv, [str(venv / "bin" / "python"), "-c", code], elsewhere)
    assert done.returncode == 0, done.stderr
    init, script, store, n_runs = done.stdout.split("\n")[:4]
    bundle = Path(init).parent / "_bundle"
    assert str(venv) in init and REPO.as_posix() not in init  # the installed copy, not this checkout
    assert Path(script) == bundle / "streamlit_app.py" and Path(store) == bundle / "cached_runs"
    assert (bundle / "cached_runs" / "RESULTS.md").is_file() and (bundle / "app" / "pages").is_dir()
    assert int(n_runs) > 100  # the shipped runs list from the bundle


def test_installed_app_renders_its_overview_on_the_shipped_runs(venv, elsewhere):
    code = textwrap.dedent("""
        from streamlit.testing.v1 import AppTest
        from asymviz.paths import app_script
        at = AppTest.from_file(str(app_script()), default_timeout=90)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        print(at.title[0].value)
        print(" ".join(m.value for m in at.markdown))
    """)
    done = _run(venv, [str(venv / "bin" / "python"), "-c", code], elsewhere, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verdict" in done.stdout  # the claim check computed from the bundled runs


def test_asymviz_app_serves_from_another_folder(venv, elsewhere):
    port = free_port()
    cmd = [str(venv / "bin" / "asymviz"), "app", "--", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    log = elsewhere / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=elsewhere, env=_clean_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("`asymviz app` did not answer on /_stcore/health: " + log.read_text()[-3000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        stop_server(proc)
    assert "error" not in log.read_text().lower()


def test_python_m_asymviz_beside_a_shadowing_clone(tmp_path):
    """A folder `asymviz/` without __init__.py (a clone's top) in the current folder is found by the path
    finder as a namespace package before an editable install's finder (setuptools appends it to
    sys.meta_path). Simulated here with such a finder for this checkout: the command still works and says
    once what shadows it."""
    clone = tmp_path / "asymviz"
    (clone / "asymviz").mkdir(parents=True)
    (clone / "README.md").write_text("a clone of asymviz\n")
    package = REPO / "asymviz"
    runner = textwrap.dedent(f"""
        import importlib.machinery, importlib.util, runpy, sys

        class Editable:  # what setuptools' editable finder does: the package by name, after the path finder
            @classmethod
            def find_spec(cls, fullname, path=None, target=None):
                if fullname == "asymviz":
                    return importlib.util.spec_from_file_location(
                        fullname, {str(package / "__init__.py")!r}, submodule_search_locations=[{str(package)!r}])
                if fullname.startswith("asymviz."):
                    parts = fullname.split(".")[1:-1]
                    where = "/".join([{str(package)!r}, *parts])
                    return importlib.machinery.PathFinder.find_spec(fullname, [where])
                return None

        sys.path.insert(0, "")  # as `python -m` does: the current folder first
        # right after the path finder, ahead of any real editable install's finder (which maps another checkout)
        sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder) + 1, Editable)
        import asymviz  # the clone's folder, a namespace package: the bug this test guards against
        assert asymviz.__file__ is None, asymviz
        sys.argv = ["asymviz", *sys.argv[1:]]
        runpy.run_module("asymviz", run_name="__main__", alter_sys=True)
    """)
    script = tmp_path / "runner.py"
    script.write_text(runner)
    env = _clean_env()
    from asymviz import __version__

    done = subprocess.run([sys.executable, str(script), "--version"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asymviz {__version__}"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(clone) in warnings[0] and "shadows" in warnings[0], done.stderr
    (tmp_path / "store").mkdir()  # an empty run store (a missing one is an error)
    done = subprocess.run([sys.executable, str(script), "runs", "list", "--store", str(tmp_path / "store"),
                           "--format", "csv"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr  # a command, not only --version, runs on the real package


def test_version_falls_back_without_metadata(monkeypatch):
    import importlib.metadata

    import asymviz

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    text = (REPO / "pyproject.toml").read_text()
    expected = next(line.split('"')[1] for line in text.splitlines() if line.startswith("version"))
    assert asymviz._read_version() == expected
    from asymviz.cli.main import _version

    assert _version() == f"asymviz {asymviz.__version__}"
