"""Public value types of the reference server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """A user account; `staff` users may import templates, cancel and abort jobs."""

    name: str
    password: str
    staff: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, with the status it answered.

    `headers` has lower-case keys. `body` holds at most the first 64 KiB; `body_length`
    is the full length. `node_id` is the raw `Node-Id` header (or None); `time` is the
    epoch time the request arrived; `path` excludes the query string, kept in `query`.
    """

    method: str
    path: str
    query: str
    status: int
    headers: dict[str, str]
    body: bytes
    body_length: int
    node_id: str | None
    time: float
