"""An upload's body sent from its file by the kernel (``sendfile``), in one worker thread.

An output is a file on disk. Streamed through the event loop it costs, per MiB, a
worker-thread call for the ``pread``, a copy into a Python buffer, an ``h11`` and an
``anyio`` pass and a socket write. On a plain ``http`` connection
:class:`~agent.server.transport.KeepAliveTransport` hands the socket to
:func:`send_parts` instead: one worker thread writes the request's head, then
``os.sendfile`` moves the file into the socket with no copy through Python. ``h11`` is
told about the body with the file itself as a placeholder for its bytes (its documented
route for ``sendfile``: ``Connection.send_with_data_passthrough``).

Elsewhere (``https``, a proxy: the bytes must pass through Python there) the same
:class:`FileBody` is the streamed body of :meth:`FileBody.__call__`. Either way the body
is exactly ``size`` bytes read from offset 0: a file that grows meanwhile is cut there,
one that shrinks is padded with zero bytes, so the ``Content-Length`` always holds.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import anyio.to_thread

#: Bytes read and sent at once where the body passes through Python (the streamed form,
#: a file system without ``sendfile``, the zero padding): few thread hops and writes per
#: GiB, a few MiB of memory at most.
CHUNK = 1024 * 1024

#: The request extension that carries a :class:`FileBody` to the transport.
FILE_BODY = "agent_file_body"

#: ``sendfile`` errors that mean this file cannot be sent that way (its file system has
#: no support): the rest goes by ``pread`` and write.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class FileBody:
    """``size`` bytes of the regular file open as ``fd`` (from offset 0) as a request's
    body; ``sent`` is told how many bytes of it went out, part by part (from the sending
    thread, on the ``sendfile`` route: it must be thread-safe). The caller owns ``fd``.
    Called, it gives the streamed form: :data:`CHUNK` bytes at a time, each read with
    ``pread`` in a worker thread."""

    def __init__(self, fd: int, size: int, sent: Callable[[int], None] | None = None) -> None:
        self.fd = fd
        self.size = size
        self._sent = sent

    def __len__(self) -> int:
        """The body's length: what ``h11`` counts against the ``Content-Length``."""
        return self.size

    def __call__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    def sent(self, nbytes: int) -> None:
        if self._sent is not None:
            self._sent(nbytes)

    async def _chunks(self) -> AsyncIterator[bytes]:
        offset = 0
        while offset < self.size:
            want = min(CHUNK, self.size - offset)
            piece = await anyio.to_thread.run_sync(os.pread, self.fd, want, offset)
            piece = piece or bytes(want)  # past the file's end: zeros
            self.sent(len(piece))
            yield piece
            offset += len(piece)


class Stopped(Exception):
    """The sending thread was told to stop (its caller was cancelled)."""


async def send_parts(
    sock_fd: int, parts: Sequence[bytes | FileBody], timeout: float | None
) -> None:
    """Write ``parts`` to the non-blocking socket ``sock_fd`` in order, a :class:`FileBody`
    by ``sendfile``, all in one worker thread.

    :class:`TimeoutError` when the socket takes nothing for ``timeout`` seconds;
    :class:`OSError` when writing fails. Cancelled, it stops the thread and waits for it
    before the cancellation goes on: the caller may close the socket then.
    """
    stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    finished = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _send_all(sock_fd, parts, timeout, stop)
        except BaseException as exc:  # raised in the awaiting task
            failure.append(exc)
        finally:
            finished.set()

    limiter = anyio.CapacityLimiter(1)  # not the shared pool: an upload may take long
    try:
        await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=limiter)
    finally:
        if not finished.is_set():
            os.eventfd_write(stop, 1)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait, limiter=limiter)
        os.close(stop)
    if failure:
        raise failure[0]


def _send_all(
    sock_fd: int, parts: Sequence[bytes | FileBody], timeout: float | None, stop: int
) -> None:
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    poller.register(stop, select.POLLIN)
    wait_ms = -1 if timeout is None else max(0, round(timeout * 1000))

    def wait_writable() -> None:
        ready = dict(poller.poll(wait_ms))
        if stop in ready:
            raise Stopped
        if not ready:
            raise TimeoutError

    for part in parts:
        if isinstance(part, FileBody):
            _send_file(sock_fd, part, wait_writable)
        else:
            _send_bytes(sock_fd, part, wait_writable)


def _send_bytes(sock_fd: int, data: bytes, wait_writable: Callable[[], None]) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(sock_fd, view) :]
        except BlockingIOError:
            wait_writable()


def _send_file(sock_fd: int, body: FileBody, wait_writable: Callable[[], None]) -> None:
    offset = 0
    by_sendfile = True
    while offset < body.size:
        left = body.size - offset
        if by_sendfile:
            try:
                count = os.sendfile(sock_fd, body.fd, offset, left)
            except BlockingIOError:
                wait_writable()
                continue
            except OSError as exc:
                if exc.errno not in _NO_SENDFILE:
                    raise
                by_sendfile = False
                continue
            if count == 0:  # the file ended early: the rest is zeros
                break
        else:
            chunk = os.pread(body.fd, min(CHUNK, left), offset)
            if not chunk:
                break
            _send_bytes(sock_fd, chunk, wait_writable)
            count = len(chunk)
        offset += count
        body.sent(count)
    while offset < body.size:
        count = min(CHUNK, body.size - offset)
        _send_bytes(sock_fd, bytes(count), wait_writable)
        offset += count
        body.sent(count)
