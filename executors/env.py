"""The environment a job's processes get: a pure function of the agent's own.

A job never sees the agent's environment as a whole. It gets the names its
``run.inherit_env`` allowlist matches, minus anything that looks like a credential, then
the job's own variables, then the thread-count variables sized to its cores and the
marker that lets a stop find every one of its processes.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence

from executors.base import MARKER_ENV, PreparedRun
from executors.identity import JobUser

#: Inherited names matching any of these (case-insensitively) never reach a job, even
#: when the allowlist says ``*``. A job may still set such a name itself in its envVars.
CREDENTIAL_PATTERNS: tuple[str, ...] = (
    "AGENT_SERVER__*",
    "*PASSWORD*",
    "*TOKEN*",
    "*SECRET*",
    "*API_KEY*",
    "*APIKEY*",
    "*PRIVATE_KEY*",
)

#: Variables that size the thread pools of common numeric libraries.
THREAD_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: The total number of cores the job was given.
CORES_VAR = "AGENT_CORES"


@functools.lru_cache(maxsize=32)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], object]:
    """One compiled test for "matches any of these ``fnmatch`` patterns" (case-sensitive,
    like :func:`fnmatch.fnmatchcase`): a job's environment is built from every variable
    of the agent's against every pattern."""
    if not patterns:
        return lambda _name: None
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns)).match


def is_credential(name: str) -> bool:
    """Whether an inherited variable name looks like a credential of the agent."""
    return _matcher(CREDENTIAL_PATTERNS)(name.upper()) is not None


def inherited(agent_env: Mapping[str, str], inherit: Sequence[str]) -> dict[str, str]:
    """The agent's variables allowed by the ``inherit`` patterns, credentials removed.

    Patterns are ``fnmatch`` patterns matched case-sensitively against the names
    (environment names are case-sensitive on POSIX).
    """
    allowed = _matcher(tuple(inherit))
    return {
        name: value
        for name, value in agent_env.items()
        if allowed(name) is not None and not is_credential(name)
    }


def account_env(user: JobUser) -> dict[str, str]:
    """What describes the account a job runs as (not the agent's ``HOME`` and ``USER``)."""
    return {"HOME": user.home, "USER": user.name, "LOGNAME": user.name}


def job_environment(
    agent_env: Mapping[str, str],
    inherit: Sequence[str],
    job_env: Mapping[str, str],
    cores: int,
    marker: str,
    *,
    threads: int | None = None,
    user: JobUser | None = None,
) -> dict[str, str]:
    """Build the complete environment of one run.

    Order of precedence, lowest first: the allowlisted part of ``agent_env``; the job
    user's ``HOME``, ``USER`` and ``LOGNAME`` when it is not the agent's account; ``job_env``
    (kept as given, even names that look like credentials: the job chose them); the
    thread-count variables and :data:`CORES_VAR`; :data:`~executors.base.MARKER_ENV`.

    ``cores`` is the number of allocated cores (values below 1 count as 1). ``threads``
    sizes the thread-pool variables when it differs from ``cores`` (an MPI job gives
    each rank ``cores // ranks`` threads); by default it equals ``cores``.
    """
    env = inherited(agent_env, inherit)
    if user is not None and not user.is_current():
        env.update(account_env(user))
    env.update(job_env)
    total = max(1, cores)
    per_process = str(max(1, total if threads is None else threads))
    for name in THREAD_VARS:
        env[name] = per_process
    env[CORES_VAR] = str(total)
    env[MARKER_ENV] = marker
    return env


def run_environment(
    run: PreparedRun, agent_env: Mapping[str, str] | None, *, threads: int | None = None
) -> dict[str, str]:
    """:func:`job_environment` for a prepared run; ``agent_env`` defaults to ``os.environ``."""
    return job_environment(
        os.environ if agent_env is None else agent_env,
        run.inherit_env,
        run.job_env,
        len(run.cores),
        run.marker,
        threads=threads,
        user=run.user,
    )
