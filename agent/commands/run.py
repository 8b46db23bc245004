"""``agent run`` and ``agent run-once``: the agent against a job server.

Signals escalate (DESIGN.md, STYLE.md #6): the first SIGTERM/SIGINT stops taking
work and lets running jobs go on for ``shutdown.drain_timeout`` seconds, after which
they are stopped and given back; a second signal gives them back at once.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import structlog

from agent.commands.common import (
    agent_context,
    job_user_or_exit,
    make_client,
    settings_or_exit,
    setup,
)
from agent.commands.console import ProgressConsole
from agent.commands.failures import explain
from agent.commands.supervise import supervise
from agent.config import Settings
from agent.daemon import Agent
from agent.jobrun import JobObserver
from agent.outcome import ExitCode, exit_code
from executors.identity import JobUser

logger = structlog.get_logger("agent")


async def watch_signals(agent: Agent, drain_timeout: float) -> None:
    """First signal: drain, then give jobs back after ``drain_timeout``; second: now."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as group:
            async for signum in signals:
                name = signal.Signals(signum).name
                if agent.context.stop_jobs.is_set():
                    continue
                if not agent.draining:
                    logger.warning(
                        "stopping: no new jobs; running jobs get the drain time, then go"
                        " back to the queue; a second signal gives them back at once",
                        signal=name,
                        drain_timeout=drain_timeout,
                        running=sum(slot.job is not None for slot in agent.slots),
                    )
                    agent.drain(f"agent stopped by {name}")
                    group.start_soon(_give_back_after, agent, drain_timeout, name)
                else:
                    logger.warning("second signal: giving running jobs back now", signal=name)
                    agent.stop_now(f"agent stopped by {name}")


async def _give_back_after(agent: Agent, seconds: float, name: str) -> None:
    await anyio.sleep(seconds)
    if agent.busy:
        logger.warning("drain time over: giving running jobs back", drain_timeout=seconds)
    agent.stop_now(f"agent stopped by {name}")


async def _run_agent(
    settings: Settings,
    job_user: JobUser,
    *,
    exit_when_idle: bool,
    only_job: int | None = None,
    max_jobs: int | None = None,
    observer: JobObserver | None = None,
    supervised: bool = False,
    config: str | None = None,
) -> Agent:
    redactor = setup(settings)
    async with make_client(settings, redactor) as client:
        context = agent_context(settings, client, redactor, job_user, observer)
        client.observer = context.metrics
        agent = Agent(context, exit_when_idle=exit_when_idle, only_job=only_job, max_jobs=max_jobs)
        async with anyio.create_task_group() as group:
            if supervised:  # `agent run`: health endpoint and systemd notify
                await group.start(supervise, agent, config)
            group.start_soon(watch_signals, agent, settings.shutdown.drain_timeout)
            logger.info(
                "agent starting",
                server=settings.server.url,
                slots=settings.node.slots,
                work_dir=str(settings.work_dir),
            )
            reports = await agent.run()
            group.cancel_scope.cancel()
        logger.info("agent stopped", jobs=len(reports))
        return agent


def _run_or_exit_code(settings: Settings, main: Callable[[], Awaitable[Agent]]) -> Agent | ExitCode:
    """Run the agent; an expected failure (login or registration refused, server gone,
    no such job) is one line on stderr and its exit code."""
    # What is loaded by now (modules, classes, settings: about 47,000 objects, with no
    # garbage among them) lives as long as the agent: kept out of the collector's full
    # passes, which otherwise walk all of it again and again while jobs run.
    gc.freeze()
    try:
        return anyio.run(main)
    except Exception as exc:
        failure = explain(exc, settings.server.url)
        if failure is None:
            raise
        print(failure.line, file=sys.stderr)
        return failure.code


def run_daemon(config: str | None, *, exit_when_idle: bool = False) -> int:
    settings = settings_or_exit(config)
    job_user = job_user_or_exit(settings)
    outcome = _run_or_exit_code(
        settings,
        lambda: _run_agent(
            settings, job_user, exit_when_idle=exit_when_idle, supervised=True, config=config
        ),
    )
    return outcome if isinstance(outcome, ExitCode) else ExitCode.SUCCESS


def run_once(
    config: str | None, *, job: int | None, spec_file: str | None, out_dir: str | None
) -> int:
    if spec_file is not None:
        from agent.commands.local import run_spec_file  # noqa: PLC0415

        return run_spec_file(config, Path(spec_file), Path(out_dir) if out_dir else None)
    settings = settings_or_exit(config, overrides={"node": {"slots": 1}})
    job_user = job_user_or_exit(settings)
    console = ProgressConsole.for_stream(sys.stderr)
    agent = _run_or_exit_code(
        settings,
        lambda: _run_agent(
            settings, job_user, exit_when_idle=True, only_job=job, max_jobs=1, observer=console
        ),
    )
    if isinstance(agent, ExitCode):
        return agent
    if not agent.reports:
        if job is None:
            print("agent: nothing to do: no pending job fits this agent", file=sys.stderr)
        else:
            why = agent.why_not_taken(job) or "it is not pending or does not fit this agent"
            print(f"agent: job {job} not run: {why}", file=sys.stderr)
        return ExitCode.NOTHING_TO_DO
    report = agent.reports[0]
    code = exit_code(report.outcome.reason)
    print(
        f"job {report.job}: {report.outcome.reason.value}"
        + (f": {report.outcome.error}" if report.outcome.error else ""),
        file=sys.stderr,
    )
    return code
