"""`python -m labkit …` is the `labkit` command (used where the console script is not on PATH)."""

from .commands.main import main

raise SystemExit(main())
