"""What the agent does to itself at start so that a job cannot read it.

A job running as the agent's own user (a non-root agent, or ``run.allow_root_jobs``)
could otherwise read ``/proc/<agent>/environ``, ``mem`` and ``maps``, attach a
debugger, or find the password in the environment every child inherits.
:func:`make_undumpable` closes ``/proc/<pid>/{environ,mem,maps,fd}`` and ptrace to
processes of the same uid (``prctl(PR_SET_DUMPABLE, 0)``; no core dumps either), and
:func:`forget_secret_env` removes the password variable once the configuration has
read it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import MutableMapping

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3

#: Environment variables that carry credentials into the agent; read once, then dropped.
SECRET_ENV = ("AGENT_SERVER__PASSWORD", "AGENT_ADMIN__PASSWORD")


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result = int(libc.prctl(option, arg, 0, 0, 0))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def make_undumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)`` for this process (Linux; a no-op elsewhere)."""
    if os.uname().sysname == "Linux":
        _prctl(PR_SET_DUMPABLE, 0)


def is_dumpable() -> bool:
    return os.uname().sysname != "Linux" or _prctl(PR_GET_DUMPABLE) != 0


def forget_secret_env(environ: MutableMapping[str, str]) -> None:
    """Drop the credential variables from ``environ`` (``os.environ``: the process's)."""
    for name in SECRET_ENV:
        environ.pop(name, None)
