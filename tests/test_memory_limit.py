"""How big a job's memory limit is, and the error text a run over it ends with."""

from __future__ import annotations

import pytest

from agent.config import NodeConfig, job_memory_limit_bytes
from agent.outcome import EndReason, ExitCode, Outcome, decide, describe_exit, exit_code
from executors import EndKind, RunResult

MIB = 1 << 20


@pytest.mark.parametrize(
    ("job_mb", "node", "limit"),
    [
        (200, NodeConfig(), 200 * MIB),  # the job's hardware.memory
        (200, NodeConfig(memory=1000, slots=2), 200 * MIB),  # the job's, not the share
        (None, NodeConfig(memory=1000, slots=2), 500 * MIB),  # the slot's share
        (None, NodeConfig(memory=1001, slots=2), 500 * MIB),  # whole MiB
        (None, NodeConfig(memory=1, slots=4), 1 * MIB),  # never a zero limit
        (None, NodeConfig(memory=4096), 4096 * MIB),
        (None, NodeConfig(slots=3), None),  # no node.memory: no limit
        (None, NodeConfig(), None),
    ],
)
def test_job_memory_limit(job_mb: int | None, node: NodeConfig, limit: int | None) -> None:
    assert job_memory_limit_bytes(job_mb, node) == limit


def memory_result(peak: int | None, limit: int | None = 200 * MIB, guard: str = "rss") -> RunResult:
    return RunResult(
        EndKind.MEMORY,
        None,
        9,
        1.0,
        peak or 0,
        0.0,
        0,
        False,
        memory_limit_bytes=limit,
        memory_limit_hit=True,
        memory_peak_bytes=peak,
        memory_guard="rss" if guard == "rss" else "cgroup",
    )


@pytest.mark.parametrize(
    ("result", "text"),
    [
        (memory_result(1024 * MIB), "memory limit exceeded (peak 1024 MiB > limit 200 MiB)"),
        (memory_result(200 * MIB + 1), "memory limit exceeded (peak 201 MiB > limit 200 MiB)"),
        (
            memory_result(300 * MIB, limit=200 * MIB + MIB // 2),
            "memory limit exceeded (peak 300 MiB > limit 200.5 MiB)",
        ),
        (
            memory_result(200 * MIB, guard="cgroup"),
            "memory limit exceeded (limit 200 MiB reached: killed by the kernel)",
        ),
        (memory_result(None, limit=None), "memory limit exceeded"),
    ],
)
def test_describe_a_run_over_its_memory(result: RunResult, text: str) -> None:
    assert describe_exit(result) == (EndReason.MEMORY, text)


def test_memory_is_the_jobs_fault() -> None:
    """DESIGN.md: memory limit exceeded → stop tree → outputs + log → finish(false, …)."""
    assert EndReason.MEMORY.job_fault and not EndReason.MEMORY.gives_back
    outcome = Outcome(EndReason.MEMORY, True, "memory limit exceeded (x)")
    assert [(c.kind.value, c.success, c.error) for c in decide(outcome)] == [
        ("finish", False, "memory limit exceeded (x)")
    ]
    assert exit_code(EndReason.MEMORY) is ExitCode.JOB_FAILED
