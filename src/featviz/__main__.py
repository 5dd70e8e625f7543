"""``python -m featviz`` runs the command-line interface."""

from featviz.cli import main

raise SystemExit(main())
