"""Let `python -m agent` behave like the `agent` command."""

from agent.cli import main

raise SystemExit(main())
