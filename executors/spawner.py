"""The agent's side of the spawn helper (:mod:`executors.spawnhelper`).

:func:`shared_helper` starts the helper on first use (and again after it ended) and
returns it; :meth:`SpawnHelper.spawn` starts a job process as another user through it
and :meth:`SpawnHelper.ended` waits for that process's report. A thread of the agent
reads the helper's replies and reports and hands each to whoever waits for it.

When the helper cannot be started at all, :func:`shared_helper` returns None and the
agent starts the process itself, as before the helper existed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from executors import spawnhelper
from executors.identity import JobUser
from executors.spawnhelper import FrameError, Message, recv_frame, send_frame

__all__ = ["Ended", "SpawnHelper", "Spawned", "shared_helper"]

T = TypeVar("T")

#: Seconds to wait for an ended helper to be reaped.
REAP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Spawned:
    """A process the helper started."""

    ident: int
    """The request's number: what :meth:`SpawnHelper.ended` takes."""
    pid: int
    pidfd: int | None
    """Readable once the process has ended (None: the kernel has no ``pidfd_open``)."""


@dataclass(frozen=True)
class Ended:
    """How a process the helper started ended."""

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
        self._changed = threading.Condition()
        self._replies: dict[int, tuple[Message, list[int]]] = {}
        self._ends: dict[int, Ended] = {}
        self._gone = False
        self._numbers = itertools.count(1)
        self._owner = os.getpid()
        self._reader = threading.Thread(target=self._read, name="spawn-helper", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls) -> SpawnHelper:
        """Start a helper (in a session of its own, with an empty environment: nothing
        of the agent's, credentials least of all, reaches it). :class:`OSError` when it
        cannot be started."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(spawnhelper.__file__)), str(theirs.fileno())],
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
        return cls(process, ours)

    @property
    def usable(self) -> bool:
        """Whether this helper still serves this process."""
        return not self._gone and self._owner == os.getpid()

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
        with self._send_lock:
            ident = next(self._numbers)
            try:
                send_frame(self._sock, {"id": ident, **request}, [output_fd])
            except OSError as exc:
                raise _gone_error() from exc
        answer = self._wait_for(self._replies, ident)
        if answer is None:
            raise _gone_error()
        return _spawned(ident, *answer)

    def ended(self, ident: int) -> Ended | None:
        """Wait for the report of process ``ident``; None when the helper ended before
        it could send one (the status is lost). Blocking; any thread."""
        return self._wait_for(self._ends, ident)

    def _wait_for(self, table: dict[int, T], ident: int) -> T | None:
        with self._changed:
            while ident not in table:
                if self._gone:
                    return None
                self._changed.wait()
            return table.pop(ident)

    def _read(self) -> None:
        """The reader thread: file replies and reports until the helper goes away."""
        try:
            while True:
                message, fds = recv_frame(self._sock)
                if message is None:
                    break
                self._file(message, fds)
        except (OSError, FrameError):
            pass
        finally:
            with self._changed:
                self._gone = True
                self._changed.notify_all()
            self._sock.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(REAP_TIMEOUT)

    def _file(self, message: Message, fds: list[int]) -> None:
        with self._changed:
            if "exit" in message:
                ended = Ended(int(message["status"]), float(message["cpu"]))
                self._ends[int(message["exit"])] = ended
            else:
                self._replies[int(message["id"])] = (message, fds)
            self._changed.notify_all()


def _gone_error() -> OSError:
    return OSError(errno.EIO, "the agent's spawn helper has ended")


def _spawned(ident: int, reply: Message, fds: list[int]) -> Spawned:
    """A spawn reply as the process it started, or as the exception ``Popen`` raised."""
    error = reply.get("error")
    if error is None:
        return Spawned(ident, int(reply["pid"]), fds[0] if fds else None)
    for fd in fds:
        os.close(fd)
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
