"""What every executor takes and gives back.

An executor turns a :class:`PreparedRun` (what to run, where, with which cores and
environment) into a running process tree, and reports a :class:`RunResult` when the
tree is gone. The job lifecycle never touches processes directly: it holds a
:class:`RunHandle`, waits on it, and asks it to stop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from executors.cgroup import MemoryGuard
from executors.identity import JobUser

#: Name of the environment variable that marks every process of one job. The value is
#: unique per run; the final sweep of a stop finds escaped processes (double-forked
#: daemons that left the process group) by it.
MARKER_ENV = "AGENT_JOB_MARKER"


class NodeError(Exception):
    """The node cannot run this job (no mpiexec, cannot spawn, ...): not the job's fault.

    The lifecycle gives the job back to the queue when it sees this.
    """


class JobTampered(Exception):
    """The job replaced a file of the agent's (its log) with something that is no
    regular file (a FIFO, a symlink, a directory): the job's fault, not the node's.

    ``str(self)`` is the error the job ends with.
    """


class MpiNotFoundError(NodeError):
    """A job asked for MPI and no usable mpiexec was found on this node."""


LineCallback = Callable[[str], None]
"""Called with each line of the job's output (decoded, without the newline)."""

LinesCallback = Callable[[bytes], None]
"""Called with several lines of the job's output at once, as the log file gets them
(filtered, UTF-8), joined by ``\n`` (a line's ``\r`` is left on it). A sink given
one calls it instead of the line callback, so that a chatty job's output is looked at
a block at a time, not a Python call per line, and decoded only where needed."""

LineFilter = Callable[[str], str]
"""Applied to each line before it reaches the log file and the line callback
(redaction of secrets)."""


class SecretFinder(Protocol):
    """Where secrets are in a text, so a long line is never cut inside one, and whether
    a block of output may hold one at all (:class:`agent.redact.Redactor` is one)."""

    def may_hold_secret(self, data: bytes) -> bool:
        """False only when the run's line filter would leave every line of ``data``
        (decoded as UTF-8, bad bytes replaced) unchanged and :meth:`spans` would find
        nothing in it: the sink then skips the filter for that block."""
        ...

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the secrets (and keyword+value matches) in ``text``."""
        ...

    @property
    def reach(self) -> int:
        """How many bytes past a cut a secret may reach (the sink holds that much back)."""
        ...


@dataclass(frozen=True)
class PreparedRun:
    """Everything an executor needs to run one command of a job."""

    command: str | Sequence[str]
    """A string is run by ``/bin/sh -c``; a sequence is the argv."""
    cwd: Path
    log_path: Path
    """Combined stdout+stderr go here (appended: pre/post-process share the file)."""
    marker: str
    """Unique value of :data:`MARKER_ENV` for this run's processes."""
    cores: frozenset[int] = frozenset()
    """Allocated core ids; empty means no pinning and a count of 1 for thread vars."""
    job_env: Mapping[str, str] = field(default_factory=dict)
    """Variables the job gets on top of the inherited allowlist (envVars, AGENT_*)."""
    inherit_env: Sequence[str] = ()
    """Names (``fnmatch`` patterns) taken from the agent's own environment."""
    walltime: float | None = None
    """Seconds; None means unlimited."""
    kill_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL to the group when stopping."""
    max_log_bytes: int = 100 * 1024 * 1024
    """Cap of the log file; output beyond it is still scanned but not written."""
    ranks: int = 1
    """MPI ranks (ignored by the subprocess executor)."""
    user: JobUser | None = None
    """Run every process as this account (needs a root agent); None: the agent's own."""
    on_line: LineCallback | None = None
    on_lines: LinesCallback | None = None
    """Takes the lines a block at a time; when set, :attr:`on_line` is not called."""
    line_filter: LineFilter | None = None
    secret_finder: SecretFinder | None = None
    """Where the secrets the line filter masks are: a long line is cut outside them."""
    on_scheduled: Callable[[str], None] | None = None
    """Called with the scheduler's id of the run (Slurm's job id) as soon as the
    scheduler has accepted it, before it runs: the journal keeps it for recovery."""
    memory_limit_bytes: int | None = None
    """Memory the whole run may use; over it the run ends :attr:`EndKind.MEMORY`
    (enforced by a cgroup when the agent has one delegated, else by RSS sampling).
    None: unlimited."""
    crowded: Callable[[], bool] | None = None
    """Whether the agent has other work in hand besides this run (other jobs, a poll):
    only then does a run printing without pause have its output taken in at most
    :data:`~executors.logsink.READER_DUTY` of the time. None: always so."""


class EndKind(enum.Enum):
    """How a process tree ended."""

    EXITED = "exited"
    """The main process exited by itself (any code)."""
    SIGNALED = "signaled"
    """The main process died of a signal nobody here sent."""
    WALLTIME = "walltime"
    """The executor stopped it because the walltime ran out."""
    STOPPED = "stopped"
    """Stopped on request (:meth:`RunHandle.stop`)."""
    MEMORY = "memory"
    """The run went over :attr:`PreparedRun.memory_limit_bytes`: the kernel killed it
    (cgroup) or the executor stopped it (RSS sampling)."""


@dataclass(frozen=True)
class RunResult:
    """What is known about a run once its whole process tree is gone."""

    kind: EndKind
    exit_code: int | None
    """The main process's exit code, when it exited normally."""
    signal: int | None
    """The signal that ended the main process, when one did."""
    duration: float
    """Seconds from start to the end of the tree."""
    peak_rss_bytes: int
    """Highest sum of RSS over the process tree, sampled."""
    cpu_seconds: float
    """User + system CPU time of the tree."""
    log_bytes: int
    """Bytes the job printed (written or not)."""
    log_truncated: bool
    """Output went past ``max_log_bytes`` and the rest was not written."""
    disk_full: bool = False
    """Writing the log failed for want of space: the disk filled up while it ran."""
    memory_limit_bytes: int | None = None
    """The memory limit the run had (None: unlimited)."""
    memory_limit_hit: bool = False
    """The run went over its memory limit (it then ended :attr:`EndKind.MEMORY`)."""
    memory_peak_bytes: int | None = None
    """Peak memory as the guard measured it: the cgroup's ``memory.peak`` (cgroup guard,
    page cache included) or ``peak_rss_bytes`` (sampling). None without a guard."""
    memory_guard: MemoryGuard | None = None
    """How the limit was enforced: ``"cgroup"`` (the kernel) or ``"rss"`` (sampling)."""
    error: str | None = None
    """How the run ended in the words of whoever ended it, when none of the kinds says
    it (a scheduler refused it, or someone else cancelled it there): the job's fault,
    and its error text."""

    @property
    def succeeded(self) -> bool:
        return self.kind is EndKind.EXITED and self.exit_code == 0 and self.error is None


@runtime_checkable
class RunHandle(Protocol):
    """A started run."""

    @property
    def pid(self) -> int: ...

    async def wait(self) -> RunResult:
        """Wait until the main process has ended and the whole tree is gone."""
        ...

    async def stop(self) -> None:
        """Ask the tree to end: SIGTERM to the group, grace, SIGKILL, sweep.

        Returns once the stop has been set going; :meth:`wait` reports the end with
        :attr:`EndKind.STOPPED`. Calling it twice, or after the end, is harmless.
        """
        ...


class Executor(Protocol):
    """Runs a prepared command on this host."""

    name: str

    async def start(self, run: PreparedRun) -> RunHandle:
        """Start the run. Raises :class:`NodeError` when this node cannot run it."""
        ...


@runtime_checkable
class Reattachable(Protocol):
    """An executor whose runs outlive the agent (a scheduler's jobs): a restarted agent
    follows a run it started before instead of giving the job back."""

    async def attach(self, run: PreparedRun, ref: str, log_start: int) -> RunHandle:
        """Follow the run known to the scheduler as ``ref``; the job's log is cut back
        to ``log_start`` bytes and filled again from the run's output."""
        ...
