"""Giving back what a previous life of the agent left behind.

At start, each node slot looks at its journal entry and at the node's
``current_job`` on the server. :func:`recovery_calls` decides, from the job as the
server sees it, what brings things back to a clean state; :func:`recover_node` kills
the leftover processes (by the job's marker) and carries the calls out.
"""

from __future__ import annotations

import signal

import anyio
import structlog

from agent.calls import perform
from agent.journal import Journal
from agent.outcome import CallKind, ServerCall
from agent.server import Job, ServerClient, ServerError, ServerUnreachable
from executors.process import marked_pids, pids_alive, signal_pids

logger = structlog.get_logger("agent.recovery")

INTERRUPTED_ERROR = "node: the agent was interrupted while running this job; job given back"


async def kill_marked(marker: str, grace: float) -> int:
    """SIGTERM every process carrying the job's marker, SIGKILL what is left after
    ``grace`` seconds; returns how many there were."""
    pids = await anyio.to_thread.run_sync(marked_pids, marker)
    if not pids:
        return 0
    signal_pids(pids, signal.SIGTERM)
    with anyio.move_on_after(grace):
        while pids_alive(pids):
            await anyio.sleep(0.05)
    signal_pids(pids_alive(pids), signal.SIGKILL)
    return len(pids)


def recovery_calls(job: Job, node: int, node_current_job: int | None) -> tuple[ServerCall, ...]:
    """What to tell the server about a job this node held when the agent died."""
    phase = job.phase
    holds = node_current_job == job.pk
    if job.node != node:
        # Aborted (job.node cleared) or moved on: only free our node if it still points here.
        return (ServerCall(CallKind.FINISH, error=INTERRUPTED_ERROR),) if holds else ()
    if phase == "STARTED":
        return (
            ServerCall(CallKind.FINISH, error=INTERRUPTED_ERROR),
            ServerCall(CallKind.RESET),
            ServerCall(CallKind.RELEASE),
        )
    if phase == "CANCELLED":
        return (ServerCall(CallKind.FINISH, error=INTERRUPTED_ERROR),)
    if phase == "CREATED":
        return (ServerCall(CallKind.RELEASE),)
    if phase == "ERRORED" and (job.error_reason or "").startswith("node:"):
        # We died half-way through giving it back: finish went out, reset/release did not.
        return (ServerCall(CallKind.RESET), ServerCall(CallKind.RELEASE))
    return ()


async def recover_node(
    client: ServerClient, journal: Journal, node: int, current_job: int | None, kill_grace: float
) -> int | None:
    """Clean up after a previous run on ``node``; returns the job given back, if any."""
    entry = journal.read(node)
    if entry is not None:
        killed = await kill_marked(entry.marker, kill_grace)
        if killed:
            logger.warning(
                "killed leftover processes of an interrupted job",
                job=entry.job,
                node=node,
                processes=killed,
            )
    jobs = {pk for pk in (entry.job if entry else None, current_job) if pk is not None}
    given_back = None
    for pk in sorted(jobs):
        try:
            job = await client.get_job(pk, node=node)
            calls = recovery_calls(job, node, current_job)
            for call in calls:
                await perform(client, pk, node, call)
        except (ServerError, ServerUnreachable) as exc:
            logger.error("recovery of an interrupted job failed", job=pk, node=node, error=str(exc))
            continue
        if calls:
            logger.warning(
                "recovered an interrupted job",
                job=pk,
                node=node,
                calls=[call.kind.value for call in calls],
            )
            given_back = pk
    journal.clear(node)
    return given_back
