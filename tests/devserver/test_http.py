"""HTTP-level behaviour: keep-alive, framing errors, surviving bad input, IPv6 URLs."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from agent.devserver import DevServer

from .helpers import World


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer.extend(chunk)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def _raw(server: DevServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def test_keep_alive_serves_many_requests_on_one_connection(server: DevServer, world: World) -> None:
    token = world.admin.tokens["access"]
    request = (
        f"GET /v1/nodes/ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    with _raw(server) as sock:
        buffer = bytearray()
        sock.sendall(request * 3)  # pipelined
        for _ in range(3):
            status, headers, body = _read_response(sock, buffer)
            assert (status, headers["content-length"], body) == (200, "0", b"")
        sock.sendall(
            f"GET /v1/jobs/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        status, headers, body = _read_response(sock, buffer)
        assert status == 404
        assert json.loads(body) == {"detail": "Not found."}


def test_bad_content_length_is_400_and_server_survives(server: DevServer, world: World) -> None:
    with _raw(server) as sock:
        sock.sendall(b"POST /v1/auth/obtain HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        status, _, body = _read_response(sock, bytearray())
        assert status == 400
        assert "detail" in json.loads(body)
    with _raw(server) as sock:
        sock.sendall(b"\x00\x01garbage\r\n\r\n")  # read as HTTP/0.9: a bare error page
        assert b"400" in sock.recv(65536)
    assert world.admin.get("/v1/nodes/ping").status_code == 200


def test_bad_chunked_body_is_400(server: DevServer) -> None:
    with _raw(server) as sock:
        sock.sendall(
            b"POST /v1/auth/obtain HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        status, _, _ = _read_response(sock, bytearray())
        assert status == 400


def test_client_vanishing_mid_body_does_not_hurt(server: DevServer, world: World) -> None:
    with _raw(server) as sock:
        sock.sendall(b"POST /v1/auth/obtain HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert world.admin.get("/v1/nodes/ping").status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"NaN"])
def test_malformed_json_is_400_json(world: World, body: bytes) -> None:
    reply = world.node.post(
        "/v1/nodes/create", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("JSON parse error")


def test_malformed_json_is_400_before_the_object_is_looked_up(world: World) -> None:
    node = world.new_node()
    reply = world.node.post(
        "/v1/jobs/999/start",
        node=node,
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_body_that_is_not_json_is_415(world: World, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = world.node.post("/v1/jobs/list", content=b"{}", headers=headers)
    assert reply.status_code == 415
    # An empty body is no body, whatever its type.
    assert world.node.post("/v1/jobs/list", content=b"", headers=headers).status_code == 200


def test_stop_closes_idle_keep_alive_connections() -> None:
    server = DevServer()
    server.start()
    sock = _raw(server)
    try:
        sock.sendall(b"GET /v1/nodes/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = _read_response(sock, bytearray())
        assert status == 401
        server.stop()
        assert sock.recv(100) == b""
    finally:
        sock.close()
        server.stop()


def test_url_has_no_trailing_slash(server: DevServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert not server.url.endswith("/")


def test_url_before_start_is_an_error() -> None:
    server = DevServer()
    try:
        with pytest.raises(RuntimeError):
            _ = server.url
    finally:
        server.stop()


def test_ipv6_url_is_bracketed() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        server = DevServer(host="::1")
        server.start()
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert httpx.get(f"{server.url}/v1/nodes/ping").status_code == 401
    finally:
        server.stop()
