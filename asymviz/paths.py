"""Where asymviz finds what it ships: the app and the shipped runs, in a checkout or in an installed wheel.

A checkout keeps them at the top of the repository, beside the package::

    <repo>/asymviz/  <repo>/app/  <repo>/streamlit_app.py  <repo>/cached_runs/

A wheel built from it (setup.py) carries copies under the package, so an installed asymviz needs no checkout::

    <site-packages>/asymviz/_bundle/{app/, streamlit_app.py, cached_runs/}

Every caller that needs one of these paths asks here (the app's default store, `asymviz app`, `asymviz demo`),
so the two layouts are known in one place. Nothing here imports anything heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

from asymviz.errors import AsymvizError

PACKAGE = Path(__file__).resolve().parent
BUNDLE = PACKAGE / "_bundle"  # the installed layout (setup.py's build step writes it)
CHECKOUT = PACKAGE.parent  # the repository layout (the package sits at the top of a clone)
BUNDLE_ITEMS = ("streamlit_app.py", "app", "cached_runs")  # what setup.py copies into _bundle/


def app_root() -> Path:
    """The folder that holds `streamlit_app.py` and `app/` side by side.

    Returns
    -------
    Path
        ``asymviz/_bundle`` of an installed wheel, else the checkout the package was imported from.

    Raises
    ------
    AsymvizError
        When neither layout has the app (e.g. a wheel built without setup.py's bundle step).
    """
    for root in (BUNDLE, CHECKOUT):
        if (root / "streamlit_app.py").is_file() and (root / "app").is_dir():
            return root
    raise AsymvizError(
        f"cannot find the asymviz app (streamlit_app.py and app/) in {BUNDLE} or {CHECKOUT}: "
        "reinstall asymviz from a wheel built with `pip wheel .`, or run from a clone of the repository"
    )


def app_script() -> Path:
    """The Streamlit entry point, ``<app_root()>/streamlit_app.py`` (raises AsymvizError as app_root does)."""
    return app_root() / "streamlit_app.py"


def shipped_store() -> Path:
    """The run store shipped with asymviz (``cached_runs/``): the app's store when the user names none.

    ``$ASYMVIZ_STORE`` wins when set (the app's tests and deployments point it at another store); else the
    installed bundle's copy, else the checkout's.

    Returns
    -------
    Path
        A folder that ``asymviz.runs.RunStore`` reads. It may be read-only (site-packages); write live runs
        to :func:`live_store` instead.

    Raises
    ------
    AsymvizError
        When no shipped store exists (a wheel built without the bundle, or a checkout missing cached_runs/).
    """
    if os.environ.get("ASYMVIZ_STORE"):
        return Path(os.environ["ASYMVIZ_STORE"])
    for root in (BUNDLE, CHECKOUT):
        if (root / "cached_runs" / "RESULTS.md").is_file():
            return root / "cached_runs"
    raise AsymvizError(f"no shipped runs (cached_runs/) in {BUNDLE} or {CHECKOUT}: reinstall asymviz")


def is_installed_bundle(path: Path | str) -> bool:
    """Whether `path` lies inside the installed bundle (site-packages: not ours to write into)."""
    try:
        Path(path).resolve().relative_to(BUNDLE.resolve())
    except ValueError:
        return False
    return True


def live_store(store: Path | str) -> Path:
    """Where live fine-tunes started on `store` are written.

    The shipped store of a checkout keeps them in its git-ignored ``live/`` folder; the installed bundle's store
    is not written to (it belongs to the installation): ``$ASYMVIZ_HOME/live``, default
    ``~/.local/share/asymviz/live`` (``$XDG_DATA_HOME`` honoured). Any other store is its own live store.
    """
    store = Path(store)
    if is_installed_bundle(store):
        home = (
            os.environ.get("ASYMVIZ_HOME")
            or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "asymviz"
        )
        return Path(home) / "live"
    try:
        shipped = store.resolve() == (CHECKOUT / "cached_runs").resolve()
    except OSError:
        shipped = False
    return store / "live" if shipped else store
