"""Which account a job runs as, decided once at start-up.

A root agent runs every job as ``run.user`` (default :data:`DEFAULT_JOB_USER`), never as
root unless ``run.allow_root_jobs`` says so. An agent that is not root cannot switch:
its jobs run as its own user, and ``agent check`` says what that exposes
(:func:`exposure_warning`).
"""

from __future__ import annotations

import os

from agent.config import RunConfig
from executors.identity import JobUser, NoSuchAccount, current_user, lookup_user

DEFAULT_JOB_USER = "agent-job"


class JobUserError(Exception):
    """Jobs cannot run as configured; ``str(self)`` is one line naming the key."""


def create_command(name: str) -> str:
    """The command that creates a job account ``name`` the way the docs do."""
    return (
        "useradd --system --user-group --no-create-home --home-dir /nonexistent "
        f"--shell /usr/sbin/nologin {name}"
    )


def resolve_job_user(run: RunConfig, euid: int | None = None) -> JobUser:
    """The account jobs run as under ``run``, for an agent of effective uid ``euid``.

    Raises :class:`JobUserError` when the account or group is missing, or is root
    without ``run.allow_root_jobs``.
    """
    if (os.geteuid() if euid is None else euid) != 0:
        return current_user()
    try:
        user = lookup_user(run.user, run.group)
    except NoSuchAccount as exc:
        if "group" in str(exc):
            raise JobUserError(f"config: run.group: {exc} on this host") from None
        raise JobUserError(
            f"config: run.user: {exc} on this host; create it with: {create_command(run.user)}"
        ) from None
    if user.is_root and not run.allow_root_jobs:
        raise JobUserError(
            f"config: run.user: {run.user!r} is root; jobs would have every privilege of "
            "this host (set run.allow_root_jobs = true if that is really meant)"
        )
    return user


def exposure_warning(user: JobUser, euid: int | None = None) -> str | None:
    """One line on what jobs can reach running as ``user``, or None when isolated."""
    if user.is_root:
        return (
            "jobs run as root (run.allow_root_jobs): a job can read the agent's config, "
            "password file, tokens in its memory and every file of this host"
        )
    if user.uid == (os.geteuid() if euid is None else euid):
        return (
            f"jobs run as the agent's own user {user.name!r} (the agent is not root): a job "
            "can read and change everything that user can, the agent's files and password "
            "file included; run the agent as root with run.user for isolation"
        )
    return None
