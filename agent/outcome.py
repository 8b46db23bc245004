"""What to tell the server once a job's run has ended: DESIGN.md's decision table.

:func:`decide` is the whole table as one pure function; the job runner only carries
out the calls it returns, in order. :func:`describe_exit` turns an executor's
result into the error text the server receives.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from executors.base import EndKind, RunResult


class EndReason(enum.Enum):
    """Why a job stopped, named once."""

    SUCCEEDED = "succeeded"
    TAKEN = "taken"
    """Acquire answered 406: another node won. Nothing to tell."""
    INVALID_SPEC = "invalid_spec"
    """The job's definition cannot be run (job's fault)."""
    INPUT_FAULT = "input_fault"
    """An input is missing (404) or its checksum does not match (job's fault)."""
    FAILED = "failed"
    """Non-zero exit or a signal."""
    WALLTIME = "walltime"
    OUTPUT_MISSING = "output_missing"
    OUTPUT_REJECTED = "output_rejected"
    """A declared output escapes the job directory, or the server refuses it for good."""
    CANCELLED = "cancelled"
    """Cancelled or aborted on the server."""
    AGENT_STOP = "agent_stop"
    """The agent was told to stop (SIGTERM/SIGINT): the job goes back to the queue."""
    NODE_ERROR = "node_error"
    """Trouble on this node (disk, no mpiexec, server unreachable for long)."""
    INTERRUPTED = "interrupted"
    """Found at start-up: the agent died while running it (SIGKILL, OOM, power)."""
    GAVE_UP = "gave_up"
    """Node trouble again, after ``run.max_give_backs`` give-backs by this agent for the
    same reason: ended ERRORED instead of going round the fleet once more."""
    MEMORY = "memory"
    """The run went over its memory limit (``hardware.memory``, else the slot's share of
    ``node.memory``) and was stopped."""

    @property
    def job_fault(self) -> bool:
        return self in _JOB_FAULTS

    @property
    def gives_back(self) -> bool:
        """The job returns to the queue for another try (not the job's fault)."""
        return self in _GIVE_BACK


_JOB_FAULTS = frozenset(
    {
        EndReason.INVALID_SPEC,
        EndReason.INPUT_FAULT,
        EndReason.FAILED,
        EndReason.WALLTIME,
        EndReason.OUTPUT_MISSING,
        EndReason.OUTPUT_REJECTED,
        EndReason.GAVE_UP,
        EndReason.MEMORY,
    }
)
_GIVE_BACK = frozenset({EndReason.AGENT_STOP, EndReason.NODE_ERROR, EndReason.INTERRUPTED})


class CallKind(enum.Enum):
    START = "start"
    FINISH = "finish"
    RESET = "reset"
    RELEASE = "release"


@dataclass(frozen=True)
class ServerCall:
    kind: CallKind
    success: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How one job ended, as far as the decision needs to know."""

    reason: EndReason
    started: bool
    """``start`` succeeded on the server."""
    error: str | None = None
    """The text the server receives as ``error`` (None for success)."""


def decide(outcome: Outcome) -> tuple[ServerCall, ...]:
    """The server calls, in order, that end a job this way (DESIGN.md's table)."""
    reason, error = outcome.reason, outcome.error
    if reason is EndReason.TAKEN:
        return ()
    if reason is EndReason.SUCCEEDED:
        return (ServerCall(CallKind.FINISH, success=True),)
    if reason.gives_back:
        if not outcome.started:
            return (ServerCall(CallKind.RELEASE),)
        return (
            ServerCall(CallKind.FINISH, error=error or f"node: {reason.value}"),
            ServerCall(CallKind.RESET),
            ServerCall(CallKind.RELEASE),
        )
    finish = ServerCall(CallKind.FINISH, error=error or reason.value)
    if outcome.started:
        return (finish,)
    # A job's fault found before start (spec, inputs): start it so it can end ERRORED.
    return (ServerCall(CallKind.START), finish)


def uploads_results(reason: EndReason) -> bool:
    """Whether outputs and the log are uploaded before telling the server.

    Not for a job given back: ``reset`` only soft-deletes outputs, and a soft-deleted
    output would block the same name on the next attempt.
    """
    return not reason.gives_back and reason is not EndReason.TAKEN


class ExitCode(enum.IntEnum):
    """The agent's exit codes: one meaning each (``run``, ``run-once``, ``check``)."""

    SUCCESS = 0
    JOB_FAILED = 1
    """run-once: the job ended ERRORED; check: a problem was found."""
    USAGE = 2
    """Bad command line or configuration."""
    NOTHING_TO_DO = 3
    """run-once: no pending job fits, or the job asked for is not pending or not ours."""
    CANCELLED = 4
    NODE_ERROR = 5
    """run-once: the job was given back because of trouble on this node."""
    SERVER_UNAVAILABLE = 6
    """The server stayed unreachable (or kept failing) for ``server.startup_timeout``."""
    REFUSED = 7
    """The server refused the agent: login or node registration (wrong password, a field
    it does not accept, no permission)."""
    NO_SUCH_JOB = 8
    """run-once --job PK: the server has no job PK."""


def exit_code(reason: EndReason) -> ExitCode:
    if reason is EndReason.SUCCEEDED:
        return ExitCode.SUCCESS
    if reason is EndReason.CANCELLED:
        return ExitCode.CANCELLED
    if reason is EndReason.TAKEN:
        return ExitCode.NOTHING_TO_DO
    if reason.gives_back:
        return ExitCode.NODE_ERROR
    return ExitCode.JOB_FAILED


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def format_walltime(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


_MIB = 1024 * 1024


def _mib(size: int, *, up: bool = False) -> str:
    """Bytes as whole MiB (rounded up with ``up``), or with one decimal when not whole."""
    if size % _MIB == 0 or up:
        return str(-(-size // _MIB))
    return f"{size / _MIB:.1f}"


def memory_exceeded_text(result: RunResult) -> str:
    """``memory limit exceeded (peak 1025 MiB > limit 200 MiB)``; a cgroup's peak never
    passes its limit (the kernel kills first), which the text then says."""
    limit, peak = result.memory_limit_bytes, result.memory_peak_bytes
    if limit is None:
        return "memory limit exceeded"
    if peak is not None and peak > limit:
        return f"memory limit exceeded (peak {_mib(peak, up=True)} MiB > limit {_mib(limit)} MiB)"
    return f"memory limit exceeded (limit {_mib(limit)} MiB reached: killed by the kernel)"


def describe_exit(result: RunResult, walltime_text: str | None = None) -> tuple[EndReason, str]:
    """Reason and error text for a finished command (not stopped on request)."""
    if result.disk_full:  # whatever else happened, the job filled the disk first
        return EndReason.FAILED, "no space left on device while the job ran (its log is cut)"
    if result.kind is EndKind.WALLTIME:
        text = walltime_text or format_walltime(result.duration)
        return EndReason.WALLTIME, f"walltime {text} exceeded"
    if result.kind is EndKind.MEMORY:
        return EndReason.MEMORY, memory_exceeded_text(result)
    if result.error is not None:
        return EndReason.FAILED, result.error
    if result.kind is EndKind.SIGNALED and result.signal is not None:
        return EndReason.FAILED, f"killed by {signal_name(result.signal)}"
    if result.exit_code == 0:
        return EndReason.SUCCEEDED, ""
    return EndReason.FAILED, f"exit code {result.exit_code}"
