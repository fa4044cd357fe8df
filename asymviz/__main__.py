"""`python -m asymviz ...` is the same as the `asymviz` command.

Started from the folder that holds a clone named `asymviz`, Python takes that clone's top folder (no
__init__.py) for a namespace package `asymviz` ahead of an editable install's finder; the submodules still come
from the install, but the package's own names (``__version__``, the lazy exports) are missing. Then this
module loads the real package in its place and says, in one line, how to avoid the shadowing.
"""

import sys
from pathlib import Path


def _unshadow() -> None:
    import importlib.util

    package = sys.modules.get("asymviz")
    if package is None or getattr(package, "__file__", None):  # a regular package: nothing shadows it
        return
    here = Path(__file__).resolve().parent
    shadow = ", ".join(str(p) for p in getattr(package, "__path__", [])) or "a folder named asymviz"
    print(f"warning: {shadow} (a folder without __init__.py, e.g. a clone of asymviz) shadows the installed "
          f"package; using {here}: run asymviz from another folder to silence this", file=sys.stderr)  # fmt: skip
    spec = importlib.util.spec_from_file_location(
        "asymviz", here / "__init__.py", submodule_search_locations=[str(here)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["asymviz"] = module
    spec.loader.exec_module(module)


_unshadow()

from asymviz.cli.main import main  # noqa: E402 (after the package is the real one)

raise SystemExit(main())
