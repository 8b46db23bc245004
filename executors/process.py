"""Process-group control shared by the executors.

:func:`spawn_off_loop` starts an argv in a session of its own (so its process group id
is its pid), with its output on a pipe and, when cores are given, its CPU affinity set
to them; a process of another user is started by the spawn helper
(:mod:`executors.spawner`). The :class:`ProcessRun` it returns implements
:class:`~executors.base.RunHandle`:

- ``wait()`` drives the run: it pumps the output into the log sink, reaps the main
  process with ``os.wait4`` once its pidfd says it ended (for its rusage), or takes the
  spawn helper's report of it, samples the process tree every :data:`SAMPLE_INTERVAL`
  seconds, enforces the walltime and carries out stops.
  Call it right after starting; the output pipe is only read while it runs.
- ``stop()`` sends SIGTERM to the group and to every process carrying the run's marker,
  and sets the escalation going: the grace races the tree's disappearance, then SIGKILL
  goes to the group, then a final sweep SIGKILLs every process still carrying the
  marker (double-forked daemons that called ``setsid`` and left the group).

When the main process ends by itself, whatever it left behind is stopped the same way
before ``wait()`` returns: no child outlives a job. Finding, signalling and sampling the
processes is :mod:`executors.proctree`.

Memory (:attr:`~executors.base.PreparedRun.memory_limit_bytes`): when the agent has a
cgroup delegated (:mod:`executors.cgroup`), every run gets a cgroup of its own; with a
limit the kernel enforces it (``memory.max``, ``memory.oom.group``) and an ``oom_kill`` in
``memory.events`` ends the run :attr:`~executors.base.EndKind.MEMORY`. The cgroup also
takes part in stops (SIGTERM to its processes, ``cgroup.kill``), counts the CPU of
everything that ran in it, and is removed when the run is over. Without one, each sample
checks the tree's RSS sum against the limit; over it, the tree is stopped like at the
walltime, but SIGKILLed at once (no grace: a run over its memory endangers the node,
and the kernel's OOM killer gives none either).

Accounting is pragmatic: CPU seconds are the main process's rusage (which includes
every descendant it or its descendants reaped) plus, for processes last seen outside
the main process's descendants (orphans, escaped daemons, leftovers killed at the end),
their own user+system time at the last sample. Peak RSS is the highest sampled sum of
RSS over the tree (``ru_maxrss`` is no bound: a child forked from the agent carries the
agent's high-water mark across exec). The first sample comes one interval after the
start (a sample costs a read of every process's ``stat``; a job that ends sooner has
nothing to sample but what it left behind, and reports a peak of 0). Processes that
live less than a sample interval and are not reaped by the main process's tree escape
both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import psutil

from executors.base import EndKind, NodeError, PreparedRun, RunResult
from executors.cgroup import JobCgroup, MemoryGuard, choose_guard, job_cgroup_base
from executors.identity import JobUser
from executors.logsink import LogSink, pump
from executors.proctree import (
    TreeSampler,
    group_exists,
    group_pids,
    is_alive,
    marked_pids,
    pids_alive,
    processes,
    signal_group,
    signal_pids,
)
from executors.spawner import Ended, read_report, shared_helper

__all__ = [
    "EndedRun",
    "ProcessRun",
    "command_argv",
    "end_of",
    "marked_pids",
    "pids_alive",
    "signal_group",
    "signal_pids",
    "spawn_failure",
    "spawn_off_loop",
]

#: Seconds between two samples of the process tree.
SAMPLE_INTERVAL = 0.5

#: Every this many samples also search all processes for the marker (reads environs).
MARKER_SCAN_EVERY = 8

#: Seconds to wait, after the tree is gone, for the last writer of the output pipe to
#: close it (a process that escaped both the group and the marker may hold it open).
DRAIN_TIMEOUT = 2.0

#: Seconds to wait after the final SIGKILL for the killed processes to disappear.
KILL_SETTLE_TIMEOUT = 5.0

#: Capacity asked for the output pipe (Linux allows up to ``fs.pipe-max-size``, 1 MiB
#: by default, unprivileged), and the most read from it at once: a chatty job is taken
#: in large blocks, with few wake-ups.
PIPE_SIZE = 1024 * 1024


def end_of(status: int, requested: EndKind | None) -> tuple[EndKind, int | None, int | None]:
    """How a run ended, from the main process's wait status and any stop we asked for.

    ``requested`` is :attr:`EndKind.WALLTIME` or :attr:`EndKind.STOPPED` when a stop was
    set going before the main process ended; it wins over the status. Returns the kind,
    the exit code (normal exit) and the signal number (killed by a signal).
    """
    if os.WIFSIGNALED(status):
        code, sig = None, os.WTERMSIG(status)
    else:
        code, sig = os.WEXITSTATUS(status), None
    if requested is not None:
        return requested, code, sig
    return (EndKind.SIGNALED if sig is not None else EndKind.EXITED), code, sig


# ------------------------------------------------------------------------ the handle


@dataclass
class Child:
    """The main process of a run, and who reaps it."""

    pid: int
    pidfd: int | None
    popen: subprocess.Popen[bytes] | None = None
    """Set when the agent started it: the agent is its parent and reaps it."""
    report: socket.socket | None = None
    """Set when the spawn helper started it: the helper reaps it and reports its end
    on this socket."""


#: The error of a run whose end the spawn helper could not report.
LOST_END = "the agent's spawn helper ended before the job; its exit status is lost"


class ProcessRun:
    """A running process tree in its own session: the :class:`RunHandle` of executors."""

    def __init__(
        self,
        child: Child,
        read_fd: int,
        run: PreparedRun,
        sink: LogSink,
        started: float,
        cgroup: JobCgroup | None = None,
    ) -> None:
        self._child = child
        self._fd = read_fd
        self._run = run
        self._sink = sink
        self._started = started
        self._sampler = TreeSampler(child.pid, run.marker)
        self._reap_lock = threading.Lock()
        self._reap_limiter = anyio.CapacityLimiter(1)
        self._exit: Ended | None = None
        self._lost = False
        self._requested: EndKind | None = None
        self._stop_wanted = anyio.Event()
        self._term_lock = anyio.Lock()
        self._term_sent = False
        self._term_marked: list[psutil.Process] = []
        self._none_left = False
        self._kill_lock = anyio.Lock()
        self._killed = False
        self._eof = anyio.Event()
        self._driving = False
        self._done = anyio.Event()
        self._result: RunResult | None = None
        self._cgroup = cgroup
        self._guard: MemoryGuard | None = choose_guard(run.memory_limit_bytes, cgroup is not None)
        self._memory_hit = False
        self._pidfd = child.pidfd

    @property
    def memory_guard(self) -> MemoryGuard | None:
        """How this run's memory limit is enforced (None: it has none)."""
        return self._guard

    @property
    def pid(self) -> int:
        """Pid of the main process (also the id of its process group and session)."""
        return self._child.pid

    async def stop(self) -> None:
        """SIGTERM the tree now; :meth:`wait` escalates after the grace. Idempotent."""
        await self._request_stop(EndKind.STOPPED)

    async def wait(self) -> RunResult:
        """Drive the run until the main process has ended and the tree is gone.

        If this wait is cancelled, the tree is stopped (shielded: TERM, grace, KILL,
        sweep) before the cancellation goes on; a later call returns that result.
        """
        if self._driving:
            await self._done.wait()
        else:
            self._driving = True
            try:
                await self._drive()
            finally:
                self._done.set()
        if self._lost:
            raise NodeError(LOST_END)
        if self._result is None:
            raise RuntimeError("the run ended without a result (its wait failed)")
        return self._result

    # -- driving

    async def _drive(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump_output)
                tg.start_soon(self._sample_loop)
                if self._run.walltime is not None:
                    tg.start_soon(self._watch_walltime, self._run.walltime)
                tg.start_soon(self._watch_stop)
                try:
                    await self._reap()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._end_tree()
                    tg.cancel_scope.cancel()
        finally:
            self._close_output()
            if self._pidfd is not None:
                os.close(self._pidfd)
            if self._child.report is not None:
                self._child.report.close()
            if self._exit is not None:
                self._result = self._make_result()
            if self._cgroup is not None:  # the tree is gone (or as gone as it gets)
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._cgroup.remove)

    async def _end_tree(self) -> None:
        """After the main process ended (or the wait was cancelled): no survivors, drain."""
        if self._exit is None:  # the wait was cancelled: stop the tree and reap
            await self._request_stop(EndKind.STOPPED)
            await self._kill_tree()
            await self._reap()
        await self._kill_tree()
        with anyio.move_on_after(DRAIN_TIMEOUT):
            await self._eof.wait()

    def _close_output(self) -> None:
        self._sink.finish()
        self._sink.__exit__(None, None, None)
        os.close(self._fd)

    async def _reap(self) -> None:
        """Wait for the main process to end and reap it: on the event loop through its
        pidfd, or (kernels before 5.3) by a blocking wait in a worker thread. A process
        the spawn helper started is reaped there: this takes its report."""
        if self._child.report is not None:
            if self._exit is None:
                await anyio.wait_readable(self._child.report)
                self._take_report(self._child.report)
        elif self._pidfd is None:
            await anyio.to_thread.run_sync(
                self._wait4, 0, abandon_on_cancel=True, limiter=self._reap_limiter
            )
        else:
            while self._wait4(os.WNOHANG) is None:
                await anyio.wait_readable(self._pidfd)
        self._sampler.main_ended()

    def _wait4(self, options: int) -> Ended | None:
        """Reap the main process (blocking unless ``os.WNOHANG``; idempotent across
        threads); None while it runs."""
        with self._reap_lock:
            if self._exit is None:
                pid, status, rusage = os.wait4(self.pid, options)
                if pid == 0:
                    return None
                if self._child.popen is not None:  # or a later Popen reaps it again
                    self._child.popen.returncode = os.waitstatus_to_exitcode(status)
                self._exit = Ended(status, rusage.ru_utime + rusage.ru_stime)
            return self._exit

    def _take_report(self, report: socket.socket) -> None:
        """Read the spawn helper's report of the main process (its socket is readable).
        With the helper gone, the status is lost: the run then ends, and :meth:`wait`
        raises :class:`NodeError`."""
        ended = read_report(report)
        if ended is None:
            self._lost = True
            self._exit = Ended(0, 0.0)
        else:
            self._exit = ended

    async def _pump_output(self) -> None:
        try:
            await pump(self._fd, self._sink, PIPE_SIZE, self._run.crowded)
        finally:
            self._eof.set()

    async def _sample_loop(self) -> None:
        tick = 0
        while True:  # none at the start: the tree is one process that has just exec'd
            await anyio.sleep(SAMPLE_INTERVAL)
            tick += 1
            over = await anyio.to_thread.run_sync(self._sample, tick % MARKER_SCAN_EVERY == 0)
            if over:
                self._memory_hit = True
                await self._request_stop(EndKind.MEMORY)

    def _sample(self, scan_marker: bool) -> bool:
        """One sample of the tree (and cgroup); whether the run is over its memory limit."""
        self._sampler.sample(scan_marker)
        limit = self._run.memory_limit_bytes
        if self._cgroup is not None:
            self._cgroup.sample_peak()
            return limit is not None and self._cgroup.oom_kills() > 0
        return limit is not None and self._sampler.last_rss > limit

    async def _watch_walltime(self, walltime: float) -> None:
        await anyio.sleep(max(0.0, self._started + walltime - time.monotonic()))
        await self._request_stop(EndKind.WALLTIME)

    async def _watch_stop(self) -> None:
        await self._stop_wanted.wait()
        await self._kill_tree()

    # -- stopping

    async def _request_stop(self, kind: EndKind) -> None:
        if self._result is not None or self._stop_wanted.is_set():
            return
        if self._exit is None:
            self._requested = kind
        self._stop_wanted.set()
        await self._send_term()

    async def _send_term(self) -> None:
        """Last sample, then SIGTERM to the group and to the marked processes (once)."""
        async with self._term_lock:
            if self._term_sent:
                return
            await anyio.to_thread.run_sync(self._term_tree)
            self._term_sent = True

    def _term_tree(self) -> None:
        """The blocking part of :meth:`_send_term`, in one worker-thread call: find the
        marked processes, take the last sample, SIGTERM the group, them and the cgroup.
        Notes whether none of them was there at all (the main process ended and left
        nothing behind: there is nothing to wait for, and nothing can appear later)."""
        marked = marked_pids(self._run.marker)
        self._sampler.sample(False, marked)
        in_cgroup = self._cgroup.pids() if self._cgroup is not None else []
        self._none_left = not marked and not in_cgroup and not group_exists(self.pid)
        signal_group(self.pid, signal.SIGTERM)
        self._term_marked = processes(marked)
        signal_pids(marked, signal.SIGTERM)
        if self._cgroup is not None:
            self._cgroup.signal(signal.SIGTERM)

    async def _kill_tree(self) -> None:
        """TERM, race the tree's end against the grace, KILL the group, sweep the marker.

        Runs once; a concurrent caller waits for it. A kill cut short by cancellation is
        not done: the next caller (the shielded end of the wait) carries it out.
        """
        async with self._kill_lock:
            if self._killed:
                return
            await self._send_term()
            grace = 0.0 if self._memory_hit else self._run.kill_grace
            gone = self._none_left  # the main process ended and left nothing behind
            if not gone and (grace <= 0 or not await self._tree_gone_within(grace)):
                signal_group(self.pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(self._sweep)
                await self._tree_gone_within(KILL_SETTLE_TIMEOUT)
            self._killed = True

    def _sweep(self) -> None:
        """The final sweep: SIGKILL every process in the run's cgroup and every living
        process that carries the marker."""
        if self._cgroup is not None:
            self._cgroup.kill()
        signal_pids(marked_pids(self._run.marker), signal.SIGKILL)

    def _survivors(self) -> list[int]:
        found = group_pids(self.pid) + [p.pid for p in self._term_marked if is_alive(p)]
        if self._cgroup is not None:
            found += pids_alive(self._cgroup.pids())
        return found

    async def _tree_gone_within(self, seconds: float) -> bool:
        """Poll until the group and the marked processes are gone; False after ``seconds``."""
        delay = 0.005
        with anyio.move_on_after(seconds):
            while await anyio.to_thread.run_sync(self._survivors):
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.2)
            return True
        return False

    def _make_result(self) -> RunResult:
        assert self._exit is not None
        limit = self._run.memory_limit_bytes
        cgroup = self._cgroup
        oom = cgroup is not None and limit is not None and cgroup.oom_kills() > 0
        requested = self._requested
        if oom:  # the kernel killed (part of) it, maybe before a sample saw it
            self._memory_hit = True
            requested = requested or EndKind.MEMORY
        kind, code, sig = end_of(self._exit.status, requested)
        cpu = self._exit.cpu_seconds + self._sampler.outsider_cpu()
        peak: int | None = None
        if cgroup is not None:
            cpu = max(cpu, cgroup.cpu_seconds() or 0.0)
            peak = cgroup.peak() if self._guard is not None else None
        elif self._guard is not None:
            peak = self._sampler.peak_rss
        return RunResult(
            kind=kind,
            exit_code=code,
            signal=sig,
            duration=time.monotonic() - self._started,
            peak_rss_bytes=self._sampler.peak_rss,
            cpu_seconds=cpu,
            log_bytes=self._sink.bytes_seen,
            log_truncated=self._sink.truncated,
            disk_full=self._sink.disk_full,
            memory_limit_bytes=limit,
            memory_limit_hit=self._memory_hit,
            memory_peak_bytes=peak,
            memory_guard=self._guard,
        )


class EndedRun:
    """The handle of a run that ended before it started (the command could not spawn)."""

    def __init__(self, result: RunResult) -> None:
        self._result = result

    @property
    def pid(self) -> int:
        """There is no process: 0."""
        return 0

    async def wait(self) -> RunResult:
        """The result, at once."""
        return self._result

    async def stop(self) -> None:
        """Nothing to stop."""


def command_argv(command: str | Sequence[str]) -> list[str]:
    """A job command as an argv: a string is run by ``/bin/sh -c``, a sequence is kept."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)


def open_pidfd(pid: int) -> int | None:
    """A pidfd of child ``pid``, readable once it has ended; None where the kernel has
    no ``pidfd_open`` (before 5.3)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def open_sink(run: PreparedRun) -> LogSink:
    """The run's log sink, opened. A log the job replaced (FIFO, symlink, directory)
    raises :class:`~executors.base.JobTampered` (the job's fault, passed through); a log
    that cannot be opened otherwise is the node's problem (:class:`NodeError`)."""
    try:
        return LogSink.for_run(run).__enter__()
    except OSError as exc:
        raise NodeError(f"cannot open the job log {run.log_path}: {exc.strerror}") from exc


@contextlib.contextmanager
def thread_pinned(cores: frozenset[int]) -> Iterator[None]:
    """Pin the calling thread to ``cores`` (none: leave it) while the block runs: a
    process it starts inherits that affinity, with no ``preexec_fn`` (which would force
    a full fork). :class:`subprocess.SubprocessError` when the cores cannot be had."""
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cores)
    except OSError as exc:
        raise subprocess.SubprocessError(exc.strerror or str(exc)) from exc
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def identity_switch(user: JobUser | None) -> dict[str, Any]:
    """``Popen`` keywords that make the child ``user`` before exec (none when the agent
    already is that account). The switch happens in C between fork and exec."""
    if user is None or user.is_current():
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


async def spawn_off_loop(
    argv: Sequence[str], env: dict[str, str], run: PreparedRun, *, pin: bool = True
) -> ProcessRun:
    """Start ``argv`` in a new session with output to ``run.log_path`` via a pipe.

    Pins the child to ``run.cores`` when ``pin`` and cores are given, and runs it as
    ``run.user`` when that is another account (:func:`identity_switch`). The fork and
    exec (and the wait for the exec) happen in a worker thread: the event loop serves
    the other jobs meanwhile. Not cancellable while it runs, so a started process is
    always handed back. Raises :class:`NodeError` when the log cannot be opened,
    :class:`JobTampered` when the job replaced it, and otherwise lets :class:`OSError`
    (cannot exec ``argv[0]``, no such cwd, ...) and :class:`subprocess.SubprocessError`
    (the affinity could not be set) through: the caller decides whose fault that is.
    """
    with anyio.CancelScope(shield=True):
        parts = await anyio.to_thread.run_sync(lambda: start_process(argv, env, run, pin=pin))
    return ProcessRun(*parts)


_Started = tuple[Child, int, PreparedRun, LogSink, float, "JobCgroup | None"]


def start_process(
    argv: Sequence[str], env: dict[str, str], run: PreparedRun, *, pin: bool = True
) -> _Started:
    """The blocking part of :func:`spawn_off_loop` (safe in any thread): what its
    :class:`ProcessRun` is made of."""
    sink = open_sink(run)
    cgroup = new_cgroup(run)
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # over the system's limit: the default size
        fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    try:
        child = start_child(argv, env, run, run.cores if pin else frozenset(), write_fd)
    except BaseException:
        os.close(read_fd)
        sink.__exit__(None, None, None)
        if cgroup is not None:
            cgroup.remove()
        raise
    finally:
        os.close(write_fd)
    started = time.monotonic()
    if cgroup is not None and not place(cgroup, child.pid):
        cgroup.remove()
        cgroup = None
    os.set_blocking(read_fd, False)
    return child, read_fd, run, sink, started, cgroup


def start_child(
    argv: Sequence[str], env: dict[str, str], run: PreparedRun, cores: frozenset[int], output: int
) -> Child:
    """Start the run's main process in a session of its own, output to ``output``.

    A process of another user comes from the spawn helper (:mod:`executors.spawner`:
    ``Popen`` would fork the whole agent to switch ids); the agent starts the others
    itself (``vfork``), and those of another user too when the helper cannot start.
    """
    switch = identity_switch(run.user)
    helper = shared_helper() if switch else None
    if helper is not None and run.user is not None:
        spawned = helper.spawn(argv, env, run.cwd, run.user, cores, output)
        return Child(spawned.pid, None, report=spawned.report)
    with thread_pinned(cores):
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=run.cwd,
            start_new_session=True,
            **switch,
        )
    return Child(popen.pid, open_pidfd(popen.pid), popen=popen)


def new_cgroup(run: PreparedRun) -> JobCgroup | None:
    """The run's own cgroup with its memory limit, when the agent has a delegated
    cgroup and creating it works; None otherwise (RSS sampling guards the limit)."""
    base = job_cgroup_base().base
    if base is None:
        return None
    try:
        return JobCgroup.create(base, run.marker, run.memory_limit_bytes)
    except OSError:
        return None


def place(cgroup: JobCgroup, pid: int) -> bool:
    """Move the just-spawned ``pid``, then any child it already forked, into ``cgroup``.

    Python 3.11's ``Popen`` cannot start a child inside a cgroup (no
    ``CLONE_INTO_CGROUP``), and a ``preexec_fn`` would run after the switch to the job
    user, who may not move processes between cgroups. So the agent moves the process
    right after ``Popen`` returns, microseconds after exec: memory the job touched before
    that stays charged to the agent's cgroup, and children it forked in that window are
    moved here one by one. That window is accepted: a job cannot allocate much or
    escape in it, and the alternative (a gate process that waits for the move before
    exec'ing the command) changes how a command that cannot be executed is reported.
    Returns False when the main process could not be moved (the run then goes on with
    RSS sampling, outside any cgroup).
    """
    try:
        cgroup.add(pid)
    except OSError:
        return False
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        with contextlib.suppress(OSError):
            cgroup.add(child.pid)
    return True


def spawn_failure(
    run: PreparedRun, message: str, exit_code: int | None, error: str | None = None
) -> EndedRun:
    """An :class:`EndedRun` for a command that could not start, noted in the log;
    ``error`` is :attr:`RunResult.error` (a scheduler refused it)."""
    with open_sink(run) as sink:
        sink.notice(message)
        sink.finish()
    return EndedRun(
        RunResult(
            kind=EndKind.EXITED,
            exit_code=exit_code,
            signal=None,
            duration=0.0,
            peak_rss_bytes=0,
            cpu_seconds=0.0,
            log_bytes=0,
            log_truncated=sink.truncated,
            error=error,
        )
    )
