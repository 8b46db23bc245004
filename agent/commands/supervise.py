"""What watches a running ``agent run`` from outside: the health endpoint and systemd.

``health.listen`` serves ``/healthz``, ``/readyz``, ``/metrics`` and ``/status``; under
systemd (``Type=notify``) READY=1 goes out once the nodes are registered, STATUS= when
what the slots do changes, STOPPING=1 when the drain begins, and WATCHDOG=1 only while
no loop of the agent is stalled, so a wedged agent is restarted by systemd.
"""

from __future__ import annotations

import os

import anyio
import anyio.abc

from agent.daemon import Agent
from agent.health import status_line
from agent.healthserver import Endpoints, serve_health
from agent.sdnotify import Notifier, watchdog_seconds

NOTIFY_CHECK_SECONDS = 1.0
"""How often the notify loop looks at the agent (STATUS= changes, the watchdog)."""


def endpoints_of(agent: Agent) -> Endpoints:
    return Endpoints(
        stalled=agent.loops.stalled,
        why_not_ready=agent.why_not_ready,
        metrics=agent.context.metrics.render,
        status=agent.status,
    )


async def supervise(agent: Agent, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """Serve ``health.listen`` (bound before this reports started: a port in use fails
    the start) and talk to systemd, until cancelled."""
    listen = agent.settings.health.listen
    notifier = Notifier.from_env(os.environ)
    watchdog = watchdog_seconds(os.environ, os.getpid())
    try:
        async with anyio.create_task_group() as group:
            if listen:
                await group.start(serve_health, listen, endpoints_of(agent))
            task_status.started()
            if notifier.enabled:
                await notify_systemd(agent, notifier, watchdog)
    finally:
        notifier.close()


async def notify_systemd(agent: Agent, notifier: Notifier, watchdog: float | None) -> None:
    ready = stopping = False
    shown = ""
    last_watchdog = -1e9
    notifier.send(f"STATUS=logging in to {agent.settings.server.url}")
    while True:
        fields: list[str] = []
        if agent.registered:
            line = status_line(agent.slot_views(), agent.draining)
            if not ready:
                fields.append("READY=1")
                ready = True
            if agent.draining and not stopping:
                fields.append("STOPPING=1")
                stopping = True
            if line != shown:
                fields.append(f"STATUS={line}")
                shown = line
        now = anyio.current_time()
        due = watchdog is not None and now - last_watchdog >= watchdog / 2
        if due and not agent.loops.stalled():
            fields.append("WATCHDOG=1")
            last_watchdog = now
        if fields:
            notifier.send(*fields)
        await anyio.sleep(min(NOTIFY_CHECK_SECONDS, watchdog / 4 if watchdog else 1.0))
