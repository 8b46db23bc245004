"""Pure decisions of process control, and the /proc helpers on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from executors import MARKER_ENV, EndKind
from executors.process import command_argv, end_of
from executors.proctree import (
    environ_has,
    group_pids,
    marked_pids,
    marker_needle,
    signal_group,
    signal_pids,
)


def exited(code: int) -> int:
    return code << 8


@pytest.mark.parametrize(
    ("status", "requested", "expected"),
    [
        (exited(0), None, (EndKind.EXITED, 0, None)),
        (exited(3), None, (EndKind.EXITED, 3, None)),
        (signal.SIGSEGV, None, (EndKind.SIGNALED, None, 11)),
        (signal.SIGKILL, EndKind.STOPPED, (EndKind.STOPPED, None, 9)),
        (exited(143), EndKind.WALLTIME, (EndKind.WALLTIME, 143, None)),
        (exited(0), EndKind.STOPPED, (EndKind.STOPPED, 0, None)),
    ],
)
def test_end_of(
    status: int, requested: EndKind | None, expected: tuple[EndKind, int | None, int | None]
) -> None:
    assert end_of(status, requested) == expected


@pytest.mark.parametrize(
    ("command", "argv"),
    [("echo hi", ["/bin/sh", "-c", "echo hi"]), (["a", "b c"], ["a", "b c"]), (("x",), ["x"])],
)
def test_command_argv(command: str | list[str], argv: list[str]) -> None:
    assert command_argv(command) == argv


@pytest.mark.parametrize(
    ("environ", "found"),
    [
        (b"A=1\0AGENT_JOB_MARKER=abc\0", True),
        (b"AGENT_JOB_MARKER=abc\0B=2\0", True),
        (b"AGENT_JOB_MARKER=abc", True),
        (b"AGENT_JOB_MARKER=abcd\0", False),
        (b"X_AGENT_JOB_MARKER=abc\0", False),
        (b"", False),
    ],
)
def test_environ_has(environ: bytes, found: bool) -> None:
    assert environ_has(environ, marker_needle("abc")) is found


def test_a_marker_behind_a_large_environment_is_found(marker: str) -> None:
    """The marker after 200 KiB of other variables (``/proc/PID/environ`` is read in
    several pieces)."""
    env = {"BIG_A": "a" * 100_000, "BIG_B": "b" * 100_000, MARKER_ENV: marker}
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    try:
        assert marked_pids(marker) == [child.pid]
    finally:
        child.kill()
        child.wait()


def test_scans_find_a_real_group_and_marker(marker: str) -> None:
    env = {**os.environ, MARKER_ENV: marker}
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    try:
        assert group_pids(child.pid) == [child.pid]
        assert marked_pids(marker) == [child.pid]
        signal_group(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert group_pids(child.pid) == []
        assert marked_pids(marker) == []
        signal_group(child.pid, signal.SIGKILL)  # gone: harmless
        signal_pids([child.pid], signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
