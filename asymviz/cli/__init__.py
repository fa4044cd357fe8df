"""The asymviz command line (`asymviz ...`, `python -m asymviz ...`); see asymviz.cli.main."""

from asymviz.cli.main import main

__all__ = ["main"]
