"""HTTP/1.1 to the job server on ``h11``, over kept-alive connections.

:class:`KeepAliveTransport` is an ``httpx`` transport (the library's extension point for
how requests travel) for the server's own calls when no proxy applies to its URL. It
does what ``httpcore``'s pool does for them with a fraction of the work: ``h11`` (the
HTTP/1.1 state machine ``httpcore`` itself runs on) over an ``anyio`` stream, an idle
connection reused while it is younger than :data:`KEEPALIVE_EXPIRY` and the server has
not closed it. A server call is most of what the agent does for a short job, and on
this path it takes about a third of the CPU it takes through ``httpcore``.

Failures are ``httpx``'s own exceptions (:class:`httpx.ConnectError`,
:class:`httpx.ReadTimeout`, :class:`httpx.RemoteProtocolError`, ...), so callers treat
them as they treat any transport's. A connection that failed, was cancelled mid-call, or
that the server marked ``Connection: close`` is closed, never reused.
"""

from __future__ import annotations

import contextlib
import select
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.abc
import h11
import httpx

from agent.server.filebody import FILE_BODY, FileBody, send_parts

#: Seconds an idle connection is kept for reuse (``httpx``'s default keep-alive expiry):
#: servers close idle connections after a while, and reusing one just as the server
#: closes it fails the call.
KEEPALIVE_EXPIRY = 5.0

#: Idle connections kept per origin (``httpx``'s default ``max_keepalive_connections``).
MAX_IDLE = 20

#: Bytes asked for at once when reading an answer.
READ_SIZE = 64 * 1024

_DEFAULT_PORTS = {b"http": 80, b"https": 443}

Origin = tuple[bytes, str, int]


@dataclass
class _Connection:
    stream: anyio.abc.ByteStream
    protocol: h11.Connection
    socket: Any
    """The stream's socket (asyncio's wrapper of it), polled while the connection is idle."""
    plain: bool = False
    """No TLS on it: a request's file body may go straight into the socket."""
    idle_since: float = 0.0


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 requests on ``h11``, with idle connections kept per origin.

    ``ssl_context`` makes the context for ``https`` origins, once, when the first one
    is met; by default ``httpx``'s (certificates from ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR`` when set, else ``certifi``'s bundle), as ``httpx`` itself uses.
    """

    def __init__(
        self, ssl_context: Callable[[], ssl.SSLContext] = httpx.create_ssl_context
    ) -> None:
        self._make_ssl_context = ssl_context
        self._ssl_context: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.raw_scheme, url.host, url.port or _DEFAULT_PORTS.get(url.raw_scheme, 80))
        connection = await self._idle_connection(origin)
        if connection is None:
            connection = await self._connect(origin, timeouts.get("connect"), request)
        try:
            response = await _exchange(connection, request, timeouts)
        except BaseException:
            await _close(connection)
            raise
        protocol = connection.protocol
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            await self._keep(origin, connection)
        else:  # the server answered "Connection: close" (or spoke HTTP/1.0)
            await _close(connection)
        return response

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await _close(connection)

    async def _idle_connection(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` that may still be used;
        those that may not (expired, or closed or written to by the server) are closed."""
        connections = self._idle.get(origin)
        now = time.monotonic()
        while connections:
            connection = connections.pop()
            if now - connection.idle_since < KEEPALIVE_EXPIRY and _quiet(connection.socket):
                return connection
            await _close(connection)
        return None

    async def _keep(self, origin: Origin, connection: _Connection) -> None:
        connections = self._idle.setdefault(origin, [])
        if len(connections) >= MAX_IDLE:
            await _close(connection)
            return
        connection.idle_since = time.monotonic()
        connections.append(connection)

    async def _connect(
        self, origin: Origin, timeout: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == b"https":
            if self._ssl_context is None:
                self._ssl_context = self._make_ssl_context()
            context = self._ssl_context
        try:
            with anyio.fail_after(timeout):
                stream: anyio.abc.ByteStream
                if context is None:
                    stream = await anyio.connect_tcp(host, port)
                else:
                    stream = await anyio.connect_tcp(
                        host,
                        port,
                        ssl_context=context,
                        tls_hostname=host,
                        tls_standard_compatible=False,
                    )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=request
            ) from exc
        except (OSError, anyio.BrokenResourceError) as exc:  # ssl.SSLError is an OSError
            raise httpx.ConnectError(
                f"connecting to {host}:{port}: {exc}", request=request
            ) from exc
        raw_socket = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)  # noqa: S610 (not Django)
        plain = context is None and raw_socket is not None
        return _Connection(stream, h11.Connection(h11.CLIENT), raw_socket, plain)


async def _exchange(
    connection: _Connection, request: httpx.Request, timeouts: dict[str, float | None]
) -> httpx.Response:
    """Send ``request`` on ``connection`` and read the whole answer."""
    protocol = connection.protocol
    head = protocol.send(
        h11.Request(
            method=request.method.encode("ascii"),
            target=request.url.raw_path,
            headers=list(request.headers.raw),
        )
    )
    write_timeout = timeouts.get("write")
    file_body = request.extensions.get(FILE_BODY)
    if isinstance(file_body, FileBody) and connection.plain:
        return await _exchange_from_file(connection, request, head, file_body, timeouts)
    try:
        body = request.content
    except httpx.RequestNotRead:  # a streamed body (an upload): sent as it comes
        body = None
    try:
        if body is None:
            await _send(connection.stream, head, write_timeout, request)
            async for chunk in request.stream:  # type: ignore[union-attr]
                if chunk:
                    data = protocol.send(h11.Data(data=chunk))
                    await _send(connection.stream, data, write_timeout, request)
            await _send(
                connection.stream, protocol.send(h11.EndOfMessage()), write_timeout, request
            )
        else:
            parts = [head]
            if body:
                parts.append(protocol.send(h11.Data(data=body)))
            parts.append(protocol.send(h11.EndOfMessage()))
            await _send(connection.stream, b"".join(parts), write_timeout, request)
    except h11.LocalProtocolError as exc:  # a body longer or shorter than announced
        raise httpx.LocalProtocolError(str(exc), request=request) from exc
    return await _answer(connection, request, timeouts.get("read"))


async def _exchange_from_file(
    connection: _Connection,
    request: httpx.Request,
    head: bytes,
    body: FileBody,
    timeouts: dict[str, float | None],
) -> httpx.Response:
    """:func:`_exchange` for a request whose body is a file, on a connection without
    TLS: the head and the file go out in one worker thread (:func:`send_parts`)."""
    protocol = connection.protocol
    try:
        # h11's way for sendfile: the body stands in for its bytes, and comes back
        # among the pieces to send (with any framing around it).
        framed = protocol.send_with_data_passthrough(h11.Data(data=cast("bytes", body)))
        end = protocol.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:  # a body longer or shorter than announced
        raise httpx.LocalProtocolError(str(exc), request=request) from exc
    parts: list[bytes | FileBody] = [head, *(framed or ()), end or b""]
    with _writing(request):
        await send_parts(connection.socket.fileno(), [p for p in parts if p], timeouts.get("write"))
    return await _answer(connection, request, timeouts.get("read"))


async def _answer(
    connection: _Connection, request: httpx.Request, timeout: float | None
) -> httpx.Response:
    """The server's answer on ``connection``, read whole (1xx answers skipped)."""
    event = await _next_event(connection, timeout, request)
    while isinstance(event, h11.InformationalResponse):
        event = await _next_event(connection, timeout, request)
    if not isinstance(event, h11.Response):
        raise httpx.RemoteProtocolError(
            "the server closed the connection without answering", request=request
        )
    chunks: list[bytes] = []
    part = await _next_event(connection, timeout, request)
    while isinstance(part, h11.Data):
        chunks.append(bytes(part.data))
        part = await _next_event(connection, timeout, request)
    if not isinstance(part, h11.EndOfMessage):
        raise httpx.RemoteProtocolError(
            "the server closed the connection in the middle of its answer", request=request
        )
    return httpx.Response(
        event.status_code,
        headers=list(event.headers),
        stream=httpx.ByteStream(b"".join(chunks)),
        extensions={
            "http_version": b"HTTP/" + event.http_version,
            "reason_phrase": event.reason,
        },
        request=request,
    )


async def _next_event(
    connection: _Connection, timeout: float | None, request: httpx.Request
) -> object:
    protocol = connection.protocol
    try:
        event = protocol.next_event()
        while event is h11.NEED_DATA:
            try:
                with anyio.fail_after(timeout):
                    data = await connection.stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                data = b""
            protocol.receive_data(data)
            event = protocol.next_event()
    except TimeoutError as exc:
        raise httpx.ReadTimeout("the server did not answer in time", request=request) from exc
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        raise httpx.ReadError(f"reading the answer failed: {exc}", request=request) from exc
    return event


async def _send(
    stream: anyio.abc.ByteStream, data: bytes, timeout: float | None, request: httpx.Request
) -> None:
    with _writing(request), anyio.fail_after(timeout):
        await stream.send(data)


@contextlib.contextmanager
def _writing(request: httpx.Request) -> Iterator[None]:
    """A failure to send ``request`` as ``httpx``'s own write errors."""
    try:
        yield
    except TimeoutError as exc:
        raise httpx.WriteTimeout("sending the request timed out", request=request) from exc
    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        raise httpx.WriteError(f"sending the request failed: {exc}", request=request) from exc


def _quiet(sock: Any) -> bool:
    """Whether an idle connection's socket has nothing to read: a server that closed it
    (or sent something unasked) makes it unusable. Reading is paused while a connection
    is idle, so what the server sent is still in the socket, where a poll sees it."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)


async def _close(connection: _Connection) -> None:
    with anyio.CancelScope(shield=True):
        await connection.stream.aclose()


class DeferredTransport(httpx.AsyncBaseTransport):
    """``httpx``'s own transport (:class:`httpx.AsyncHTTPTransport`, with its defaults),
    made when the first request needs it.

    Making it builds an SSL context and reads the whole certificate bundle (some 40 ms
    of CPU), which an agent whose server calls all go on a :class:`KeepAliveTransport`
    over plain ``http`` never needs; only a download from a URL does.
    """

    def __init__(self) -> None:
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport()
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
