"""`python -m asymviz ...` is the same as the `asymviz` command."""

from asymviz.cli import main

raise SystemExit(main())
