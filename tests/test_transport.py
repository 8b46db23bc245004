"""The server calls' HTTP/1.1 transport against a server on 127.0.0.1 whose every
answer the test writes byte for byte: connections kept and reused, given up when the
server closes them, expired, marked ``Connection: close``, cut mid-answer, silent, or
left mid-call by a cancelled request; bodies streamed, chunked, compressed, sent from
a file; TLS."""

from __future__ import annotations

import gzip
import itertools
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import h11
import httpx
import pytest

from agent.server import transport as transport_module
from agent.server.client import ServerClient
from agent.server.filebody import FILE_BODY, FileBody
from agent.server.transport import KeepAliveTransport

pytestmark = pytest.mark.anyio

TLS = Path(__file__).parent / "tls"
"""A self-signed certificate for localhost, 127.0.0.1 and ::1 (and its key), for tests."""


@dataclass
class Seen:
    number: int
    """The request's number on the server, from 1."""
    connection: int
    """The connection it came on, from 1."""
    request: h11.Request
    body: bytes


Answer = Callable[[Seen, socket.socket], bool]
"""Writes the answer to a request on the socket; False closes the connection after it."""


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def echo(seen: Seen, sock: socket.socket) -> bool:
    """Answers with the request's number and body length."""
    sock.sendall(reply(f"{seen.number} {len(seen.body)}".encode()))
    return True


@dataclass
class RawServer:
    """HTTP/1.1 on 127.0.0.1, a thread per connection, answers from ``answer``."""

    answer: Answer
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _serve(self, sock: socket.socket, connection: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            leftover = b""
            while True:
                parser = h11.Connection(h11.SERVER)
                if leftover:  # (no data at all would tell it the client closed)
                    parser.receive_data(leftover)
                request, body = None, bytearray()
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        parser.receive_data(sock.recv(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:  # the client closed the connection
                        return
                assert request is not None
                leftover = parser.trailing_data[0]
                with self._lock:
                    seen = Seen(next(self._numbers), connection, request, bytes(body))
                    self.seen.append(seen)
                if not self.answer(seen, sock):
                    return
        except (OSError, h11.RemoteProtocolError):  # the client went away (mid-request too)
            return
        except BaseException as exc:  # shown by the test that owns the server
            self.errors.append(exc)
        finally:
            sock.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answer = echo, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(answer, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
        assert not server.errors, server.errors


async def call(
    transport: httpx.AsyncBaseTransport,
    url: str,
    *,
    content: bytes | AsyncIterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> httpx.Response:
    request = httpx.Request(
        "POST",
        url,
        content=content,
        headers=headers,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


async def test_calls_share_one_kept_connection(serve: Callable[..., RawServer]) -> None:
    server = serve()
    transport = KeepAliveTransport()
    try:
        bodies = [
            (await call(transport, f"{server.url}/v1/x?n={n}", content=b"ab")).text
            for n in range(5)
        ]
    finally:
        await transport.aclose()
    assert bodies == ["1 2", "2 2", "3 2", "4 2", "5 2"]
    assert server.connections == 1
    assert [seen.request.target for seen in server.seen] == [
        f"/v1/x?n={n}".encode() for n in range(5)
    ]
    assert (b"host", f"127.0.0.1:{server.port}".encode()) in server.seen[0].request.headers


async def test_concurrent_calls_each_get_a_connection(serve: Callable[..., RawServer]) -> None:
    both_in = threading.Barrier(2, timeout=5)

    def answer_when_both_arrived(seen: Seen, sock: socket.socket) -> bool:
        if seen.number <= 2:
            both_in.wait()
        return echo(seen, sock)

    server = serve(answer_when_both_arrived)
    transport = KeepAliveTransport()
    try:
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(call, transport, server.url)
        await call(transport, server.url)
    finally:
        await transport.aclose()
    assert server.connections == 2  # the third call reused one of them


async def test_a_connection_the_server_closed_is_not_reused(
    serve: Callable[..., RawServer],
) -> None:
    closed = threading.Event()

    def answer_then_close(seen: Seen, sock: socket.socket) -> bool:
        echo(seen, sock)
        if seen.number == 1:
            sock.close()
            closed.set()
            return False
        return True

    server = serve(answer_then_close)
    transport = KeepAliveTransport()
    try:
        assert (await call(transport, server.url)).text == "1 0"
        await anyio.to_thread.run_sync(closed.wait)
        assert (await call(transport, server.url)).text == "2 0"
    finally:
        await transport.aclose()
    assert server.connections == 2


async def test_connection_close_from_the_server_is_honoured(
    serve: Callable[..., RawServer],
) -> None:
    def answer_with_close(seen: Seen, sock: socket.socket) -> bool:
        sock.sendall(reply(b"bye", "Connection: close"))
        return True  # the server would even go on: the client must not

    server = serve(answer_with_close)
    transport = KeepAliveTransport()
    try:
        for _ in range(2):
            assert (await call(transport, server.url)).text == "bye"
    finally:
        await transport.aclose()
    assert server.connections == 2


async def test_an_expired_idle_connection_is_replaced(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport_module, "KEEPALIVE_EXPIRY", 0.0)
    server = serve()
    transport = KeepAliveTransport()
    try:
        for _ in range(3):
            await call(transport, server.url)
    finally:
        await transport.aclose()
    assert server.connections == 3


async def test_an_answer_cut_short_is_a_protocol_error(serve: Callable[..., RawServer]) -> None:
    def cut_first(seen: Seen, sock: socket.socket) -> bool:
        if seen.number == 1:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!")
            return False
        return echo(seen, sock)

    server = serve(cut_first)
    transport = KeepAliveTransport()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await call(transport, server.url)
        assert (await call(transport, server.url)).text == "2 0"
    finally:
        await transport.aclose()
    assert server.connections == 2


async def test_no_answer_at_all_is_a_protocol_error(serve: Callable[..., RawServer]) -> None:
    server = serve(lambda seen, sock: False)
    transport = KeepAliveTransport()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await call(transport, server.url)
    finally:
        await transport.aclose()


async def test_a_silent_server_is_a_read_timeout(serve: Callable[..., RawServer]) -> None:
    released = threading.Event()

    def silent_first(seen: Seen, sock: socket.socket) -> bool:
        if seen.number == 1:
            released.wait(10)
            return False
        return echo(seen, sock)

    server = serve(silent_first)
    transport = KeepAliveTransport()
    try:
        with anyio.fail_after(5), pytest.raises(httpx.ReadTimeout):
            await call(transport, server.url, timeout=0.2)
        assert (await call(transport, server.url)).text == "2 0"
    finally:
        released.set()
        await transport.aclose()


async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    transport = KeepAliveTransport()
    with pytest.raises(httpx.ConnectError):
        await call(transport, f"http://127.0.0.1:{port}/")


async def test_a_cancelled_call_does_not_leave_its_answer_to_the_next(
    serve: Callable[..., RawServer],
) -> None:
    arrived, cancelled = threading.Event(), threading.Event()

    def late_first(seen: Seen, sock: socket.socket) -> bool:
        if seen.number == 1:
            arrived.set()
            cancelled.wait(10)
        return echo(seen, sock)

    server = serve(late_first)
    transport = KeepAliveTransport()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(call, transport, server.url)
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(arrived.wait)
            group.cancel_scope.cancel()  # while it waits for the answer
        cancelled.set()
        assert (await call(transport, server.url)).text == "2 0"
    finally:
        await transport.aclose()
    assert server.connections == 2


async def test_a_streamed_body_arrives_whole(serve: Callable[..., RawServer]) -> None:
    server = serve()
    piece = bytes(range(256)) * 4096  # 1 MiB

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield piece

    transport = KeepAliveTransport()
    try:
        sized = await call(
            transport, server.url, content=pieces(), headers={"Content-Length": str(8 * len(piece))}
        )
        chunked = await call(transport, server.url, content=pieces())
    finally:
        await transport.aclose()
    assert sized.text == f"1 {8 * len(piece)}"
    assert chunked.text == f"2 {8 * len(piece)}"
    assert server.seen[0].body == piece * 8
    assert (b"transfer-encoding", b"chunked") in server.seen[1].request.headers


async def test_a_body_shorter_than_announced_is_refused(serve: Callable[..., RawServer]) -> None:
    server = serve()

    async def short() -> AsyncIterator[bytes]:
        yield b"abc"

    transport = KeepAliveTransport()
    try:
        with pytest.raises(httpx.LocalProtocolError):
            await call(transport, server.url, content=short(), headers={"Content-Length": "10"})
    finally:
        await transport.aclose()
    assert server.seen == []  # no request came whole


async def test_chunked_compressed_and_informational_answers(
    serve: Callable[..., RawServer],
) -> None:
    packed = gzip.compress(b'{"ok": true}')

    def answer(seen: Seen, sock: socket.socket) -> bool:
        if seen.number == 1:
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        elif seen.number == 2:
            sock.sendall(reply(packed, "Content-Encoding: gzip", "Content-Type: application/json"))
        else:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"after", status="201 Created"))
        return True

    server = serve(answer)
    transport = KeepAliveTransport()
    try:
        chunked = await call(transport, server.url)
        compressed = await call(transport, server.url)
        informed = await call(transport, server.url)
    finally:
        await transport.aclose()
    assert chunked.text == "hello world"
    assert compressed.json() == {"ok": True}
    assert (informed.status_code, informed.text) == (201, "after")
    assert informed.extensions["http_version"] == b"HTTP/1.1"
    assert server.connections == 1


async def _never() -> AsyncIterator[bytes]:
    """A streamed body that must not be read (the file route was to be taken)."""
    raise AssertionError("the body was streamed, not sent from its file")
    yield b""  # pragma: no cover


async def file_call(
    transport: httpx.AsyncBaseTransport,
    url: str,
    body: FileBody,
    *,
    stream: AsyncIterator[bytes] | None = None,
    length: bool = True,
    timeout: float = 5.0,
) -> httpx.Response:
    """A POST whose body is ``body``, as the server client sends an output."""
    request = httpx.Request(
        "POST",
        url,
        content=_never() if stream is None else stream,
        headers={"Content-Length": str(body.size)} if length else None,
        extensions={"timeout": httpx.Timeout(timeout).as_dict(), FILE_BODY: body},
    )
    response = await transport.handle_async_request(request)
    await response.aread()
    return response


def _file(tmp_path: Path, data: bytes) -> int:
    (tmp_path / "output.bin").write_bytes(data)
    return os.open(tmp_path / "output.bin", os.O_RDONLY)


async def test_a_file_body_goes_from_the_file_into_the_socket(
    serve: Callable[..., RawServer], tmp_path: Path
) -> None:
    """On a plain connection the body is not streamed through Python; with or without
    a length (chunked framing around it), it arrives whole, and the connection is kept."""
    server = serve()
    data = os.urandom(3 * 1024 * 1024 + 17)
    fd = _file(tmp_path, data)
    told: list[int] = []
    transport = KeepAliveTransport()
    try:
        sized = await file_call(transport, server.url, FileBody(fd, len(data), told.append))
        chunked = await file_call(transport, server.url, FileBody(fd, len(data)), length=False)
        after = await call(transport, server.url, content=b"ab")
    finally:
        await transport.aclose()
        os.close(fd)
    assert [sized.text, chunked.text, after.text] == [f"1 {len(data)}", f"2 {len(data)}", "3 2"]
    assert server.seen[0].body == data and server.seen[1].body == data
    assert (b"transfer-encoding", b"chunked") in server.seen[1].request.headers
    assert sum(told) == len(data)
    assert server.connections == 1


async def test_over_tls_a_file_body_is_streamed(
    serve: Callable[..., RawServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sendfile`` would pass TLS by: over ``https`` the body goes the streamed way."""
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "localhost.pem"))
    server = serve(tls=_server_tls())
    data = os.urandom(2 * 1024 * 1024 + 5)
    fd = _file(tmp_path, data)
    body = FileBody(fd, len(data))
    transport = KeepAliveTransport()
    try:
        response = await file_call(transport, server.url, body, stream=body())
    finally:
        await transport.aclose()
        os.close(fd)
    assert response.text == f"1 {len(data)}"
    assert server.seen[0].body == data


@pytest.fixture
def deaf() -> Iterator[tuple[str, list[socket.socket]]]:
    """A server on 127.0.0.1 that accepts connections and never reads from them."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for sock in accepted:
        sock.close()


async def test_a_file_body_the_server_does_not_take_is_a_write_timeout(
    deaf: tuple[str, list[socket.socket]], tmp_path: Path
) -> None:
    url, _ = deaf
    fd = os.open(tmp_path / "big.bin", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 256 << 20)
    transport = KeepAliveTransport()
    try:
        with anyio.fail_after(30), pytest.raises(httpx.WriteTimeout):
            await file_call(transport, url, FileBody(fd, 256 << 20), timeout=0.3)
    finally:
        await transport.aclose()
        os.close(fd)


async def test_a_cancelled_file_upload_closes_its_connection(
    deaf: tuple[str, list[socket.socket]], tmp_path: Path
) -> None:
    """Cancelled mid-body, the call returns (its sending thread stopped first) and the
    connection is closed: the server sees its end, and the next call gets a new one."""
    url, accepted = deaf
    fd = os.open(tmp_path / "big.bin", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 256 << 20)
    transport = KeepAliveTransport()
    try:
        with anyio.fail_after(30):
            with anyio.move_on_after(0.3) as scope:
                await file_call(transport, url, FileBody(fd, 256 << 20), timeout=60)
            assert scope.cancelled_caught
            assert not any(transport._idle.values())  # not kept for reuse
            server_end = accepted[0]
            server_end.settimeout(10)
            while server_end.recv(1 << 20):  # what was sent, then the end
                pass
    finally:
        await transport.aclose()
        os.close(fd)


def _server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "localhost.pem", TLS / "localhost.key")
    return context


async def test_https_trusts_ssl_cert_file_as_httpx_does(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "localhost.pem"))
    server = serve(tls=_server_tls())
    transport = KeepAliveTransport()
    try:
        for _ in range(2):
            assert (await call(transport, server.url)).status_code == 200
    finally:
        await transport.aclose()
    assert server.connections == 1


async def test_https_refuses_an_untrusted_certificate(serve: Callable[..., RawServer]) -> None:
    server = serve(tls=_server_tls())
    transport = KeepAliveTransport(ssl_context=ssl.create_default_context)
    with pytest.raises(httpx.ConnectError):
        await call(transport, server.url)


async def test_the_server_client_keeps_its_connection(serve: Callable[..., RawServer]) -> None:
    def server_of_nodes(seen: Seen, sock: socket.socket) -> bool:
        if seen.request.target.endswith(b"/auth/obtain"):
            body = b'{"access": "token", "refresh": "again"}'
        else:
            body = b"[]"
        sock.sendall(reply(body, "Content-Type: application/json"))
        return True

    server = serve(server_of_nodes)
    async with ServerClient(server.url, "node", "secret") as client:
        for _ in range(3):
            assert await client.list_nodes({}) == []
    assert server.connections == 1
    assert [seen.request.target for seen in server.seen] == [
        b"/v1/auth/obtain",
        *[b"/v1/nodes/list"] * 3,
    ]
    assert all(
        (b"authorization", b"Bearer token") in seen.request.headers for seen in server.seen[1:]
    )


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_httpx_own_transport_is_made_on_first_use(
    serve: Callable[..., RawServer],
) -> None:
    """The deferred transport builds ``httpx``'s transport (and its SSL context) only
    when a request needs it, then carries that and later requests."""
    server = serve(echo)
    deferred = transport_module.DeferredTransport()
    async with httpx.AsyncClient(transport=deferred) as client:
        assert deferred._transport is None
        assert (await client.post(server.url, content=b"abc")).text == "1 3"
        made = deferred._transport
        assert isinstance(made, httpx.AsyncHTTPTransport)
        assert (await client.get(server.url)).text == "2 0"
        assert deferred._transport is made
    await transport_module.DeferredTransport().aclose()  # never used: nothing to close


async def test_server_calls_never_make_the_clients_own_transport(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a proxy in the environment the server's calls all go on the kept-alive
    transport: the client's own (for downloads) is never built, nor its SSL context."""
    without_proxies(monkeypatch)

    def logins(seen: Seen, sock: socket.socket) -> bool:
        sock.sendall(reply(b'{"access": "token", "refresh": "again"}'))
        return True

    server = serve(logins)
    async with ServerClient(server.url, "node", "secret") as client:
        await client.obtain()
        own = client._http._transport
        assert isinstance(own, transport_module.DeferredTransport)
        assert own._transport is None
    assert server.connections == 1


async def test_with_a_proxy_in_the_environment_the_client_makes_its_transports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transport handed to ``httpx`` turns its environment proxies off: with one set,
    the client is left to make its own, the proxy's included."""
    without_proxies(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with ServerClient("http://127.0.0.1:9", "node", "secret") as client:
        assert isinstance(client._http._transport, httpx.AsyncHTTPTransport)
        assert client._http._transport_for_url(httpx.URL("https://example.org/")) is not (
            client._http._transport
        )
