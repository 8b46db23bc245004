"""What watches a running ``agent run`` from outside: the health endpoint, systemd, and
the operator's control signals.

``health.listen`` serves ``/healthz``, ``/readyz``, ``/metrics`` and ``/status``; under
systemd (``Type=notify``) READY=1 goes out once the nodes are registered, STATUS= when
what the slots do changes, STOPPING=1 when the drain begins, and WATCHDOG=1 only while
no loop of the agent is stalled, so a wedged agent is restarted by systemd.

Control is by signals to the pid written in ``state_dir/agent.pid`` (``agent drain``
and ``agent resume`` send them; so can ``systemctl kill -s``): SIGUSR1 drains (no new
job; running jobs finish; the agent stays up), SIGUSR2 resumes, SIGHUP re-reads the
config file for the keys that can change live and says in one line which changed keys
need a restart.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import anyio.abc
import structlog

from agent.config import ConfigError, load_config, reload_settings
from agent.daemon import Agent
from agent.health import status_line
from agent.healthserver import Endpoints, serve_health
from agent.logs import configure_logging
from agent.sdnotify import Notifier, watchdog_seconds
from agent.statedir import PID_FILE

logger = structlog.get_logger("agent")

NOTIFY_CHECK_SECONDS = 1.0
"""How often the notify loop looks at the agent (STATUS= changes, the watchdog)."""


def endpoints_of(agent: Agent) -> Endpoints:
    return Endpoints(
        stalled=agent.loops.stalled,
        why_not_ready=agent.why_not_ready,
        metrics=agent.context.metrics.render,
        status=agent.status,
    )


async def supervise(
    agent: Agent,
    config: str | None = None,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``health.listen`` (bound before this reports started: a port in use fails
    the start), take control signals and talk to systemd, until cancelled. ``config``
    is the config file the agent was started with (re-read on SIGHUP)."""
    listen = agent.settings.health.listen
    notifier = Notifier.from_env(os.environ)
    watchdog = watchdog_seconds(os.environ, os.getpid())
    pid_file = agent.settings.state_dir / PID_FILE
    try:
        async with anyio.create_task_group() as group:
            if listen:
                await group.start(serve_health, listen, endpoints_of(agent))
            await group.start(take_control, agent, config)
            write_pid_file(pid_file)
            task_status.started()
            if notifier.enabled:
                await notify_systemd(agent, notifier, watchdog)
    finally:
        notifier.close()
        remove_pid_file(pid_file)


def write_pid_file(path: Path) -> None:
    path.write_text(f"{os.getpid()}\n", encoding="utf-8")


def remove_pid_file(path: Path) -> None:
    try:
        if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


async def take_control(
    agent: Agent, config: str | None, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """SIGUSR1: drain · SIGUSR2: resume · SIGHUP: re-read the config's live keys."""
    with anyio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGUSR1:
                agent.pause()
            elif signum == signal.SIGUSR2:
                agent.resume()
            else:
                reload_config(agent, config)


def reload_config(agent: Agent, config: str | None) -> None:
    """SIGHUP: apply the live keys of the config file; one line says what happened."""
    try:
        fresh = load_config(config)
    except ConfigError as exc:
        logger.error("config not reloaded: the file has errors", errors=str(exc))
        return
    reload = reload_settings(agent.settings, fresh)
    if "log.level" in reload.applied:
        log = reload.settings.log
        configure_logging(log.format, log.level, agent.context.redactor)
    agent.reconfigure(reload.settings)
    logger.info(
        "config reloaded",
        applied=", ".join(reload.applied) or "nothing changed",
        need_restart=", ".join(reload.need_restart) or "none",
    )


async def notify_systemd(agent: Agent, notifier: Notifier, watchdog: float | None) -> None:
    ready = stopping = False
    shown = ""
    last_watchdog = -1e9
    notifier.send(f"STATUS=logging in to {agent.settings.server.url}")
    while True:
        fields: list[str] = []
        if agent.registered:
            line = status_line(agent.slot_views(), agent.mode)
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
