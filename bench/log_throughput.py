"""Throughput of the log path and the agent's memory while a job prints 1 GiB.

A job prints SIZE bytes (default 1 GiB) of 1 KiB lines (``--line 0``: one line without
a newline) through :class:`SubprocessExecutor`, with a line callback counting lines.
Prints MiB/s, and the growth of the agent's RSS (peak, sampled every 20 ms) over its
RSS before the run. ``--cap`` sets ``max_log_bytes`` (default 1 MiB; ``--cap 0``
writes everything, needs SIZE free disk). The same pipeline into ``/dev/null`` is
timed first as the ceiling of what the job itself can produce.

    python bench/log_throughput.py [--size 1073741824] [--line 1024] [--cap 1048576]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import psutil

from executors import PreparedRun, RunResult, SubprocessExecutor

MIB = 1 << 20


def job_command(size: int, line: int) -> str:
    if line <= 0:
        return f"head -c {size} /dev/zero | tr '\\0' x"
    return f"yes \"$(head -c {line - 1} /dev/zero | tr '\\0' x)\" | head -c {size}"


async def run_job(command: str, workdir: Path, cap: int) -> tuple[RunResult, float, int, int]:
    lines = [0]

    def count(_: str) -> None:
        lines[0] += 1

    me = psutil.Process()
    before = me.memory_info().rss
    peak = [before]
    run = PreparedRun(
        command=command,
        cwd=workdir,
        log_path=workdir / "job.log",
        marker=uuid.uuid4().hex,
        inherit_env=("PATH",),
        max_log_bytes=cap if cap > 0 else 1 << 62,
        on_line=count,
    )
    began = time.perf_counter()
    handle = await SubprocessExecutor().start(run)
    async with anyio.create_task_group() as tg:

        async def watch_memory() -> None:
            while True:
                peak[0] = max(peak[0], me.memory_info().rss)
                await anyio.sleep(0.02)

        tg.start_soon(watch_memory)
        result = await handle.wait()
        tg.cancel_scope.cancel()
    return result, time.perf_counter() - began, peak[0] - before, lines[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 30)
    parser.add_argument("--line", type=int, default=1024)
    parser.add_argument("--cap", type=int, default=MIB)
    args = parser.parse_args()
    command = job_command(args.size, args.line)

    began = time.perf_counter()
    subprocess.run(f"{command} > /dev/null", shell=True, check=True)
    ceiling = args.size / MIB / (time.perf_counter() - began)

    with tempfile.TemporaryDirectory() as tmp:
        result, seconds, growth, lines = anyio.run(run_job, command, Path(tmp), args.cap)
        log_size = (Path(tmp) / "job.log").stat().st_size
    assert result.succeeded, result
    assert result.log_bytes == args.size, result
    print(f"job alone into /dev/null: {ceiling:8.0f} MiB/s")
    print(
        f"through the log sink:     {args.size / MIB / seconds:8.0f} MiB/s"
        f" ({args.size / MIB:.0f} MiB in {seconds:.2f} s, {lines} lines,"
        f" log file {log_size / MIB:.1f} MiB, truncated={result.log_truncated})"
    )
    print(f"agent peak RSS growth:    {growth / MIB:8.1f} MiB")


if __name__ == "__main__":
    main()
