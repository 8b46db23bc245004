"""Carrying out the server calls that :func:`agent.outcome.decide` (or recovery) chose."""

from __future__ import annotations

import structlog

from agent.outcome import CallKind, ServerCall
from agent.server import Conflict, ServerClient

logger = structlog.get_logger("agent.calls")


async def start_on_server(client: ServerClient, job: int, node: int) -> None:
    """``start``, first freeing the node of a job an admin aborted (docs/protocol.md quirk:
    abort leaves ``node.current_job`` set until the node finishes it, a 200 no-op)."""
    try:
        await client.start(job, node)
    except Conflict:
        stale = (await client.get_node(node)).current_job
        if stale is None or stale == job:
            raise
        logger.warning("freeing node of a stale job before start", stale_job=stale, node=node)
        await client.finish(stale, node, False, "node: job was aborted")
        await client.start(job, node)


async def perform(client: ServerClient, job: int, node: int, call: ServerCall) -> None:
    """One call; raises the client's errors."""
    if call.kind is CallKind.START:
        await start_on_server(client, job, node)
    elif call.kind is CallKind.FINISH:
        await client.finish(job, node, call.success, call.error)
    elif call.kind is CallKind.RESET:
        await client.reset(job, node)
    elif call.kind is CallKind.RELEASE:
        await client.release(job, node)
