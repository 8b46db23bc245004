"""Expected failures of the commands, as one line and an exit code (never a traceback).

Task groups wrap what their tasks raise in ``ExceptionGroup``s; :func:`leaves` looks
through them, so the error a user sees is the one that happened.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from agent.daemon import JobNotFound, NoSlots, RegistrationRefused
from agent.healthserver import HealthListenError
from agent.outcome import ExitCode
from agent.server import AuthError, RateLimited, ServerError, ServerUnreachable

_T = TypeVar("_T")


@dataclass(frozen=True)
class Failure:
    code: ExitCode
    line: str


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups flattened (``exc`` itself if none)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def explain(exc: BaseException, server_url: str) -> Failure | None:
    """The expected failure inside ``exc`` (the first, if several), or None for a bug."""
    for leaf in leaves(exc):
        failure = _explain_one(leaf, server_url)
        if failure is not None:
            return failure
    return None


def _explain_one(exc: BaseException, url: str) -> Failure | None:
    if isinstance(exc, AuthError):
        return Failure(ExitCode.REFUSED, f"agent: {url}: {exc.detail}")
    if isinstance(exc, RegistrationRefused):
        return Failure(ExitCode.REFUSED, f"agent: {url}: {exc}")
    if isinstance(exc, HealthListenError | NoSlots):
        return Failure(ExitCode.USAGE, f"agent: {exc}")
    if isinstance(exc, JobNotFound):
        return Failure(ExitCode.NO_SUCH_JOB, f"agent: {exc} ({url})")
    if isinstance(exc, ServerUnreachable):
        cause = exc.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        return Failure(ExitCode.SERVER_UNAVAILABLE, f"agent: cannot reach the server {url}: {why}")
    if isinstance(exc, ServerError):
        if exc.status >= 500 or isinstance(exc, RateLimited):
            return Failure(ExitCode.SERVER_UNAVAILABLE, f"agent: the server keeps failing: {exc}")
        return Failure(ExitCode.REFUSED, f"agent: the server refused a call: {exc}")
    return None


def run_or_exit(main: Callable[[], Awaitable[_T]], server_url: str) -> _T:
    """Run ``main`` (a command's session with the server); an expected failure is one
    line on stderr and ``SystemExit`` with its code. Anything else is raised as it is."""
    try:
        return anyio.run(main)
    except Exception as exc:
        failure = explain(exc, server_url)
        if failure is None:
            raise
        print(failure.line, file=sys.stderr)
        raise SystemExit(failure.code) from None
