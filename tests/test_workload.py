"""What the agent has in hand: a chatty job's log reader yields only when anything
else is (other jobs, a poll); alone, its output is taken in at full speed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agent.workload import Workload
from executors.logsink import MIN_PAUSE, READER_DUTY, reader_pause
from tests.agent_harness import Harness, harness, job_writable
from tests.server_params import reference_only
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def test_holding_counts_for_the_block_even_when_it_fails() -> None:
    work = Workload()
    seen: list[tuple[int, bool]] = []

    def fail_while_held() -> None:
        with work.holding():
            seen.append((work.count, work.crowded()))
            raise RuntimeError("boom")

    with work.holding():
        assert (work.count, work.crowded()) == (1, False)
        with pytest.raises(RuntimeError):
            fail_while_held()
        assert seen == [(2, True)]
        assert work.count == 1
    assert (work.count, work.crowded()) == (0, False)


@pytest.mark.parametrize(
    ("busy", "crowded", "expected"),
    [
        (0.004, False, 0.0),  # alone: never a pause
        (0.004, True, 0.004 * (1 - READER_DUTY) / READER_DUTY),
        # a block whose pause would be half the shortest worth a sleep: none
        (MIN_PAUSE / 2 * READER_DUTY / (1 - READER_DUTY), True, 0.0),
    ],
)
def test_reader_pause(busy: float, crowded: bool, expected: float) -> None:
    assert reader_pause(busy, crowded) == pytest.approx(expected)


def waiting_job(flags: Path, name: str) -> dict[str, object]:
    """A job that leaves ``name`` in ``flags`` once running and waits for ``go``."""
    command = f"touch {flags / name}; while [ ! -e {flags / 'go'} ]; do sleep 0.02; done"
    return {"command": command, "hardware": {"coresPerSlot": 1, "slots": 1}}


async def wait_for_files(*paths: Path) -> None:
    with anyio.fail_after(20):
        while not all(path.exists() for path in paths):
            await anyio.sleep(0.02)


@reference_only
async def test_a_lone_job_is_all_the_agent_has_in_hand(h: Harness, tmp_path: Path) -> None:
    """One slot busy: the poll loop waits, so the job is alone and its reader never
    yields; the count goes back to zero when it ends."""
    flags = job_writable(tmp_path)
    await h.submit(waiting_job(flags, "a"))
    async with h.agent(h.settings(node={"slots": 1, "cores": 2}), exit_when_idle=True) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            await wait_for_files(flags / "a")
            seen = set()
            for _ in range(10):  # across several of the test's poll intervals
                seen.add(agent.context.workload.count)
                await anyio.sleep(0.02)
            assert seen == {1}
            assert not agent.context.workload.crowded()
            (flags / "go").touch()
        assert agent.context.workload.count == 0


@reference_only
async def test_two_running_jobs_crowd_each_other(h: Harness, tmp_path: Path) -> None:
    flags = job_writable(tmp_path)
    for name in ("a", "b"):
        await h.submit(waiting_job(flags, name))
    async with h.agent(h.settings(node={"slots": 2, "cores": 2}), exit_when_idle=True) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            await wait_for_files(flags / "a", flags / "b")
            assert agent.context.workload.count >= 2
            assert agent.context.workload.crowded()
            (flags / "go").touch()
        assert agent.context.workload.count == 0
