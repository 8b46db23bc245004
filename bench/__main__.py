"""`python -m bench`: run the bench suite (see bench/run.py)."""

from bench.run import main

raise SystemExit(main())
