"""``agent drain [--wait]`` and ``agent resume``: steer the running ``agent run``.

The agent's pid is in ``state_dir/agent.pid``; SIGUSR1 drains (no new job, running
jobs finish, the agent stays up), SIGUSR2 resumes (``agent/commands/supervise.py``).
Only its own user (root for the service) may signal it. Before signalling, the pid is
checked to be an ``agent run`` started before the file was written, so a stale file
never signals another process. ``--wait`` follows ``/status`` on ``health.listen``
until no job runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import httpx
import psutil

from agent.commands.common import settings_or_exit
from agent.commands.status import ASK_SECONDS, status_url
from agent.config import Settings
from agent.outcome import ExitCode
from agent.statedir import PID_FILE

WAIT_POLL_SECONDS = 0.5
NO_AGENT = 1
"""Exit code when no running agent is found (as ``agent status``)."""


class NoAgent(Exception):
    """No running ``agent run`` for this config."""


def running_agent_pid(settings: Settings) -> int:
    """The pid of this config's running ``agent run``; :class:`NoAgent` says why not."""
    path = settings.state_dir / PID_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
        written = path.stat().st_mtime
    except OSError as exc:
        raise NoAgent(f"no running agent: cannot read {path}: {exc.strerror}") from None
    if not text.isdigit():
        raise NoAgent(f"no running agent: {path} holds no pid")
    pid = int(text)
    try:
        process = psutil.Process(pid)
        command = process.cmdline()
        started = process.create_time()
    except psutil.Error:
        raise NoAgent(f"no running agent: process {pid} of {path} is gone") from None
    if (
        "run" not in command
        or not any("agent" in part for part in command)
        or started > written + 1
    ):
        raise NoAgent(f"no running agent: process {pid} of {path} is not `agent run`")
    return pid


def _signal(config: str | None, signum: signal.Signals, done: str) -> tuple[Settings, int]:
    settings = settings_or_exit(config, secrets=False)
    try:
        pid = running_agent_pid(settings)
        os.kill(pid, signum)
    except NoAgent as exc:
        print(f"agent: {exc}", file=sys.stderr)
        raise SystemExit(NO_AGENT) from None
    except PermissionError:
        print(
            f"agent: not allowed to signal the agent (pid {pid}): run as its user", file=sys.stderr
        )
        raise SystemExit(NO_AGENT) from None
    print(f"agent {pid}: {done}", file=sys.stderr)
    return settings, pid


def run_drain(config: str | None, args: argparse.Namespace) -> int:
    settings, pid = _signal(config, signal.SIGUSR1, "draining: no new jobs until `agent resume`")
    if not args.wait:
        return ExitCode.SUCCESS
    if not settings.health.listen:
        print(
            "agent drain --wait: health.listen is empty: cannot follow the agent", file=sys.stderr
        )
        return ExitCode.USAGE
    url = status_url(settings.health.listen)
    shown = None
    while True:
        try:
            document = httpx.get(url, timeout=ASK_SECONDS).json()
        except (httpx.HTTPError, ValueError) as exc:
            print(f"agent drain: the agent stopped answering at {url}: {exc}", file=sys.stderr)
            return NO_AGENT
        running = [slot["job"] for slot in document.get("slots", []) if slot.get("job")]
        if document.get("state") == "drained" or (
            document.get("state") == "draining" and not running
        ):
            print(f"agent {pid}: drained, no job running", file=sys.stderr)
            return ExitCode.SUCCESS
        if document.get("state") not in ("draining", "drained"):
            print(
                f"agent drain: the agent is {document.get('state')}, not draining", file=sys.stderr
            )
            return NO_AGENT
        line = f"waiting for job{'s' if len(running) > 1 else ''} {', '.join(map(str, running))}"
        if line != shown:
            print(line, file=sys.stderr)
            shown = line
        time.sleep(WAIT_POLL_SECONDS)


def run_resume(config: str | None, args: argparse.Namespace) -> int:
    _signal(config, signal.SIGUSR2, "resumed: taking jobs again")
    return ExitCode.SUCCESS
