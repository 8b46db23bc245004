"""The agent's side of the spawn helper (:mod:`executors.spawnhelper`).

:func:`shared_helper` starts the helper on first use (and again after it ended) and
returns it. :meth:`SpawnHelper.spawn` starts a job process as another user through
it and returns the process's *report socket*; :func:`read_report` reads how the
process ended from that socket once it is readable (the event loop waits for that, no
thread does).

When the helper cannot be started at all, :func:`shared_helper` returns None and the
agent starts the process itself, as before the helper existed.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from executors import spawnhelper
from executors.identity import JobUser
from executors.spawnhelper import FrameError, Message, recv_frame, send_frame

__all__ = ["Ended", "SpawnHelper", "Spawned", "read_report", "shared_helper"]

#: Seconds a new helper has to say it is up.
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Spawned:
    """A process the helper started."""

    pid: int
    report: socket.socket
    """Where its end is reported: readable once it has ended and was reaped."""


@dataclass(frozen=True)
class Ended:
    """How a job's main process ended (reported by the helper, or reaped by the agent)."""

    status: int
    """The wait status (``os.wait4``'s)."""
    cpu_seconds: float
    """User + system time of the process and of every descendant it reaped."""


class SpawnHelper:
    """One running helper process and the socket to it."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self._sock = sock
        self._send_lock = threading.Lock()
        self._gone = False
        self._owner = os.getpid()

    @classmethod
    def start(cls, python: str = sys.executable) -> SpawnHelper:
        """Start a helper with the interpreter ``python`` (in a session of its own, with
        an empty environment: nothing of the agent's, credentials least of all, reaches
        it) and wait until it says it is up. :class:`OSError` when it cannot be started
        or does not come up."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [python, "-I", "-S", str(Path(spawnhelper.__file__)), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={},
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            _wait_until_ready(ours)
        except OSError:
            ours.close()
            process.kill()
            process.wait()
            raise
        return cls(process, ours)

    def close(self) -> None:
        """Let the helper go: it ends once its socket is closed (jobs it started go on)."""
        self._gone = True
        self._sock.close()

    @property
    def usable(self) -> bool:
        """Whether this helper still serves this process (reaps it once it ended)."""
        return not self._gone and self._owner == os.getpid() and self.process.poll() is None

    def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        user: JobUser,
        cores: frozenset[int],
        output_fd: int,
    ) -> Spawned:
        """Start ``argv`` as ``user`` in a new session, pinned to ``cores`` (none: the
        agent's own), output to ``output_fd``. Blocking; any thread.

        Raises what ``Popen`` would: :class:`OSError` (no such program or cwd, ...; also
        when the helper is gone) and :class:`subprocess.SubprocessError` (the cores could
        not be had); :class:`ValueError` for a request ``Popen`` refuses outright.
        """
        request = {
            "argv": list(argv),
            "env": env,
            "cwd": str(cwd),
            "uid": user.uid,
            "gid": user.gid,
            "groups": list(user.groups),
            "cores": sorted(cores),
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with theirs:
                self._send(request, [output_fd, theirs.fileno()])
            pid = _spawned_pid(self._reply(ours))
        except BaseException:
            ours.close()
            raise
        return Spawned(pid, ours)

    def _send(self, request: Message, fds: Sequence[int]) -> None:
        with self._send_lock:
            try:
                send_frame(self._sock, request, fds)
            except OSError as exc:
                self._gone = True
                raise _gone_error() from exc

    def _reply(self, report: socket.socket) -> Message:
        try:
            reply, _fds = recv_frame(report)
        except (OSError, FrameError) as exc:
            raise _gone_error() from exc
        if reply is None:
            self._gone = True
            raise _gone_error()
        return reply


def read_report(report: socket.socket) -> Ended | None:
    """How the process of ``report`` ended, once the socket is readable; None when
    the helper ended before it could say (the status is lost)."""
    try:
        message, _fds = recv_frame(report)
    except (OSError, FrameError):
        return None
    if message is None:
        return None
    return Ended(int(message["status"]), float(message["cpu"]))


def _wait_until_ready(sock: socket.socket) -> None:
    """Wait for a new helper's ``{"ready": true}``; :class:`OSError` without it."""
    sock.settimeout(READY_TIMEOUT)
    try:
        message, _fds = recv_frame(sock)
    except FrameError as exc:
        raise OSError(errno.EIO, f"the spawn helper did not start: {exc}") from exc
    if message != {"ready": True}:
        raise OSError(errno.EIO, "the spawn helper did not start")
    sock.settimeout(None)


def _gone_error() -> OSError:
    return OSError(errno.EIO, "the agent's spawn helper has ended")


def _spawned_pid(reply: Message) -> int:
    """The pid of a spawn reply, or the exception ``Popen`` raised."""
    error = reply.get("error")
    if error is None:
        return int(reply["pid"])
    if error == "oserror":
        raise OSError(reply["errno"], reply["strerror"], reply["filename"])
    if error == "affinity":
        raise subprocess.SubprocessError(reply["message"])
    raise ValueError(reply["message"])


class _Shared:
    """The process's helper, kept between calls of :func:`shared_helper`."""

    lock = threading.Lock()
    helper: SpawnHelper | None = None


def shared_helper() -> SpawnHelper | None:
    """This process's helper, started now when there is none (or it ended); None when
    it cannot be started."""
    with _Shared.lock:
        if _Shared.helper is None or not _Shared.helper.usable:
            try:
                _Shared.helper = SpawnHelper.start()
            except OSError:
                return None
        return _Shared.helper
