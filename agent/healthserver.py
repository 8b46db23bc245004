"""``health.listen``: ``/healthz``, ``/readyz``, ``/metrics`` and ``/status`` over HTTP.

A few lines of HTTP/1.1 on the agent's own event loop rather than a web framework or a
thread: the endpoint answers only while the loop runs (a wedged loop is a dead probe),
it shares no state across threads, and it needs nothing beyond anyio. Each connection
gets one request, a reply and ``Connection: close``; slow or malformed clients are cut
off after a few seconds and can never reach the agent's state, which is read-only here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
import structlog

from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

logger = structlog.get_logger("agent.health")

REQUEST_LIMIT = 8192
"""Bytes of request line and headers read at most."""
CLIENT_SECONDS = 5.0
"""A client has this long to send its request and read the reply."""


class HealthListenError(Exception):
    """``health.listen`` cannot be bound (the port is in use, the address is not ours)."""


@dataclass(frozen=True)
class Endpoints:
    """What the endpoints read: functions of the running agent."""

    stalled: Callable[[], list[str]]
    why_not_ready: Callable[[], str | None]
    metrics: Callable[[], bytes]
    status: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def answer(method: str, target: str, endpoints: Endpoints) -> Reply:
    """The reply to one request: a pure function of the request and the endpoints."""
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return Reply(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET\n")
    if path == "/healthz":
        stalled = endpoints.stalled()
        if stalled:
            return Reply(
                HTTPStatus.SERVICE_UNAVAILABLE, f"stalled: {', '.join(stalled)}\n".encode()
            )
        return Reply(HTTPStatus.OK, b"ok\n")
    if path == "/readyz":
        why = endpoints.why_not_ready()
        if why is not None:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {why}\n".encode())
        return Reply(HTTPStatus.OK, b"ready\n")
    if path == "/metrics":
        return Reply(HTTPStatus.OK, endpoints.metrics(), METRICS_CONTENT_TYPE)
    if path == "/status":
        body = json.dumps(endpoints.status(), indent=2).encode() + b"\n"
        return Reply(HTTPStatus.OK, body, "application/json")
    return Reply(HTTPStatus.NOT_FOUND, b"not found: try /healthz /readyz /metrics /status\n")


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a host and a port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def render(reply: Reply, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {reply.status.value} {reply.status.phrase}\r\n"
        f"Content-Type: {reply.content_type}\r\n"
        f"Content-Length: {len(reply.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + reply.body


async def _read_request(stream: anyio.abc.ByteStream) -> tuple[str, str] | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > REQUEST_LIMIT:
            return None
        chunk = await stream.receive(4096)
        data += chunk
    parts = data.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return parts[0], parts[1]


async def _handle(stream: anyio.abc.SocketStream, endpoints: Endpoints) -> None:
    async with stream:
        with anyio.move_on_after(CLIENT_SECONDS):
            try:
                request = await _read_request(stream)
                if request is None:
                    reply = Reply(HTTPStatus.BAD_REQUEST, b"bad request\n")
                    await stream.send(render(reply, False))
                    return
                method, target = request
                reply = answer(method, target, endpoints)
                await stream.send(render(reply, method == "HEAD"))
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return  # the client went away


async def serve_health(
    listen: str,
    endpoints: Endpoints,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status`` gets the bound port. Raises
    :class:`HealthListenError` at once when ``listen`` cannot be bound."""
    host, port = split_listen(listen)
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        why = exc.strerror or str(exc)
        hint = " (another agent with this config?)" if "in use" in why else ""
        raise HealthListenError(f"health.listen: cannot listen on {listen}: {why}{hint}") from None
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
    logger.info("health endpoint listening", address=f"http://{listen.rsplit(':', 1)[0]}:{bound}")
    task_status.started(bound)
    async with listener:
        await listener.serve(lambda stream: _handle(stream, endpoints))
