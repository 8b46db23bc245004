"""A backlog is worked through without listing every pending job again for each one:
the jobs a poll listed are taken in turn as slots free up, while the list is younger
than a poll interval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.outcome import EndReason
from agent.server.client import LazyJobs
from tests.agent_harness import Harness, harness
from tests.server_params import reference_only
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def one_core(command: str) -> dict[str, object]:
    return {"command": command, "hardware": {"coresPerSlot": 1, "slots": 1}}


def list_calls(h: Harness) -> int:
    return sum(1 for r in h.server.request_log() if r.path == "/v1/jobs/list")


async def test_three_jobs_from_one_list(h: Harness) -> None:
    """One slot, three quick jobs: listed once, taken oldest first; the last list finds
    the queue empty."""
    jobs = [await h.submit(one_core("true")) for _ in range(3)]
    before = list_calls(h)
    reports = await h.run_until_idle(h.settings(poll={"interval": 30.0}))
    assert [r.job for r in reports] == jobs
    assert {r.outcome.reason for r in reports} == {EndReason.SUCCEEDED}
    assert list_calls(h) - before == 2


@reference_only
async def test_an_old_list_is_not_trusted(h: Harness) -> None:
    """Jobs that take longer than a poll interval: each next job comes from a new list."""
    jobs = [await h.submit(one_core("sleep 0.3")) for _ in range(2)]
    before = list_calls(h)
    reports = await h.run_until_idle(h.settings(poll={"interval": 0.1}))
    assert [r.job for r in reports] == jobs
    assert list_calls(h) - before == 3


@reference_only
async def test_a_job_gone_before_its_acquire_is_passed_over(h: Harness) -> None:
    """A 404 on acquire (deleted since the list): the next job is taken, no back-off; the
    first is run when a later list still has it."""
    first, second = [await h.submit(one_core("true")) for _ in range(2)]
    h.devserver.fail_next(rf"^/v1/jobs/{first}/acquire$", 404)
    reports = await h.run_until_idle(h.settings(poll={"interval": 30.0}))
    assert [r.job for r in reports] == [second, first]
    assert {r.outcome.reason for r in reports} == {EndReason.SUCCEEDED}


def test_a_backlog_starts_at_the_first_job_not_taken_and_is_bounded() -> None:
    template = {"pk": 1, "name": "t", "version": 1}
    listed = LazyJobs([{"pk": pk, "template": template} for pk in range(1, 7)])
    assert [job.pk for job in listed.starting_at(3)] == [3, 4, 5, 6]
    assert [job.pk for job in listed.starting_at(3, 2)] == [3, 4]
    assert list(listed.starting_at(99)) == []


@reference_only
async def test_an_agent_losing_acquires_still_works_through_its_backlog(h: Harness) -> None:
    """Another node "wins" the first job (a 406 on its acquire): the agent is contended
    from then on, and still takes the jobs of its last list in turn (spread over them)
    instead of listing every pending job again for each one; the lost job comes back in
    a later list (here nobody really took it) and is run then."""
    first, *rest = [await h.submit(one_core("true")) for _ in range(4)]
    h.devserver.fail_next(rf"^/v1/jobs/{first}/acquire$", 406)
    before = list_calls(h)
    reports = await h.run_until_idle(h.settings(poll={"interval": 30.0}))
    assert sorted(r.job for r in reports) == sorted([first, *rest])
    assert reports[-1].job == first
    assert {r.outcome.reason for r in reports} == {EndReason.SUCCEEDED}
    # The first list, the one after the backlog ran out (finds the lost job), the last
    # (finds nothing); each job ran once.
    assert list_calls(h) - before == 3


@reference_only
async def test_a_backlog_job_another_node_won_means_a_new_list(h: Harness) -> None:
    """A 406 on a job of the backlog: the backlog is stale (others have been taking its
    jobs), so the agent lists again instead of trying the rest of it one acquire at a
    time."""
    jobs = [await h.submit(one_core("true")) for _ in range(3)]
    h.devserver.fail_next(rf"^/v1/jobs/{jobs[1]}/acquire$", 406)
    start = len(h.server.request_log())
    reports = await h.run_until_idle(h.settings(poll={"interval": 30.0}))
    assert sorted(r.job for r in reports) == sorted(jobs)
    assert {r.outcome.reason for r in reports} == {EndReason.SUCCEEDED}
    paths = [r.path for r in h.server.request_log()][start:]
    lost = paths.index(f"/v1/jobs/{jobs[1]}/acquire")
    third = paths.index(f"/v1/jobs/{jobs[2]}/acquire")
    assert lost < third
    assert "/v1/jobs/list" in paths[lost:third]  # listed again before trying the third
    assert paths.count(f"/v1/jobs/{jobs[2]}/acquire") == 1
