"""Run the benches and print one table: figure, floor (measured in the same run), ratio,
target, pass/miss. Every figure is a ratio to a floor measured in this run.

    python -m bench [--quick] [BENCH ...]      (or: python bench/run.py ...)

Benches: overhead, overhead-ufdl, throughput, log, noisy, upload, idle, pickup,
contention (default: all, in that order). ``--quick`` runs a short version of each (a
few seconds each; overhead-ufdl still starts the real backend, ~7 s) to check that the
suite works, not to measure.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: import the package from the repo
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import b_data, b_idle, b_jobs
from bench.common import Outcome, compile_agent, kill_leftovers, machine, table

BENCHES: dict[str, Callable[[bool], Outcome]] = {
    "overhead": b_jobs.overhead,
    "overhead-ufdl": b_jobs.overhead_ufdl,
    "throughput": b_jobs.throughput,
    "log": b_data.log,
    "noisy": b_jobs.noisy,
    "upload": b_data.upload,
    "idle": b_idle.idle,
    "pickup": b_idle.pickup,
    "contention": b_jobs.contention,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("benches", nargs="*", metavar="BENCH", help=", ".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="short smoke version of each")
    args = parser.parse_args(argv)
    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    chosen = args.benches or list(BENCHES)
    print(machine(), flush=True)
    print(compile_agent(), flush=True)
    began = time.perf_counter()
    outcomes = []
    for name in chosen:
        print(
            f"[{time.perf_counter() - began:6.1f} s] {name}{' (quick)' if args.quick else ''} ...",
            flush=True,
        )
        started = time.perf_counter()
        try:
            outcome = BENCHES[name](args.quick)
        except Exception as exc:  # one broken bench must not hide the others' figures
            traceback.print_exc()
            outcome = Outcome(name)
            outcome.row(f"failed: {type(exc).__name__}: {exc}"[:120], target="runs", passed=False)
        finally:
            for left in kill_leftovers():
                print(f"    killed a process the bench left running: {left}", flush=True)
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
        for note in outcome.notes:
            print(f"    {note}", flush=True)
    total = time.perf_counter() - began
    print()
    print(machine())
    print(table([row for outcome in outcomes for row in outcome.rows]))
    print()
    for outcome in outcomes:
        for note in outcome.notes:
            print(f"- {outcome.name}: {note}")
    timings = ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes)
    missed = sorted({r.bench for o in outcomes for r in o.rows if r.passed is False})
    print(
        f"\nwall time {total:.0f} s ({timings}){'; quick: not a measurement' if args.quick else ''}"
    )
    print(f"missed: {', '.join(missed) if missed else 'none'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
