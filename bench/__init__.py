"""The bench suite: `python -m bench [--quick] [BENCH ...]` (see bench/run.py)."""
