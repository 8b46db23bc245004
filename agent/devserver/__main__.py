"""`python -m agent.devserver`: the same as `agent devserver`."""

from agent.devserver.cli import main

raise SystemExit(main())
