"""How fast others take jobs off the queue's head (:class:`agent.queuedrain.QueueDrain`), and
agents that share a queue and use it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agent.jobrun import JobReport
from agent.outcome import EndReason
from agent.queuedrain import HEAD, MIN_SPAN, QueueDrain
from agent.server.client import LazyJobs
from tests.agent_harness import Harness, agent_settings, harness
from tests.server_params import reference_only
from tests.servers import ServerUnderTest


def listed(drain: QueueDrain, at: float, pks: list[int], taken: int) -> None:
    drain.listed(at, pks, set(pks), taken)


def test_no_rate_until_two_lists() -> None:
    drain = QueueDrain()
    listed(drain, 10.0, list(range(1, 50)), taken=0)
    assert drain.rate == 0.0
    assert drain.likely_gone(5.0) == 0


def test_jobs_gone_from_the_head_minus_the_agents_own_make_the_rate() -> None:
    """20 jobs left the head in 2 s, 4 of them taken by this agent: others take 8/s."""
    drain = QueueDrain()
    listed(drain, 10.0, list(range(1, 101)), taken=3)
    listed(drain, 12.0, list(range(21, 121)), taken=7)
    assert drain.rate == pytest.approx(8.0)
    assert drain.likely_gone(0.5) == 4
    assert drain.likely_gone(-1.0) == 0  # a clock read before the list: nothing yet


def test_lists_closer_than_the_minimum_span_measure_from_the_older_one() -> None:
    drain = QueueDrain()
    listed(drain, 10.0, list(range(1, 101)), taken=0)
    listed(drain, 10.0 + MIN_SPAN / 2, list(range(3, 101)), taken=0)
    assert drain.rate == 0.0  # too close: not measured, and not the new reference
    listed(drain, 10.0 + MIN_SPAN * 2, list(range(11, 101)), taken=0)
    assert drain.rate == pytest.approx(10 / (MIN_SPAN * 2))


def test_a_queue_only_this_agent_takes_from_has_no_drain() -> None:
    """Every job gone was this agent's own (and a count that overshoots is no rate)."""
    drain = QueueDrain()
    listed(drain, 10.0, list(range(1, 11)), taken=0)
    listed(drain, 11.0, list(range(4, 11)), taken=5)
    assert drain.rate == 0.0


def test_only_the_head_of_a_long_queue_is_compared() -> None:
    """Jobs past the first :data:`HEAD` of a list are not remembered: the rate counts
    what left the head."""
    drain = QueueDrain()
    listed(drain, 0.0, list(range(1, HEAD * 4)), taken=0)
    listed(drain, 1.0, list(range(HEAD + 1, HEAD * 4)), taken=0)  # the whole head went
    assert drain.rate == HEAD
    listed(drain, 2.0, list(range(HEAD + 11, HEAD * 4)), taken=0)
    assert drain.rate == 10


def test_the_jobs_of_a_list_in_order_and_past_a_count() -> None:
    template = {"pk": 1, "name": "t", "version": 1}
    items: list[object] = [{"pk": pk, "template": template} for pk in (5, 3, 9)]
    jobs = LazyJobs([*items[:1], {"no": "pk"}, *items[1:]])
    assert list(jobs.pks_in_order()) == [5, 3, 9]
    assert [job.pk for job in jobs.after(2)] == [3, 9]
    assert list(jobs.after(10)) == []


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


@pytest.mark.anyio
@reference_only
async def test_agents_sharing_a_queue_run_every_job_once(h: Harness, tmp_path: Path) -> None:
    """Three agents of two slots each work through one queue at once: they lose acquires
    to each other and skip backlog jobs the others likely took, yet every job runs, and
    runs once (a job skipped that was still pending is found by a later list)."""
    jobs = [
        await h.submit({"command": "sleep 0.05", "hardware": {"coresPerSlot": 1, "slots": 1}})
        for _ in range(36)
    ]
    start = len(h.server.request_log())
    reports: list[JobReport] = []

    async def one_agent(index: int) -> None:
        settings = agent_settings(
            h.server,
            tmp_path / f"agent{index}",
            node={"ip": f"127.0.0.{31 + index}", "slots": 2},
            poll={"interval": 30.0},
        )
        async with h.agent(settings, exit_when_idle=True) as agent:
            reports.extend(await agent.run())

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for index in range(3):
                group.start_soon(one_agent, index)
    assert sorted(r.job for r in reports) == sorted(jobs)
    assert {r.outcome.reason for r in reports} == {EndReason.SUCCEEDED}
    seen = h.server.request_log()[start:]
    starts = Counter(s.path for s in seen if s.path.endswith("/start") and s.status == 200)
    assert sorted(starts.values()) == [1] * len(jobs)
    assert set(starts) == {f"/v1/jobs/{pk}/start" for pk in jobs}
