"""An upload's body sent from its file (``agent.server.filebody``), over a real socket
pair: exactly ``size`` bytes from offset 0 whatever the file does meanwhile, by
``sendfile`` or, where the file system has none, by ``pread``; the streamed form gives
the same bytes."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agent.server.filebody import CHUNK, FileBody, send_parts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Receiver:
    """The far end of a socket pair, read whole in a thread until the near end closes."""

    def __init__(self, sock: socket.socket) -> None:
        self.data = bytearray()
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self._sock.recv(1 << 20):
            self.data += chunk

    def wait(self) -> bytes:
        self._thread.join(30)
        return bytes(self.data)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, Receiver]]:
    near, far = socket.socketpair()
    near.setblocking(False)
    try:
        yield near, Receiver(far)
    finally:
        near.close()
        far.close()


def _open(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


async def _send(near: socket.socket, parts: list[bytes | FileBody]) -> None:
    with anyio.fail_after(30):
        await send_parts(near.fileno(), parts, timeout=10)
    near.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("extra", [0, -1000, CHUNK + 5], ids=["exact", "grew", "shrank"])
async def test_exactly_size_bytes_go_out(
    tmp_path: Path, pair: tuple[socket.socket, Receiver], extra: int
) -> None:
    """The file as it is now against the size taken before: a file that grew is cut at
    the size, one that shrank is padded with zero bytes."""
    near, receiver = pair
    data = os.urandom(3 * CHUNK + 123)
    size = len(data) + extra
    fd = _open(tmp_path / "out.bin", data)
    told: list[int] = []
    try:
        await _send(near, [b"HEAD\r\n", FileBody(fd, size, told.append), b"TAIL"])
    finally:
        os.close(fd)
    expected = (data + bytes(max(0, extra)))[:size]
    assert receiver.wait() == b"HEAD\r\n" + expected + b"TAIL"
    assert sum(told) == size


async def test_a_file_without_sendfile_is_read_instead(
    pair: tuple[socket.socket, Receiver],
) -> None:
    """``/proc`` files refuse ``sendfile`` (EINVAL) but can be read: the body still goes."""
    near, receiver = pair
    fd = os.open("/proc/self/environ", os.O_RDONLY)
    try:
        expected = os.pread(fd, 1 << 20, 0)
        with pytest.raises(OSError, match="Invalid argument"):
            os.sendfile(near.fileno(), fd, 0, 1)
        await _send(near, [FileBody(fd, len(expected) + 10)])
    finally:
        os.close(fd)
    assert receiver.wait() == expected + bytes(10)


async def test_the_streamed_form_gives_the_same_bytes(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 7)
    fd = _open(tmp_path / "out.bin", data)
    told: list[int] = []
    try:
        streamed = [chunk async for chunk in FileBody(fd, len(data) + 3, told.append)()]
    finally:
        os.close(fd)
    assert b"".join(streamed) == data + bytes(3)
    assert sum(told) == len(data) + 3


async def test_a_socket_that_takes_nothing_times_out(tmp_path: Path) -> None:
    near, far = socket.socketpair()  # far never reads
    near.setblocking(False)
    fd = os.open(tmp_path / "big.bin", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 64 << 20)
    try:
        with anyio.fail_after(30), pytest.raises(TimeoutError):
            await send_parts(near.fileno(), [FileBody(fd, 64 << 20)], timeout=0.2)
    finally:
        os.close(fd)
        near.close()
        far.close()


async def test_a_cancelled_send_stops_its_thread_before_returning(tmp_path: Path) -> None:
    """Cancelled while the socket takes nothing, the send returns once its thread has
    stopped: the caller may close the socket at once, no write can follow."""
    near, far = socket.socketpair()
    near.setblocking(False)
    fd = os.open(tmp_path / "big.bin", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 64 << 20)
    told: list[int] = []
    try:
        with anyio.fail_after(30):
            with anyio.move_on_after(0.3) as scope:
                await send_parts(near.fileno(), [FileBody(fd, 64 << 20, told.append)], None)
            assert scope.cancelled_caught
            sent_by_then = sum(told)
            far.setblocking(False)
            drained = 0
            while True:  # what the cancelled send had written, and nothing after it
                try:
                    chunk = far.recv(1 << 20)
                except BlockingIOError:
                    break
                drained += len(chunk)
            assert drained == sent_by_then
            assert sum(told) == sent_by_then
    finally:
        os.close(fd)
        near.close()
        far.close()
