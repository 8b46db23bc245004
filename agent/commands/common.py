"""Start-up shared by the commands: config (exit 2 on error), logging, redactor, client."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config import ConfigError, Settings, load_config
from agent.logs import configure_logging
from agent.redact import Redactor
from agent.server import ServerClient


class ConfigExit(SystemExit):
    """Raised after printing configuration errors: exit code 2."""


def settings_or_exit(
    cli_path: str | Path | None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    try:
        return load_config(cli_path, overrides=overrides)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        raise ConfigExit(2) from None


def make_redactor(settings: Settings) -> Redactor:
    return Redactor(settings.run.redact, secrets=[settings.password])


def setup(settings: Settings) -> Redactor:
    redactor = make_redactor(settings)
    configure_logging(settings.log.format, settings.log.level, redactor)
    return redactor


def make_client(settings: Settings, redactor: Redactor) -> ServerClient:
    server = settings.server
    return ServerClient(
        server.url, server.username, settings.password, timeout=server.timeout, redactor=redactor
    )
