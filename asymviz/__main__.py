"""`python -m asymviz ...` is the same as the `asymviz` command."""

from asymviz.cli.main import main

raise SystemExit(main())
