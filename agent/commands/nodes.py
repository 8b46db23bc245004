"""``agent nodes`` and ``agent reap [--apply]``: the fleet as the server sees it.

A node is **lost** when the server has not heard from it (``last_seen``: any request
with its ``Node-Id``; an agent pings every 30 s) for longer than ``--lost-after``
(default three heartbeats); else **busy** with a ``current_job`` or **idle**. The
server has no lease: a job started on a host that died stays STARTED for ever. ``reap``
lists the STARTED jobs of lost nodes and, with ``--apply``, aborts them (staff), which
returns them to the queue; a node seen again since the listing is left alone. Ages use
this host's clock against the server's times: keep the clocks in sync (NTP).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from agent.commands.common import ConfigExit, settings_or_exit
from agent.commands.failures import run_or_exit
from agent.commands.fleet import fleet_client, fleet_login
from agent.commands.status import elapsed_text
from agent.daemon import HEARTBEAT_SECONDS
from agent.outcome import ExitCode
from agent.server import Job, Node, ServerClient, filters

DEFAULT_LOST_AFTER = 3 * HEARTBEAT_SECONDS
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90`` · ``90s`` · ``10m`` · ``2h`` · ``1d`` as seconds (ValueError otherwise)."""
    match = _DURATION.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 10m, 2h)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def age_of(moment: datetime | None, now: datetime) -> float | None:
    """Seconds since ``moment`` (a naive time is taken as UTC); None when never."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())


def node_state(node: Node, now: datetime, lost_after: float) -> str:
    age = age_of(node.last_seen, now)
    if age is None or age > lost_after:
        return "lost"
    return "busy" if node.current_job is not None else "idle"


@dataclass(frozen=True)
class NodeRow:
    pk: int
    ip: str
    index: int
    state: str
    current_job: int | None
    last_seen_age: float | None
    gpu_mem: int | None
    driver_version: str | None
    hardware_generation: int | None


def node_rows(nodes: Sequence[Node], now: datetime, lost_after: float) -> list[NodeRow]:
    return [
        NodeRow(
            node.pk,
            node.ip,
            node.index,
            node_state(node, now, lost_after),
            node.current_job,
            age_of(node.last_seen, now),
            node.gpu_mem,
            node.driver_version,
            node.hardware_generation,
        )
        for node in nodes
    ]


@dataclass(frozen=True)
class Reapable:
    job: int
    node: int
    ip: str
    index: int
    last_seen_age: float | None


def reapable(
    jobs: Sequence[Job], nodes: Sequence[Node], now: datetime, lost_after: float
) -> list[Reapable]:
    """STARTED jobs held by a lost node: a pure decision."""
    by_pk = {node.pk: node for node in nodes}
    found = []
    for job in jobs:
        node = by_pk.get(job.node) if job.node is not None else None
        if job.phase != "STARTED" or node is None:
            continue
        if node_state(node, now, lost_after) == "lost":
            found.append(
                Reapable(job.pk, node.pk, node.ip, node.index, age_of(node.last_seen, now))
            )
    return found


def _age_text(age: float | None) -> str:
    return "never" if age is None else f"{elapsed_text(age)} ago"


def _gpu_text(row: NodeRow) -> str:
    if not row.gpu_mem:
        return "-"
    text = f"{row.gpu_mem / 2**30:.0f} GiB"
    if row.driver_version:
        text += f" drv {row.driver_version}"
    if row.hardware_generation is not None:
        text += f" gen {row.hardware_generation}"
    return text


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def nodes_table(rows: Sequence[NodeRow]) -> str:
    lines = [("NODE", "IP", "INDEX", "STATE", "JOB", "LAST SEEN", "GPU")]
    lines += [
        (
            str(row.pk),
            row.ip,
            str(row.index),
            row.state,
            "-" if row.current_job is None else str(row.current_job),
            _age_text(row.last_seen_age),
            _gpu_text(row),
        )
        for row in rows
    ]
    return table(lines)


def _lost_after(args: argparse.Namespace) -> float:
    if args.lost_after is None:
        return DEFAULT_LOST_AFTER
    try:
        return parse_duration(args.lost_after)
    except ValueError as exc:
        print(f"agent {args.command}: --lost-after: {exc}", file=sys.stderr)
        raise ConfigExit(ExitCode.USAGE) from None


def run_nodes(config: str | None, args: argparse.Namespace) -> int:
    settings = settings_or_exit(config)
    lost_after = _lost_after(args)
    login = fleet_login(settings, args.user, args.password_file, staff=False, command="nodes")

    async def main() -> list[NodeRow]:
        async with fleet_client(settings, login) as client:
            nodes = await client.list_nodes(filters.ALL_NODES)
        return node_rows(nodes, datetime.now(UTC), lost_after)

    rows = run_or_exit(main, settings.server.url)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    elif rows:
        print(nodes_table(rows))
    else:
        print("no nodes on the server", file=sys.stderr)
    return ExitCode.SUCCESS


def run_reap(config: str | None, args: argparse.Namespace) -> int:
    settings = settings_or_exit(config)
    lost_after = _lost_after(args)
    login = fleet_login(settings, args.user, args.password_file, staff=True, command="reap")

    async def main() -> list[tuple[Reapable, str]]:
        async with fleet_client(settings, login) as client:
            nodes = await client.list_nodes(filters.ALL_NODES)
            jobs = await client.list_jobs(filters.STARTED_JOBS)
            found = reapable(jobs, nodes, datetime.now(UTC), lost_after)
            if not args.apply:
                return [(item, "would abort") for item in found]
            return [(item, await _reap_one(client, item, lost_after)) for item in found]

    done = run_or_exit(main, settings.server.url)
    if args.json:
        print(json.dumps([{**asdict(item), "action": action} for item, action in done], indent=2))
        return ExitCode.SUCCESS
    if not done:
        print(
            f"nothing to reap: no STARTED job on a node silent for over {elapsed_text(lost_after)}"
        )
        return ExitCode.SUCCESS
    lines = [("JOB", "NODE", "IP", "INDEX", "LAST SEEN", "ACTION")]
    lines += [
        (str(i.job), str(i.node), i.ip, str(i.index), _age_text(i.last_seen_age), action)
        for i, action in done
    ]
    print(table(lines))
    if not args.apply:
        print("dry run: nothing changed; --apply aborts them (they return to the queue)")
    return ExitCode.SUCCESS


async def _reap_one(client: ServerClient, item: Reapable, lost_after: float) -> str:
    """Abort one job, unless its node was heard from or the job moved on meanwhile."""
    node = await client.get_node(item.node)
    if node_state(node, datetime.now(UTC), lost_after) != "lost":
        return "left alone: node seen again"
    job = await client.get_job(item.job)
    if job.phase != "STARTED" or job.node != item.node:
        return f"left alone: now {job.phase}"
    await client.abort(item.job)
    return "aborted: back in the queue"
