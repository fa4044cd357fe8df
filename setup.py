"""Packaging glue beside pyproject.toml (which holds all the metadata): the wheel carries the app and the shipped runs.

    pip wheel --no-deps .         # asymviz-<version>-py3-none-any.whl, ~15 MB, with asymviz/_bundle/

The repository keeps its top-level layout (app/, streamlit_app.py, cached_runs/ beside asymviz/); this build
step copies them under asymviz/_bundle/ in the built package, so that an installed asymviz finds its app
(`streamlit run <site-packages>/asymviz/_bundle/streamlit_app.py` imports `app` from beside it) and its runs
(asymviz.paths.shipped_store). An editable install (`pip install -e .`) copies nothing: there asymviz.paths
finds the checkout itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLE = ("streamlit_app.py", "app", "cached_runs")  # must match asymviz.paths.BUNDLE_ITEMS
CODE_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")
RUNS_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")  # .queue/ and other local state


def _runs_skip(root: Path):
    def ignore(folder, names):
        skipped = set(RUNS_SKIP(folder, names))
        return skipped | ({"live"} if Path(folder) == root else set())

    return ignore


class build_py_with_bundle(build_py):  # noqa: N801 (setuptools' naming)
    """build_py, then copy the app and the shipped runs into <build_lib>/asymviz/_bundle/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "asymviz" / "_bundle"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in BUNDLE:
            source = HERE / name
            if name == "cached_runs":  # without live/: the git-ignored live fine-tunes of this checkout
                shutil.copytree(source, target / name, ignore=_runs_skip(source))
            elif source.is_dir():
                shutil.copytree(source, target / name, ignore=CODE_SKIP)
            elif source.is_file():
                shutil.copy2(source, target / name)
            else:
                raise FileNotFoundError(f"cannot bundle {source}: build the wheel from a full checkout")


setup(cmdclass={"build_py": build_py_with_bundle})
