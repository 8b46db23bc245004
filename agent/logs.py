"""Structured logging: JSON when not on a terminal, readable lines on one.

Every value passes through the agent's :class:`~agent.redact.Redactor` before it is
rendered, so a credential that slips into an event (an error message quoting a URL
with a token, say) is masked. Lines about a job carry ``job`` and ``node``: the job
runner binds them with :func:`structlog.contextvars.bind_contextvars`, and binds the
job's own redactor (which also masks the job's secrets) with :func:`bind_job_redactor`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import stamina.instrumentation
import structlog

from agent.redact import Redactor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


_job_redactor: ContextVar[Redactor | None] = ContextVar("agent_job_redactor", default=None)


def bind_job_redactor(redactor: Redactor | None) -> None:
    """Mask log lines of the current task (one job's) with ``redactor``, a child of the
    agent's (:meth:`~agent.redact.Redactor.with_secrets`); None: the agent's again."""
    _job_redactor.set(redactor)


class _RedactProcessor:
    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        redactor = _job_redactor.get() or self._redactor
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = redactor.redact(value)
            elif isinstance(value, BaseException | list | dict | tuple):
                event[key] = redactor.redact(str(value))
        return event


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: str = "info",
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> None:
    """Set up structlog for the whole process (call once, at start)."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if redactor is not None:
        processors.append(_RedactProcessor(redactor))
    processors.append(renderer)
    # stamina would log each retry with its internals ("callable": "<context block>");
    # the server link logs an outage once when it begins and once when it ends instead.
    stamina.instrumentation.set_on_retry_hooks([])
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "agent") -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
