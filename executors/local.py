"""The subprocess executor: the job's command as a process tree on this host."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from executors.base import NodeError, PreparedRun, RunHandle
from executors.env import run_environment
from executors.process import command_argv, spawn_failure, spawn_off_loop

#: Exit code of a command that was not found (as a POSIX shell reports it).
NOT_FOUND = 127

#: Exit code of a command that was found but could not be executed.
NOT_EXECUTABLE = 126

_NOT_EXECUTABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR}


def spawn_failure_code(exc: OSError, cwd: Path) -> int | None:
    """The exit code a failed spawn stands for, or None when it is the node's trouble.

    A missing program is 127 and one that cannot be executed 126, as in a shell: the
    job's fault. A missing working directory, no memory, no processes left, too many
    open files... are the node's.
    """
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) == cwd:
        return None
    if exc.errno == errno.ENOENT:
        return NOT_FOUND
    if exc.errno in _NOT_EXECUTABLE_ERRNOS:
        return NOT_EXECUTABLE
    return None


def check_cwd(cwd: Path) -> None:
    """Raise :class:`NodeError` when the run's working directory is not a directory."""
    if not cwd.is_dir():
        raise NodeError(f"job directory {cwd} does not exist")


class SubprocessExecutor:
    """Runs a command under ``/bin/sh -c`` (string) or as an argv, pinned to its cores."""

    name = "subprocess"

    def __init__(self, agent_env: Mapping[str, str] | None = None) -> None:
        """``agent_env`` is where inherited variables come from (default: ``os.environ``)."""
        self._agent_env = agent_env

    async def start(self, run: PreparedRun) -> RunHandle:
        """Start the run; a command that cannot be spawned ends at once with 127/126."""
        check_cwd(run.cwd)
        argv = command_argv(run.command)
        env = run_environment(run, self._agent_env)
        try:
            started = await spawn_off_loop(argv, env, run)
        except subprocess.SubprocessError as exc:
            raise NodeError(f"cannot pin the job to cores {sorted(run.cores)}: {exc}") from exc
        except OSError as exc:
            code = spawn_failure_code(exc, run.cwd)
            if code is None:
                raise NodeError(f"cannot start the job: {exc}") from exc
            return spawn_failure(run, f"[agent: cannot run {argv[0]!r}: {exc.strerror}]", code)
        return started
