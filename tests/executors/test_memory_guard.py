"""The memory guard with real jobs: over its limit a run ends EndKind.MEMORY.

Whichever guard the host offers runs: a cgroup (the kernel enforces the limit) when the
agent has a delegated cgroup v2 with the memory controller, else RSS sampling. The test
id and the ``memory_guard`` property (junit XML, ``-rP`` output) say which one ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

from executors import EndKind, MpiExecutor, PreparedRun, RunResult, SubprocessExecutor
from executors.cgroup import detect_cgroup, job_cgroup_base

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_leftovers")]

MakeRun = Callable[..., PreparedRun]
MIB = 1 << 20

#: The guard this host should use, as far as a read-only look can tell (for test ids).
EXPECTED = "cgroup" if detect_cgroup().base is not None else "rss"

#: Touches ``total`` MiB in 64 MiB chunks (bytearray zero-fills: every page is written),
#: printing the amount held after each chunk, then sleeps.
HOG = """\
import sys, time
chunks = []
print("allocating", flush=True)
while len(chunks) * 64 < {total}:
    chunks.append(bytearray(64 << 20))
    print("holding", len(chunks) * 64, flush=True)
time.sleep({sleep})
"""


class Arrivals:
    """A line callback noting when each line arrived (monotonic)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.monotonic(), line))

    def last_holding_at_most(self, mib: int) -> float:
        """When the last "holding N" line with N ≤ ``mib`` arrived (the limit was crossed
        after it), else when "allocating" did."""
        times = [
            at
            for at, line in self.lines
            if line == "allocating" or (line.startswith("holding") and int(line.split()[1]) <= mib)
        ]
        return times[-1]


def guard_in_use() -> str:
    return "cgroup" if job_cgroup_base().base is not None else "rss"


async def run_hog(
    make_run: MakeRun, total_mib: int, limit_mib: int, sleep: float
) -> tuple[RunResult, Arrivals, float]:
    arrivals = Arrivals()
    run = make_run(
        ["python3", "-c", HOG.format(total=total_mib, sleep=sleep)],
        memory_limit_bytes=limit_mib * MIB,
        on_line=arrivals,
        kill_grace=10.0,  # a memory stop does not wait for it
    )
    with anyio.fail_after(60):
        handle = await SubprocessExecutor().start(run)
        result = await handle.wait()
    return result, arrivals, time.monotonic()


@pytest.mark.parametrize("guard", [EXPECTED])
async def test_a_gibibyte_over_a_200_mib_limit_ends_memory(
    make_run: MakeRun, guard: str, record_property: Callable[[str, object], None]
) -> None:
    result, arrivals, ended = await run_hog(make_run, total_mib=1024, limit_mib=200, sleep=30)
    crossed_after = arrivals.last_holding_at_most(200)
    record_property("memory_guard", result.memory_guard)
    record_property("seconds_from_crossing_to_end", round(ended - crossed_after, 3))
    print(f"memory guard: {result.memory_guard}; ended {ended - crossed_after:.2f} s after")

    assert result.memory_guard == guard_in_use()
    assert result.kind is EndKind.MEMORY
    assert result.memory_limit_hit
    assert result.memory_limit_bytes == 200 * MIB
    assert result.memory_peak_bytes is not None
    # The end comes within 2 s of crossing the limit, plus the time of one 64 MiB chunk
    # (the crossing happened after the last line at or below the limit).
    assert ended - crossed_after < 2.5
    if result.memory_guard == "rss":
        assert result.memory_peak_bytes > 200 * MIB
        assert result.memory_peak_bytes == result.peak_rss_bytes


async def test_a_run_under_its_limit_is_not_stopped(make_run: MakeRun) -> None:
    result, _, _ = await run_hog(make_run, total_mib=64, limit_mib=200, sleep=1.2)
    assert result.kind is EndKind.EXITED and result.exit_code == 0
    assert not result.memory_limit_hit
    assert result.memory_limit_bytes == 200 * MIB
    assert result.memory_guard == guard_in_use()
    assert result.peak_rss_bytes > 64 * MIB  # sampled while it held the chunk


async def test_no_limit_no_guard(make_run: MakeRun) -> None:
    with anyio.fail_after(20):
        handle = await SubprocessExecutor().start(make_run("exit 0"))
        result = await handle.wait()
    assert result.succeeded
    assert result.memory_guard is None and result.memory_limit_bytes is None
    assert not result.memory_limit_hit


async def test_memory_of_the_whole_tree_counts(make_run: MakeRun) -> None:
    """Two children of 160 MiB each: neither is over 200 MiB, the tree is."""
    child = HOG.format(total=160, sleep=30).replace('"', "'")
    command = f'python3 -c "{child}" & python3 -c "{child}" & wait'
    lines = Arrivals()
    run = make_run(command, memory_limit_bytes=200 * MIB, on_line=lines)
    with anyio.fail_after(60):
        handle = await SubprocessExecutor().start(run)
        result = await handle.wait()
    assert result.kind is EndKind.MEMORY
    assert result.memory_limit_hit


@pytest.mark.mpi
async def test_mpi_ranks_together_over_the_limit(make_run: MakeRun, mpich_mpiexec: str) -> None:
    """Two ranks of 160 MiB under mpiexec: the limit is the whole run's."""
    run = make_run(
        ["python3", "-c", HOG.format(total=160, sleep=30)],
        ranks=2,
        memory_limit_bytes=200 * MIB,
    )
    with anyio.fail_after(60):
        result = await (await MpiExecutor(mpiexec=mpich_mpiexec).start(run)).wait()
    assert result.kind is EndKind.MEMORY
    assert result.memory_guard == guard_in_use()
