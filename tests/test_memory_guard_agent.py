"""A job over its ``hardware.memory`` through the whole agent: ERRORED on the server with
"memory limit exceeded", its log uploaded. Whichever memory guard the host offers runs
(see tests/executors/test_memory_guard.py); the ``memory_guard`` property names it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from agent.outcome import EndReason
from executors.cgroup import job_cgroup_base
from tests.agent_harness import Harness, harness, job_writable
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio

#: Notes the wall-clock time at its start and after each 64 MiB chunk it touches.
HOG = """\
import time
stamps = open({stamps!r}, "a", buffering=1)
stamps.write(f"start {{time.time()}}\\n")
chunks = []
print("allocating", flush=True)
while len(chunks) * 64 < 1024:
    chunks.append(bytearray(64 << 20))
    stamps.write(f"{{len(chunks) * 64}} {{time.time()}}\\n")
time.sleep(30)
"""


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


async def test_a_job_over_its_memory_ends_errored(
    h: Harness, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    stamps = job_writable(tmp_path) / "stamps"
    job = await h.submit(
        {
            "command": ["python3", "-c", HOG.format(stamps=str(stamps))],
            "hardware": {"coresPerSlot": 1, "slots": 1, "memory": 200},
        },
        [{"name": "never", "type": "txt", "path": "never.txt"}],
    )
    with anyio.fail_after(60):
        reports = await h.run_until_idle()
    guard = "cgroup" if job_cgroup_base().base is not None else "rss"
    record_property("memory_guard", guard)
    print(f"memory guard: {guard}")

    assert [r.outcome.reason for r in reports] == [EndReason.MEMORY]
    assert reports[0].summary["memory_guard"] == guard
    assert reports[0].summary["memory_limit_bytes"] == 200 * 1024 * 1024
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason is not None
    assert final.error_reason.startswith("memory limit exceeded (")
    assert "limit 200 MiB" in final.error_reason
    assert [o.name for o in final.outputs] == ["log"]  # what exists + the log
    assert b"allocating" in await h.output(job, "log", "str")
    assert (await h.calls(job))[-1] == "/finish"

    # Within 2 s of crossing the limit (plus one chunk): the crossing came after the
    # last stamp at or below 200 MiB; the run ended at most its duration after its start.
    marks = [line.split() for line in stamps.read_text().splitlines()]
    started = float(marks[0][1])
    below = [float(at) for held, at in marks[1:] if int(held) <= 200] or [started]
    ended = started + reports[0].summary["seconds"]
    record_property("seconds_from_crossing_to_end", round(ended - below[-1], 3))
    assert ended - below[-1] < 2.5


async def test_a_job_under_its_memory_finishes(h: Harness) -> None:
    job = await h.submit(
        {
            "command": ["python3", "-c", "b = bytearray(64 << 20); import time; time.sleep(1.2)"],
            "hardware": {"coresPerSlot": 1, "slots": 1, "memory": 200},
        }
    )
    with anyio.fail_after(60):
        reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.SUCCEEDED]
    assert (await h.job(job)).phase == "FINISHED"
