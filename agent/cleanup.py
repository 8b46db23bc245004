"""Removing job directories nobody will look at again.

After recovery gives back a job the agent was killed in, that job's directories go
(:func:`remove_job_dirs`). At start, the agent's own leftovers — ``private/job-*``
directories older than :data:`STALE_AFTER` that no journal entry names, with their job
directories — go too (:func:`stale_job_names`): kept directories (``run.keep_job_dirs``
off, a refused output) stay a day for inspection. Only directories this agent's own
``private/`` knows are touched, so another agent sharing ``run.work_dir`` loses nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

STALE_AFTER = 24 * 3600.0
"""Seconds after which a job directory no journal entry names is removed at start."""


def stale_job_names(
    private_base: Path, now: float, named: Collection[str], max_age: float = STALE_AFTER
) -> list[str]:
    """Names of ``private_base/job-*`` directories older than ``max_age`` (by their
    last change) that are not in ``named``."""
    try:
        entries = list(private_base.iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        if not entry.name.startswith("job-") or entry.name in named:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if now - info.st_mtime > max_age:
            stale.append(entry.name)
    return sorted(stale)


def remove_job_dirs(name: str, work_dir: Path, private_base: Path) -> None:
    """Remove the job directory ``name`` and the agent's files about it (both may be
    gone already). ``name`` is a bare directory name, never a path."""
    if not name or "/" in name or name in {".", ".."}:
        raise ValueError(f"not a job directory name: {name!r}")
    shutil.rmtree(work_dir / name, ignore_errors=True)
    shutil.rmtree(private_base / name, ignore_errors=True)
