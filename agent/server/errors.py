"""Errors of the server client, classified once from status codes and httpx exceptions.

Retry classification (:func:`retry_delay`) lives here too: network errors, 429 and
5xx are retried (honouring ``Retry-After``); other 4xx are not.
"""

from __future__ import annotations

import re

import httpx

MAX_RETRY_AFTER = 120.0


class ServerError(Exception):
    """The server answered with an error status."""

    status: int = 0

    def __init__(
        self,
        status: int,
        detail: str,
        method: str,
        path: str,
        retry_after: float | None = None,
        body: object = None,
    ) -> None:
        super().__init__(f"{method} {path}: {status} {detail}".rstrip())
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        self.retry_after = retry_after
        self.body = body
        """The decoded JSON body of the answer, when it was JSON."""


class BadRequest(ServerError):
    """400: the request is malformed, or the server refuses it (duplicate output...)."""


class AuthError(ServerError):
    """401 that survived a token refresh: wrong username or password."""


class Forbidden(ServerError):
    """403: not the owner, not staff, or no Node-Id."""


class NotFound(ServerError):
    """404 (also the server's answer to a malformed progress value)."""


class Conflict(ServerError):
    """406: the job is not in a state that allows this call."""


class JobTaken(Conflict):
    """406 on acquire: another node holds the job, or it is finished."""


class NotStarted(ServerError):
    """417: outputs cannot be added to a job that has not started."""


class ServerFault(ServerError):
    """5xx (often a bare assert on the server: an HTML body)."""


class RateLimited(ServerError):
    """429."""


class ServerUnreachable(Exception):
    """No answer: connection refused or reset, DNS failure, timeout."""

    def __init__(self, method: str, path: str, cause: BaseException) -> None:
        kind = type(cause).__name__
        super().__init__(f"{method} {path}: server unreachable ({kind}: {cause})".rstrip(": "))
        self.method = method
        self.path = path


_BY_STATUS: dict[int, type[ServerError]] = {
    400: BadRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    406: Conflict,
    417: NotStarted,
    429: RateLimited,
}

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


class TooLarge(Exception):
    """A download went past the byte limit it was given (or announced it would)."""

    def __init__(self, url: str, size: int, limit: int) -> None:
        self.url = url
        self.size = size
        """Bytes written before it was stopped, or the announced ``Content-Length``."""
        self.limit = limit
        super().__init__(f"{url}: more than {limit} bytes")


def json_body(response: httpx.Response) -> object:
    try:
        body: object = response.json()
    except ValueError:
        return None
    return body


def field_errors(body: object) -> str | None:
    """A validation answer (``{"field": ["message", ...], ...}``) as one line,
    ``field: message; other: message``; None for any other body."""
    if not isinstance(body, dict) or not body or "detail" in body:
        return None
    parts = []
    for field, messages in body.items():
        texts = messages if isinstance(messages, list) else [messages]
        parts.append(f"{field}: {' '.join(str(text) for text in texts)}")
    return "; ".join(parts)


def detail_of(response: httpx.Response) -> str:
    """The ``detail`` of a JSON error body, or a short plain-text digest of anything else."""
    body = json_body(response)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    if body is not None:
        return str(body)[:300]
    text = _SPACE.sub(" ", _TAG.sub(" ", response.text)).strip()
    return text[:300]


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_for(response: httpx.Response, method: str, path: str) -> ServerError:
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerFault if status >= 500 else ServerError)
    return cls(
        status,
        detail_of(response),
        method,
        path,
        parse_retry_after(response.headers.get("retry-after")),
        json_body(response),
    )


TRANSIENT_STATUSES = frozenset({502, 503, 504})


def retry_delay(exc: Exception, *, retry_500: bool) -> bool | float:
    """Whether (and after how long) to try a call again after ``exc``.

    Returns False (do not retry), True (back off as usual) or seconds to wait (from
    ``Retry-After``): the shape of a stamina backoff hook. A plain 500 is what the
    job server's bare asserts answer to a call that cannot succeed (a second finish,
    progress before start), so calls that change state do not retry it.
    """
    if isinstance(exc, ServerUnreachable):
        return True
    if isinstance(exc, RateLimited) or (
        isinstance(exc, ServerFault) and (exc.status in TRANSIENT_STATUSES or retry_500)
    ):
        return exc.retry_after if exc.retry_after is not None else True
    return False
