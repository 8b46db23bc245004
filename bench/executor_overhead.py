"""Overhead of the subprocess executor over a bare ``subprocess.run``.

Runs ``true`` N times (default 200) through :class:`SubprocessExecutor` (start + wait:
new session, pipe, log sink, reaping thread, sampler, the end-of-run sweep) and N times
through ``subprocess.run(["true"])``, and prints both totals and the overhead per run.

    python bench/executor_overhead.py [--runs 200] [--pin] [--user agent-job]

``--user`` (root only) runs every executor run as that account, as a root agent runs
jobs; the bare runs stay the caller's, so the difference includes the switch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import anyio

from executors import PreparedRun, SubprocessExecutor
from executors.identity import JobUser, lookup_user


async def through_executor(runs: int, workdir: Path, pin: bool, user: JobUser | None) -> float:
    executor = SubprocessExecutor()
    cores = frozenset({min(os.sched_getaffinity(0))}) if pin else frozenset()
    began = time.perf_counter()
    for _ in range(runs):
        run = PreparedRun(
            command=["true"],
            cwd=workdir,
            log_path=workdir / "job.log",
            marker=uuid.uuid4().hex,
            cores=cores,
            inherit_env=("PATH",),
            user=user,
        )
        result = await (await executor.start(run)).wait()
        assert result.succeeded, result
    return time.perf_counter() - began


def bare(runs: int) -> float:
    began = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["true"], check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pin", action="store_true", help="pin each run to one core")
    parser.add_argument("--user", help="run as this account (root only)")
    args = parser.parse_args()
    user = lookup_user(args.user) if args.user else None
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o711)  # the job user passes through to its cwd
        executor_total = anyio.run(through_executor, args.runs, Path(tmp), args.pin, user)
    bare_total = bare(args.runs)
    overhead = (executor_total - bare_total) / args.runs * 1000
    print(f"processes on this host:   {len(os.listdir('/proc'))} /proc entries")
    print(f"runs as:                  {user.name if user else 'the caller'}")
    print(
        f"SubprocessExecutor:       {executor_total:.3f} s for {args.runs} runs"
        f" ({executor_total / args.runs * 1000:.2f} ms/run)"
    )
    print(
        f"subprocess.run(['true']): {bare_total:.3f} s for {args.runs} runs"
        f" ({bare_total / args.runs * 1000:.2f} ms/run)"
    )
    print(f"overhead per run:         {overhead:.2f} ms")


if __name__ == "__main__":
    main()
