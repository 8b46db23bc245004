"""The processes of one run on this host: find them, signal them, sample them.

A run's processes are the main process's descendants, the members of its process group
(its pid, as it starts a session), and processes whose initial environment carries the
run's marker (double-forked daemons that left the group). Zombies count as gone: they
have ended and only wait for their parent to reap them. Linux only (reads ``/proc``).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Iterator, Sequence

import psutil

from executors.base import MARKER_ENV

_IGNORED_ERRNOS = {errno.ESRCH, errno.EPERM}

_ENVIRON_READ = 64 * 1024
"""Bytes asked for per read of ``/proc/PID/environ`` (most fit in one)."""


def marker_needle(marker: str) -> bytes:
    """The bytes that mark a process in ``/proc/PID/environ`` (NUL-delimited entries)."""
    return b"\0" + f"{MARKER_ENV}={marker}".encode() + b"\0"


def environ_has(environ: bytes, needle: bytes) -> bool:
    """Whether a raw ``/proc/PID/environ`` content contains the entry in ``needle``."""
    return needle in b"\0" + environ + b"\0"


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; a group that is gone (or not ours) is fine."""
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in _IGNORED_ERRNOS:
            raise


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid; processes that are gone are fine."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError as exc:
            if exc.errno not in _IGNORED_ERRNOS:
                raise


def group_exists(pgid: int) -> bool:
    """Whether a process group has any member at all (a zombie counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    return True


def group_pids(pgid: int) -> list[int]:
    """Pids of the living (non-zombie) members of a process group."""
    try:
        os.killpg(pgid, 0)
    except OSError:
        return []  # cheap answer for the common case: no member at all
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and is_alive(psutil.Process(pid)):
                members.append(pid)
        except (OSError, psutil.Error):
            continue
    return members


def marked_pids(marker: str) -> list[int]:
    """Pids of living processes whose initial environment carries ``MARKER_ENV=marker``.

    Reads ``/proc/PID/environ``; processes we may not read (other users', when the agent
    is not root) are skipped, which limits the search to our own uid. An agent running as
    root also finds job processes that changed uid.
    """
    needle = marker_needle(marker)
    me = os.getpid()
    found = []
    for pid in psutil.pids():
        if pid == me:
            continue
        environ = read_environ(pid)
        if environ is None or not environ_has(environ, needle):
            continue
        try:
            if is_alive(psutil.Process(pid)):
                found.append(pid)
        except psutil.Error:
            continue
    return found


def read_environ(pid: int) -> bytes | None:
    """The raw ``/proc/PID/environ`` of ``pid``; None when it cannot be read (the
    process is gone, is a kernel thread, or is another user's).

    Read with bare ``os`` calls, and no read after a short one (the kernel fills a read
    as far as the environment goes): a sweep reads every process on the host at each
    run's end, and a buffered file object costs four more system calls per process."""
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = [os.read(fd, _ENVIRON_READ)]
        while len(chunks[-1]) == _ENVIRON_READ:  # a short read is its end
            chunks.append(os.read(fd, _ENVIRON_READ))
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def is_alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has ended; only its parent's wait is missing)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pids_alive(pids: Iterable[int]) -> list[int]:
    """The pids of ``pids`` that are still running (zombies count as gone)."""
    return [process.pid for process in processes(pids) if is_alive(process)]


def processes(pids: Iterable[int]) -> list[psutil.Process]:
    """psutil handles of the pids still present (a handle notices pid reuse later)."""
    return [process for process in map(_process, pids) if process is not None]


class TreeSampler:
    """Periodic psutil view of one run's processes: RSS sum (latest and peak) and CPU of
    outsiders.

    The tree is the main process's descendants, the members of its process group, and
    processes found carrying the marker (remembered once found). Thread-safe: samples
    are taken in worker threads.
    """

    def __init__(self, pid: int, marker: str) -> None:
        self._pid = pid
        self._marker = marker
        self._main: psutil.Process | None = None  # looked up at the first sample
        self._main_gone = False
        self._known: dict[int, psutil.Process] = {}
        self._cpu: dict[tuple[int, float], tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self.peak_rss = 0
        self.last_rss = 0
        """RSS sum of the latest sample (what a memory limit is checked against)."""

    def main_ended(self) -> None:
        """The main process is reaped: stop looking at its pid (it may be reused)."""
        with self._lock:
            self._main = None
            self._main_gone = True

    def sample(self, scan_marker: bool = False, marked: Sequence[int] = ()) -> None:
        """Take one sample.

        With ``scan_marker`` also search all processes for the marker; ``marked`` are
        pids already found carrying it.
        """
        with self._lock:
            self._remember(marked)
            total = 0
            for process, outsider in self._collect(scan_marker):
                try:
                    with process.oneshot():
                        rss = process.memory_info().rss
                        times = process.cpu_times()
                        key = (process.pid, process.create_time())
                except psutil.Error:
                    continue
                total += rss
                if process is not self._main:  # the main process's CPU comes from rusage
                    self._cpu[key] = (times.user + times.system, outsider)
            self.last_rss = total
            self.peak_rss = max(self.peak_rss, total)

    def outsider_cpu(self) -> float:
        """CPU seconds of processes last seen outside the main process's descendants."""
        with self._lock:
            return sum(cpu for cpu, outsider in self._cpu.values() if outsider)

    def _remember(self, pids: Iterable[int]) -> None:
        for pid in pids:
            process = _process(pid)
            if process is not None:
                self._known.setdefault(pid, process)

    def _collect(self, scan_marker: bool) -> Iterator[tuple[psutil.Process, bool]]:
        seen: set[int] = set()
        if self._main is None and not self._main_gone:
            self._main = _process(self._pid)
            self._main_gone = self._main is None
        if self._main is not None and is_alive(self._main):
            seen.add(self._pid)
            yield self._main, False
            for child in _children(self._main):
                seen.add(child.pid)
                yield child, False
        if scan_marker:
            self._remember(marked_pids(self._marker))
        extra = [p for p in map(_process, group_pids(self._pid)) if p is not None]
        extra += [p for p in self._known.values() if is_alive(p)]
        for process in extra:
            for member in (process, *_children(process)):
                if member.pid not in seen:
                    seen.add(member.pid)
                    yield member, True


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []
