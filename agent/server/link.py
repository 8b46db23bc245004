"""The server connection's state, told once per change rather than once per retry.

During an outage every call fails and is retried; logging each of them buries what an
operator needs: when the server went away and when it came back. The client reports
every answer (or none) here; the link logs the two transitions and keeps the state
``/readyz`` and the metrics read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

logger = structlog.get_logger("agent.server")

OUTAGE_STATUSES = frozenset({502, 503, 504})
"""Answers that mean the server is not there (a proxy or load balancer speaking for it).
Any other answer, a 500 included, comes from a server that is up."""


def answered(status: int | None) -> bool:
    """Whether a reply with ``status`` (None: no reply at all) shows the server is up."""
    return status is not None and status not in OUTAGE_STATUSES


@dataclass
class ServerLink:
    clock: Callable[[], float] = time.monotonic
    down_since: float | None = None
    """When the current outage began (``clock`` time); None while the server answers."""
    last_answer: float | None = None
    problem: str = ""
    outages: int = 0

    @property
    def up(self) -> bool:
        """The last call got an answer (True before any call: nothing is known wrong)."""
        return self.down_since is None

    def record(self, status: int | None, problem: str = "") -> None:
        """One call ended with ``status`` (None: no answer, ``problem`` says why)."""
        now = self.clock()
        if answered(status):
            self.last_answer = now
            if self.down_since is not None:
                logger.info(
                    "server reachable again",
                    down_for=round(now - self.down_since, 1),
                    after=self.problem,
                )
                self.down_since = None
            return
        self.problem = problem or f"HTTP {status}"
        if self.down_since is None:
            self.down_since = now
            self.outages += 1
            logger.warning(
                "server unreachable; retrying quietly until it answers", error=self.problem
            )


class CallObserver(Protocol):
    """Told about every request the client makes (the agent's metrics)."""

    def request(self, call: str, status: str, seconds: float) -> None:
        """One request ended: ``status`` is the HTTP status, or ``unreachable``."""

    def retry(self, call: str) -> None:
        """A call is being tried again."""

    def sent(self, nbytes: int) -> None:
        """Bytes of an output upload went out."""


_NUMBER = re.compile(r"/\d+(?=/|$)")
_OUTPUT = re.compile(r"(/outputs)/[^/]+/[^/]+")
_PROGRESS = re.compile(r"(/progress)/[^/]+$")


def call_name(method: str, path: str) -> str:
    """A request's call, without what varies (pks, output names, progress values), so
    that metrics have one series per call: ``POST /v1/jobs/{pk}/acquire``."""
    if path.startswith(("http://", "https://")):
        return f"{method} (external URL)"
    path = path.split("?", 1)[0]
    path = _NUMBER.sub("/{pk}", path)
    path = _OUTPUT.sub(r"\1/{name}/{type}", path)
    path = _PROGRESS.sub(r"\1/{value}", path)
    return f"{method} {path}"


def log_failed_call(
    log: Any,
    link: ServerLink,
    what: str,
    exc: BaseException,
    **details: object,
) -> None:
    """Log a call that failed for the server's trouble: a warning, but only debug while
    the link is down (the outage was logged once when it began)."""
    if link.up:
        log.warning(what, error=str(exc), **details)
    else:
        log.debug(what, error=str(exc), **details)
