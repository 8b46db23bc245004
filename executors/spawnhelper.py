"""The spawn helper: a small process that starts the job processes of another user.

``subprocess.Popen(user=, group=, extra_groups=)`` never uses ``vfork``: CPython falls
back to a full ``fork`` whenever the child changes its ids, which copies the page
tables of the whole agent (and touches its tens of MiB) for every job. The agent
therefore starts this program once, as a bare interpreter (``python -I -S``, standard
library only, about 10 MiB), and asks it to start each job of another user. The
helper forks the job, is its parent, reaps it and reports the end (wait status and
CPU seconds) to the agent. Everything else about a run (signals, the process tree,
cgroups, the log pipe) stays with the agent, which has the job's pid and a pidfd.

The protocol runs over Unix stream sockets. Each message is a frame: a 4-byte
big-endian length, then UTF-8 JSON; file descriptors ride as ``SCM_RIGHTS`` on the
frame.

- agent → helper, on the socket the helper was started with: ``{"argv", "env", "cwd",
  "uid", "gid", "groups", "cores"}`` with two descriptors: the write end of the job's
  output pipe, and the helper's end of a socket pair made for this one process (its
  *report socket*). On the first socket the helper only says ``{"ready": true}`` once,
  when it is up; the agent does not use a helper that does not.
- helper → agent, on the report socket: ``{"pid"}``; or ``{"error": "oserror",
  "errno", "strerror", "filename"}`` (``Popen`` raised :class:`OSError`: no such
  program, no such cwd, ...), ``{"error": "affinity", "message"}`` (the cores could
  not be had) or ``{"error": "other", "message"}``, after which it closes the socket.
- helper → agent, on the report socket, once the process has ended and was reaped:
  ``{"status": wait status, "cpu": user + system seconds of it and of what it
  reaped}``; then it closes the socket. A report socket that reaches end of file
  without a report means the helper ended first: the status is lost.

The agent waits for a report on its event loop (the socket becomes readable) and
needs no thread for it. The helper ends when the agent's end of the first socket
closes (the agent ended): the jobs
it started go on as children of init, as they would have with the agent as their
parent. It sits in a session of its own and catches SIGINT, SIGTERM and SIGHUP with a
handler that does nothing (a handler, not ``SIG_IGN``, so jobs start with the default
dispositions): a terminal's Ctrl-C or a service manager's SIGTERM is the agent's to
act on, and the helper follows the agent out.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

#: A frame's length prefix.
HEADER = struct.Struct(">I")

#: The longest frame either side accepts (a job's argv and environment are far below:
#: ``execve`` takes at most a few MiB of both).
MAX_FRAME = 64 * 1024 * 1024

#: Room for this many descriptors in one frame's ancillary data.
MAX_FDS = 4

Message = dict[str, Any]


class FrameError(Exception):
    """The other side sent something that is no frame of this protocol."""


def send_frame(sock: socket.socket, message: Message, fds: Sequence[int] = ()) -> None:
    """Send ``message`` as one frame, with ``fds`` passed along (``SCM_RIGHTS``)."""
    payload = json.dumps(message).encode()
    data = memoryview(HEADER.pack(len(payload)) + payload)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_frame(sock: socket.socket) -> tuple[Message | None, list[int]]:
    """The next frame and the descriptors that came with it (close-on-exec); None
    when the other side closed the socket. :class:`FrameError` on garbage."""
    fds: list[int] = []
    try:
        header = _recv_exactly(sock, HEADER.size, fds)
        if header is None:
            return None, fds
        (length,) = HEADER.unpack(header)
        if length > MAX_FRAME:
            raise FrameError(f"a frame of {length} bytes")
        payload = _recv_exactly(sock, length, fds)
        if payload is None:
            return None, fds
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        _close_all(fds)
        raise FrameError(str(exc)) from exc
    if not isinstance(message, dict):
        _close_all(fds)
        raise FrameError("a frame that is no JSON object")
    return message, fds


def _recv_exactly(sock: socket.socket, size: int, fds: list[int]) -> bytes | None:
    received = bytearray()
    while len(received) < size:
        data, ancillary, _flags, _address = sock.recvmsg(
            size - len(received), socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
        )
        for level, kind, cdata in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", cdata[: len(cdata) - len(cdata) % 4]))
        if not data:
            return None
        received += data
    return bytes(received)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


# ------------------------------------------------------------------------ the helper


def _nothing(_signum: int, _frame: object) -> None:
    """The handler of the signals the helper leaves to the agent."""


def _report(report: socket.socket, message: Message) -> None:
    """Send ``message`` on a report socket; an agent that closed its end (it gave up on
    that run) is no error of the helper's."""
    with contextlib.suppress(OSError):
        send_frame(report, message)


class Helper:
    """Serves one agent: starts what it asks for, reports each end."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._affinity = os.sched_getaffinity(0)
        self._children: dict[int, tuple[socket.socket, subprocess.Popen[bytes]]] = {}

    def serve_one(self) -> bool:
        """Answer the next request; False once the agent has gone."""
        message, fds = recv_frame(self._sock)
        if message is None:
            _close_all(fds)
            return False
        if len(fds) != 2:  # no report socket to answer on: nothing to do
            _close_all(fds)
            return True
        output, report = fds[0], socket.socket(fileno=fds[1])
        try:
            reply, popen = self._spawn(message, output)
        finally:
            os.close(output)
        _report(report, reply)
        if popen is None:
            report.close()
        else:
            self._children[popen.pid] = (report, popen)
        return True

    def _spawn(
        self, request: Message, output: int
    ) -> tuple[Message, subprocess.Popen[bytes] | None]:
        try:
            os.sched_setaffinity(0, request["cores"] or self._affinity)
        except OSError as exc:
            return {"error": "affinity", "message": exc.strerror or str(exc)}, None
        try:
            popen = subprocess.Popen(
                request["argv"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=request["env"],
                cwd=request["cwd"],
                start_new_session=True,
                user=request["uid"],
                group=request["gid"],
                extra_groups=request["groups"],
            )
        except OSError as exc:
            name = exc.filename
            return {
                "error": "oserror",
                "errno": exc.errno,
                "strerror": exc.strerror,
                "filename": None if name is None else os.fsdecode(name),
            }, None
        except Exception as exc:  # a bad request (a NUL in the argv, ...)
            return {"error": "other", "message": str(exc)}, None
        return {"pid": popen.pid}, popen

    def reap(self) -> None:
        """Reap every child that ended and report it."""
        while self._children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                continue
            report, popen = child
            popen.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it
            _report(report, {"status": status, "cpu": usage.ru_utime + usage.ru_stime})
            report.close()


def serve(sock: socket.socket) -> None:
    """Serve the agent on ``sock`` until it goes away."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # One ignored by whoever started the agent (``nohup``, a shell's ``&``) stays so:
        # the jobs inherit that, as those the agent starts itself do; one caught would
        # be reset to the default in them.
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, _nothing)
    signal.signal(signal.SIGCHLD, _nothing)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    helper = Helper(sock)
    send_frame(sock, {"ready": True})
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == wake_read:
                try:
                    while os.read(wake_read, 512):
                        pass
                except BlockingIOError:
                    pass
                helper.reap()
            elif not helper.serve_one():
                return


def main(argv: Sequence[str]) -> int:
    """``spawnhelper.py FD``: serve the agent on the socket descriptor ``FD``."""
    fd = int(argv[1])
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, FrameError):
        serve(sock)  # until the agent goes away (or turns out to be no agent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
