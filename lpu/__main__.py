"""``python -m lpu``: the command line (see `lpu.cli`)."""

from .cli import main

raise SystemExit(main())
