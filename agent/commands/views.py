"""``agent jobs`` and ``agent job PK``: read-only views of the job server's jobs.

A job's state is derived from its record as the server does (PROTOCOL.md), with one
addition: a job cancelled before it started keeps no ``start_time`` but has an
``error_reason``; it is CANCELLED here, not CREATED (no agent will take it).
``agent job`` of an unknown pk is one line and exit 8.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.commands.common import settings_or_exit
from agent.commands.failures import run_or_exit
from agent.commands.fleet import fleet_client, fleet_login
from agent.commands.status import elapsed_text
from agent.config import Settings
from agent.outcome import ExitCode
from agent.server import Job, NotFound, OutputInfo, ServerClient, ServerError, filters

ERROR_WIDTH = 50
_STARTED = filters.isnull("start_time", invert=True)
_NOT_STARTED = filters.isnull("start_time")
_ENDED = filters.isnull("end_time", invert=True)
_RUNNING = filters.isnull("end_time")
_ERROR = filters.isnull("error_reason", invert=True)
_NO_ERROR = filters.isnull("error_reason")
STATE_FILTERS: dict[str, dict[str, Any]] = {
    "created": filters.all_of(_NOT_STARTED, _NO_ERROR),
    "started": filters.all_of(_STARTED, _RUNNING, _NO_ERROR),
    "finished": filters.all_of(_ENDED, _NO_ERROR),
    "errored": filters.all_of(_ENDED, _ERROR),
    "cancelled": filters.any_of(
        filters.all_of(_NOT_STARTED, _ERROR), filters.all_of(_STARTED, _RUNNING, _ERROR)
    ),
}
"""``--state``: the server-side filter for each state of :func:`state_of`."""


class NoSuchJob(Exception):
    pass


def state_of(job: Job) -> str:
    """CREATED, STARTED, FINISHED, ERRORED or CANCELLED."""
    if job.start_time is None:
        return "CANCELLED" if job.error_reason else "CREATED"
    return job.phase


def end_line(job: Job) -> str:
    """``job 5: succeeded`` / ``job 5: failed: exit code 3`` / ``job 5: cancelled``."""
    state = state_of(job)
    if state == "FINISHED":
        return f"job {job.pk}: succeeded"
    if state == "ERRORED":
        return f"job {job.pk}: failed: {job.error_reason}"
    return f"job {job.pk}: {state.lower()}"


def job_dict(job: Job) -> dict[str, Any]:
    """The job's record as the server gave it (known fields), with its ``state``."""
    return {"state": state_of(job), **job.model_dump(mode="json")}


def _run(
    config: str | None,
    args: argparse.Namespace,
    command: str,
    main: Callable[[ServerClient, Settings], Awaitable[int]],
) -> int:
    settings = settings_or_exit(config)
    login = fleet_login(settings, args.user, args.password_file, staff=False, command=command)

    async def session() -> int:
        async with fleet_client(settings, login) as client:
            return await main(client, settings)

    try:
        return run_or_exit(session, settings.server.url)
    except NoSuchJob as exc:
        print(f"agent: {exc} ({settings.server.url})", file=sys.stderr)
        return ExitCode.NO_SUCH_JOB


# ------------------------------------------------------------------ agent jobs


def run_jobs(config: str | None, args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("agent jobs: --limit must be at least 1", file=sys.stderr)
        return ExitCode.USAGE

    async def main(client: ServerClient, _settings: Settings) -> int:
        jobs = await newest_jobs(client, args.state, args.limit)
        if args.json:
            print(json.dumps([job_dict(job) for job in jobs], indent=2))
        else:
            print("\n".join(jobs_table(jobs, datetime.now(UTC))))
        return ExitCode.SUCCESS

    return _run(config, args, "jobs", main)


async def newest_jobs(client: ServerClient, state: str | None, limit: int) -> list[Job]:
    """At most ``limit`` jobs in ``state`` (any when None), newest first. The list call
    has no paging: the server sends all that match, the newest are kept here."""
    expressions = [STATE_FILTERS[state]] if state else []
    jobs = await client.list_jobs(
        filters.spec(*expressions, order_by="creation_time", ascending=False)
    )
    jobs.sort(key=lambda job: (job.creation_time or datetime.min.replace(tzinfo=UTC), job.pk))
    return jobs[::-1][:limit]


def jobs_table(jobs: Sequence[Job], now: datetime) -> list[str]:
    rows = [("JOB", "STATE", "TEMPLATE", "NODE", "AGE", "RAN", "ERROR")]
    for job in jobs:
        rows.append(
            (
                str(job.pk),
                state_of(job).lower(),
                f"{job.template.name} v{job.template.version}",
                "-" if job.node is None else str(job.node),
                span(job.creation_time, now),
                ran(job, now),
                _cut(job.error_reason or "-", ERROR_WIDTH),
            )
        )
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def span(since: datetime | None, now: datetime) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``3d04h``: how long ago, or how long."""
    if since is None:
        return "-"
    return duration((now - since).total_seconds())


def duration(seconds: float) -> str:
    return elapsed_text(max(0.0, seconds))


def ran(job: Job, now: datetime) -> str:
    """How long it ran (still running: so far); a cancelled run keeps no end: ``-``."""
    if job.start_time is None or (job.end_time is None and state_of(job) == "CANCELLED"):
        return "-"
    return duration(((job.end_time or now) - job.start_time).total_seconds())


def _cut(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


# ------------------------------------------------------------------ agent job PK


def run_job(config: str | None, args: argparse.Namespace) -> int:
    async def main(client: ServerClient, _settings: Settings) -> int:
        try:
            job = await client.get_job(args.pk)
        except NotFound:
            raise NoSuchJob(f"no job {args.pk} on the server") from None
        outputs = [await client.output_info(job.pk, o.name, o.type) for o in job.outputs]
        node = await node_text(client, job.node)
        if args.json:
            record = job_dict(job) | {
                "outputs": [info.model_dump(mode="json") for info in outputs],
                "node_address": node,
            }
            print(json.dumps(record, indent=2))
        else:
            print("\n".join(job_lines(job, outputs, node, datetime.now(UTC))))
        return ExitCode.SUCCESS

    return _run(config, args, "job", main)


async def node_text(client: ServerClient, pk: int | None) -> str | None:
    """``127.0.0.4 slot 0`` for a node pk, None when there is none or it is not readable."""
    if pk is None:
        return None
    try:
        node = await client.get_node(pk)
    except ServerError:
        return None
    return f"{node.ip} slot {node.index}"


def job_lines(
    job: Job, outputs: Sequence[OutputInfo], node: str | None, now: datetime
) -> list[str]:
    def when(moment: datetime | None, note: str = "") -> str:
        if moment is None:
            return "-"
        return f"{moment.isoformat(timespec='seconds')} ({span(moment, now)} ago{note})"

    took = f", ran {ran(job, now)}" if job.start_time and job.end_time else ""
    node_cell = "-" if job.node is None else str(job.node) + (f" ({node})" if node else "")
    lines = [
        f"job {job.pk}: {state_of(job)}",
        *table(
            [
                ("template", f"{job.template.name} v{job.template.version} (pk {job.template.pk})"),
                ("node", node_cell),
                ("created", when(job.creation_time)),
                ("started", when(job.start_time)),
                ("ended", when(job.end_time, took)),
                ("error", job.error_reason or "-"),
                ("description", job.description or "-"),
            ]
        ),
    ]
    if not outputs:
        return [*lines, "outputs: none"]
    # The server gives no sizes (nor, the real one, file names) for outputs.
    rows = [("NAME", "TYPE", "UPLOADED")]
    for info in outputs:
        uploaded = "deleted by a reset" if info.deleted else when(info.creation_time)
        rows.append((info.name, info.type, uploaded))
    return [*lines, "outputs:", *("  " + line for line in table(rows))]
