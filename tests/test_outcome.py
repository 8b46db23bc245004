"""The decision table of DESIGN.md, row by row."""

from __future__ import annotations

import signal

import pytest

from agent.outcome import (
    CallKind,
    EndReason,
    ExitCode,
    Outcome,
    ServerCall,
    decide,
    describe_exit,
    exit_code,
    format_walltime,
    uploads_results,
)
from executors.base import EndKind, RunResult

START = ServerCall(CallKind.START)
RESET = ServerCall(CallKind.RESET)
RELEASE = ServerCall(CallKind.RELEASE)


def finish(error: str | None = None, success: bool = False) -> ServerCall:
    return ServerCall(CallKind.FINISH, success=success, error=error)


@pytest.mark.parametrize(
    ("outcome", "calls"),
    [
        # acquire 406: nothing, try the next candidate
        (Outcome(EndReason.TAKEN, False), ()),
        # job's fault before start: start → finish(false, error)
        (
            Outcome(EndReason.INVALID_SPEC, False, "invalid analysis: x"),
            (START, finish("invalid analysis: x")),
        ),
        (
            Outcome(EndReason.INPUT_FAULT, False, "input 'a': md5 mismatch"),
            (START, finish("input 'a': md5 mismatch")),
        ),
        # node-side trouble before start: release
        (Outcome(EndReason.NODE_ERROR, False, "node: disk full"), (RELEASE,)),
        (Outcome(EndReason.AGENT_STOP, False, "node: stopping"), (RELEASE,)),
        # exit 0 with outputs: finish(true)
        (Outcome(EndReason.SUCCEEDED, True), (finish(success=True),)),
        # failures after start: finish(false, text)
        (Outcome(EndReason.FAILED, True, "exit code 3"), (finish("exit code 3"),)),
        (Outcome(EndReason.FAILED, True, "killed by SIGSEGV"), (finish("killed by SIGSEGV"),)),
        (
            Outcome(EndReason.WALLTIME, True, "walltime 01:00:00 exceeded"),
            (finish("walltime 01:00:00 exceeded"),),
        ),
        (
            Outcome(EndReason.OUTPUT_MISSING, True, "output 'model' missing"),
            (finish("output 'model' missing"),),
        ),
        # cancelled: finish (a 200 no-op that frees the node)
        (Outcome(EndReason.CANCELLED, True, "cancelled"), (finish("cancelled"),)),
        # agent stop or uploads failing after start: finish → reset → release
        (
            Outcome(EndReason.AGENT_STOP, True, "node: agent stopped"),
            (finish("node: agent stopped"), RESET, RELEASE),
        ),
        (
            Outcome(EndReason.NODE_ERROR, True, "node: upload failed"),
            (finish("node: upload failed"), RESET, RELEASE),
        ),
        (
            Outcome(EndReason.INTERRUPTED, True, "node: interrupted"),
            (finish("node: interrupted"), RESET, RELEASE),
        ),
    ],
)
def test_decision_table(outcome: Outcome, calls: tuple[ServerCall, ...]) -> None:
    assert decide(outcome) == calls


def test_give_back_error_defaults_to_a_node_text() -> None:
    calls = decide(Outcome(EndReason.AGENT_STOP, True))
    assert calls[0].error is not None
    assert calls[0].error.startswith("node")


@pytest.mark.parametrize("reason", list(EndReason))
def test_uploads_only_when_the_job_is_not_given_back(reason: EndReason) -> None:
    assert uploads_results(reason) == (not reason.gives_back and reason is not EndReason.TAKEN)


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (EndReason.SUCCEEDED, ExitCode.SUCCESS),
        (EndReason.FAILED, ExitCode.JOB_FAILED),
        (EndReason.INVALID_SPEC, ExitCode.JOB_FAILED),
        (EndReason.OUTPUT_MISSING, ExitCode.JOB_FAILED),
        (EndReason.CANCELLED, ExitCode.CANCELLED),
        (EndReason.NODE_ERROR, ExitCode.NODE_ERROR),
        (EndReason.AGENT_STOP, ExitCode.NODE_ERROR),
        (EndReason.TAKEN, ExitCode.NOTHING_TO_DO),
    ],
)
def test_run_once_exit_codes(reason: EndReason, code: ExitCode) -> None:
    assert exit_code(reason) is code


def result(
    kind: EndKind, code: int | None = None, sig: int | None = None, duration: float = 1.0
) -> RunResult:
    return RunResult(kind, code, sig, duration, 0, 0.0, 0, False)


@pytest.mark.parametrize(
    ("run", "walltime", "expected"),
    [
        (result(EndKind.EXITED, 0), None, (EndReason.SUCCEEDED, "")),
        (result(EndKind.EXITED, 3), None, (EndReason.FAILED, "exit code 3")),
        (
            result(EndKind.SIGNALED, None, signal.SIGSEGV),
            None,
            (EndReason.FAILED, "killed by SIGSEGV"),
        ),
        (
            result(EndKind.WALLTIME, None, signal.SIGTERM),
            "01:00:00",
            (EndReason.WALLTIME, "walltime 01:00:00 exceeded"),
        ),
        (
            result(EndKind.WALLTIME, duration=61),
            None,
            (EndReason.WALLTIME, "walltime 00:01:01 exceeded"),
        ),
    ],
)
def test_describe_exit(
    run: RunResult, walltime: str | None, expected: tuple[EndReason, str]
) -> None:
    assert describe_exit(run, walltime) == expected


def test_format_walltime() -> None:
    assert format_walltime(3600) == "01:00:00"
    assert format_walltime(90061) == "25:01:01"
