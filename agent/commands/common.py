"""Start-up shared by the commands: config (exit 2 on error), logging, redactor, client."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import ConfigError, Settings, load_config
from agent.givebacks import FILE_NAME as GIVE_BACKS_FILE
from agent.givebacks import GiveBackBook
from agent.heap import keep_large_buffers
from agent.jobrun import AgentContext, JobObserver
from agent.jobuser import JobUserError, resolve_job_user
from agent.journal import Journal
from agent.logs import configure_logging
from agent.redact import Redactor
from agent.selfguard import forget_secret_env
from agent.server import ServerClient
from agent.statedir import StateDirError, prepare
from executors.identity import JobUser


class ConfigExit(SystemExit):
    """Raised after printing configuration errors: exit code 2."""


def settings_or_exit(
    cli_path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    secrets: bool = True,
) -> Settings:
    try:
        settings = load_config(cli_path, overrides=overrides, secrets=secrets)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        raise ConfigExit(2) from None
    forget_secret_env(os.environ)  # read; no child or /proc reader gets it from us now
    return settings


def job_user_or_exit(settings: Settings) -> JobUser:
    """Who jobs run as, with the state and work directories made safe for that; one
    line and exit 2 when the account is missing or a directory cannot be made safe."""
    try:
        user = resolve_job_user(settings.run)
        prepare(settings.state_dir, settings.work_dir, user)
    except (JobUserError, StateDirError) as exc:
        print(exc, file=sys.stderr)
        raise ConfigExit(2) from None
    return user


def make_redactor(settings: Settings) -> Redactor:
    return Redactor(settings.run.redact, secrets=[settings.password])


def setup(settings: Settings) -> Redactor:
    keep_large_buffers()
    redactor = make_redactor(settings)
    configure_logging(settings.log.format, settings.log.level, redactor)
    return redactor


def agent_context(
    settings: Settings,
    client: ServerClient,
    redactor: Redactor,
    job_user: JobUser,
    observer: JobObserver | None = None,
) -> AgentContext:
    """What every job of this agent shares; the journal and the give-back book live in
    ``state_dir``."""
    return AgentContext(
        settings,
        client,
        redactor,
        Journal(settings.state_dir / "journal"),
        job_user=job_user,
        give_backs=GiveBackBook(settings.state_dir / GIVE_BACKS_FILE),
        observer=observer,
    )


def make_client(settings: Settings, redactor: Redactor) -> ServerClient:
    server = settings.server
    return ServerClient(
        server.url, server.username, settings.password, timeout=server.timeout, redactor=redactor
    )
