"""The agent's directories, made and locked down before the first job.

``state_dir`` holds the journal and ``private/`` (each job's log, spec copy and packed
outputs), both 0700. When jobs run as another user and their directories lie beneath
``state_dir`` (the default ``<state_dir>/jobs``), ``state_dir`` and ``jobs`` are 0711:
the job user may pass through to its own directory but list nothing. A ``run.work_dir``
elsewhere is made 0711 when the agent creates it and left as it is otherwise; either
way the job user must be able to enter it (:func:`work_dir_problem`): an agent whose job
user cannot leaves every job to other agents and says why, and ``agent check`` fails.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from executors.identity import JobUser, search_blocked

PRIVATE = 0o700
PID_FILE = "agent.pid"
"""``state_dir/agent.pid``: the running ``agent run`` (``agent drain`` signals it)."""

PASS_THROUGH = 0o711


class StateDirError(Exception):
    """The directories cannot be made safe; one line naming the key."""


def private_dir(state_dir: Path) -> Path:
    """Where the agent keeps each job's log, spec copy and packed outputs."""
    return state_dir / "private"


def state_dir_mode(state_dir: Path, work_dir: Path, user: JobUser) -> int:
    """0711 when another account must pass through ``state_dir`` to its job dirs, else 0700."""
    below = state_dir.absolute() in work_dir.absolute().parents
    return PASS_THROUGH if below and not user.is_current() else PRIVATE


def _make(path: Path, mode: int, key: str, *, enforce: bool = True) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        if enforce and stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError as exc:
        raise StateDirError(f"{key}: cannot prepare {path}: {exc.strerror}") from None


def prepare_spec_dir(base: Path, user: JobUser, *, ours: bool) -> Path:
    """``run-once --spec``: job directories in ``base`` (0711 when ``ours`` and jobs run
    as another user), the agent's files in ``base/private`` (0700); returns the latter."""
    _make(base, PRIVATE if user.is_current() else PASS_THROUGH, "run.work_dir", enforce=ours)
    problem = work_dir_problem(base, user)
    if problem is not None:
        raise StateDirError(problem)
    private = private_dir(base)
    _make(private, PRIVATE, "run.work_dir")
    return private


def work_dir_problem(work_dir: Path, user: JobUser) -> str | None:
    """Why ``user`` cannot reach its job directories under ``work_dir`` (one line naming
    the directory in the way), or None."""
    blocked = search_blocked(work_dir, user)
    if blocked is None:
        return None
    mode_text = oct(stat.S_IMODE(blocked.stat().st_mode))[2:]
    return (
        f"run.work_dir: the job user {user.name!r} cannot enter {blocked} "
        f"(mode {mode_text}); allow it to pass (chmod o+x) or choose another work_dir"
    )


def prepare(state_dir: Path, work_dir: Path, user: JobUser) -> Path:
    """Make ``state_dir``, its journal and private directories and ``work_dir`` with the
    modes above; returns the private directory. Raises :class:`StateDirError` when one
    cannot be made; whether the job user can reach ``work_dir`` is
    :func:`work_dir_problem`'s question."""
    _make(state_dir, state_dir_mode(state_dir, work_dir, user), "state_dir")
    _make(state_dir / "journal", PRIVATE, "state_dir")
    private = private_dir(state_dir)
    _make(private, PRIVATE, "state_dir")
    ours = work_dir.absolute() == (state_dir / "jobs").absolute() or not work_dir.exists()
    mode = PRIVATE if user.is_current() else PASS_THROUGH
    _make(work_dir, mode, "run.work_dir", enforce=ours)
    return private
