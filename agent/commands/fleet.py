"""What the fleet commands share: who they log in as, and one client for it.

``agent submit``, ``jobs``, ``job``, ``nodes`` and ``reap`` talk to the job server as a
person, not as this host's agent: with ``--user NAME --password-file FILE``, else the
``[admin]`` section, else (for commands that need no staff rights) the ``[server]``
credentials. A password is never taken from the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from agent.commands.common import ConfigExit
from agent.config import Settings
from agent.logs import configure_logging
from agent.redact import Redactor
from agent.server import ServerClient


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    source: str
    """Where the credentials come from, for error lines: ``--user``, ``[admin]``, ``[server]``."""


def _read_secret(path: Path, what: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        _exit(f"{what}: cannot read {path}: {exc.strerror}")
    if not secret:
        _exit(f"{what}: {path} is empty")
    return secret


def _exit(line: str) -> NoReturn:
    print(f"agent: {line}", file=sys.stderr)
    raise ConfigExit(2)


def fleet_login(
    settings: Settings, user: str | None, password_file: str | None, *, staff: bool, command: str
) -> Login:
    """Who a fleet command logs in as; one line and exit 2 when it cannot say."""
    if user or password_file:
        if not (user and password_file):
            _exit(f"agent {command}: --user and --password-file go together")
        return Login(user, _read_secret(Path(password_file), "--password-file"), "--user")
    admin = settings.admin
    if admin.username:
        if admin.password_file is None:
            _exit("config: admin.password_file: needed with admin.username")
        return Login(
            admin.username, _read_secret(admin.password_file, "admin.password_file"), "[admin]"
        )
    if staff:
        _exit(
            f"agent {command} needs staff rights: set [admin] username and password_file,"
            " or give --user NAME --password-file FILE"
        )
    return Login(settings.server.username, settings.password, "[server]")


def fleet_client(settings: Settings, login: Login) -> ServerClient:
    """A client for ``login``; log lines (warnings and worse) masked as the agent's are."""
    redactor = Redactor(settings.run.redact, secrets=[settings.password, login.password])
    configure_logging(settings.log.format, "warning", redactor)
    return ServerClient(
        settings.server.url,
        login.username,
        login.password,
        timeout=settings.server.timeout,
        redactor=redactor,
    )
