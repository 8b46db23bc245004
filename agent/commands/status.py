"""``agent status``: ask the local agent what it is doing, through its ``/status``.

The address is ``health.listen`` of the same config (a wildcard address is asked on
loopback). A table for people, ``--json`` for scripts; exit 1 with one line when no
agent answers there.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx

from agent.commands.common import settings_or_exit
from agent.healthserver import split_listen
from agent.outcome import ExitCode

ASK_SECONDS = 5.0
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def status_url(listen: str) -> str:
    host, port = split_listen(listen)
    host = WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}/status" if ":" in host else f"http://{host}:{port}/status"


def elapsed_text(seconds: float) -> str:
    """``42s`` · ``3m05s`` · ``2h07m`` · ``3d04h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def status_table(document: dict[str, Any]) -> str:
    """The table ``agent status`` prints for ``document`` (``/status``)."""
    state = str(document.get("state", "?"))
    ready = "ready" if document.get("ready") else f"not ready: {document.get('not_ready_because')}"
    stalled = document.get("stalled_loops") or []
    head = (
        f"agent {document.get('version', '?')} · {document.get('server', '?')} · {state} · {ready}"
    )
    if stalled:
        head += f" · STALLED: {', '.join(stalled)}"
    rows = [("SLOT", "NODE", "JOB", "PHASE", "PROGRESS", "ELAPSED", "PID")]
    for slot in document.get("slots", []):
        progress = slot.get("progress")
        rows.append(
            (
                str(slot.get("slot")),
                str(slot.get("node")),
                "-" if slot.get("job") is None else str(slot["job"]),
                str(slot.get("phase")),
                "-" if progress is None else f"{progress:.0%}",
                elapsed_text(float(slot.get("elapsed") or 0)),
                "-" if slot.get("pid") is None else str(slot["pid"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join([head, *(line.rstrip() for line in lines)])


def run_status(config: str | None, *, as_json: bool) -> int:
    settings = settings_or_exit(config, secrets=False)
    listen = settings.health.listen
    if not listen:
        print("agent status: health.listen is empty: the agent serves no status", file=sys.stderr)
        return ExitCode.USAGE
    url = status_url(listen)
    try:
        reply = httpx.get(url, timeout=ASK_SECONDS)
        reply.raise_for_status()
        document = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"agent status: no agent answers at {url}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print(status_table(document))
    return ExitCode.SUCCESS
