"""Job lifecycle phases, derived from timestamps exactly as the real server does.

no `start_time` → CREATED; started, no `end_time` → STARTED (CANCELLED when `error_reason`
is set); ended → FINISHED (ERRORED when `error_reason` is set). FINISHED and CANCELLED are
"finalised": they cannot be acquired or aborted.
"""

from __future__ import annotations

from enum import Enum


class Phase(Enum):
    """A job's lifecycle phase."""

    CREATED = "CREATED"
    STARTED = "STARTED"
    CANCELLED = "CANCELLED"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"


FINALISED = frozenset({Phase.FINISHED, Phase.CANCELLED})


def phase_of(start_time: str | None, end_time: str | None, error_reason: str | None) -> Phase:
    """The phase a job with these fields is in."""
    if start_time is None:
        return Phase.CREATED
    if end_time is None:
        return Phase.STARTED if error_reason is None else Phase.CANCELLED
    return Phase.FINISHED if error_reason is None else Phase.ERRORED
