"""Jobs this agent gave back because of trouble on its node: when it may take each one
again, and how often it gave it back for the same reason.

A job given back for node trouble is not taken again by this agent for
:data:`COOLDOWN` seconds, whether or not it is pending in the meantime. The same
trouble again and again (the same error with its numbers blanked, :func:`reason_key`)
is counted; at ``run.max_give_backs`` the agent ends the job instead
(:func:`should_give_up`), so no job cycles through a fleet for ever. The book is kept
in ``<state_dir>/give-backs.json`` (0600): a restart forgets neither.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

logger = structlog.get_logger("agent.givebacks")

COOLDOWN = 300.0
"""Seconds this agent leaves a job alone after giving it back for node trouble."""

FORGET_AFTER = 7 * 24 * 3600.0
"""A job not given back again for this long is dropped from the book."""

FILE_NAME = "give-backs.json"


def reason_key(error: str) -> str:
    """What makes two give-backs "the same reason": the text with numbers blanked
    (pids, sizes, node ids and ports differ from one attempt to the next)."""
    return re.sub(r"\d+", "#", error.strip())


@dataclass(frozen=True)
class GiveBack:
    until: float
    """Wall-clock time (epoch seconds) before which the job is left alone."""
    reason: str
    """:func:`reason_key` of the last give-back."""
    count: int
    """Give-backs in a row for that reason."""
    last: float
    """When it was last given back."""


def should_give_up(previous: GiveBack | None, error: str, max_give_backs: int) -> bool:
    """Whether this agent ends the job instead of giving it back once more: it already
    gave it back ``max_give_backs`` times for this same reason."""
    return (
        previous is not None
        and previous.reason == reason_key(error)
        and previous.count >= max_give_backs
    )


def after_give_back(
    previous: GiveBack | None, error: str, now: float, cooldown: float = COOLDOWN
) -> GiveBack:
    """The book's entry once the job has been given back (again) for ``error``."""
    key = reason_key(error)
    count = previous.count + 1 if previous is not None and previous.reason == key else 1
    return GiveBack(until=now + cooldown, reason=key, count=count, last=now)


def gave_up_text(error: str, count: int) -> str:
    """The ``error`` of a job this agent ended instead of giving it back again (not
    starting with "node:": recovery must not take it for a give-back of its own)."""
    return f"given up after {count} give-backs by this agent for the same trouble: {error}"


class GiveBackBook:
    """The give-backs of this agent, on disk; safe to share between the job tasks."""

    def __init__(
        self,
        path: Path | None,
        *,
        cooldown: float = COOLDOWN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``path`` None keeps the book in memory only."""
        self._path = path
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[int, GiveBack] = self._load()

    def _load(self) -> dict[int, GiveBack]:
        if self._path is None:
            return {}
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            entries = {int(pk): GiveBack(**fields) for pk, fields in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("give-back book unreadable; starting afresh", error=str(exc))
            return {}
        now = self._clock()
        return {pk: e for pk, e in entries.items() if now - e.last < FORGET_AFTER}

    def _save(self) -> None:
        if self._path is None:
            return
        temp = self._path.with_name(f".{self._path.name}.tmp")
        data = json.dumps({str(pk): asdict(entry) for pk, entry in self._entries.items()})
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(temp, self._path)
        except OSError as exc:  # the cooldown still holds in memory
            logger.warning("cannot write the give-back book", error=str(exc))

    def get(self, job: int) -> GiveBack | None:
        return self._entries.get(job)

    def cooling(self, job: int) -> bool:
        """Whether this agent still leaves ``job`` alone."""
        entry = self._entries.get(job)
        return entry is not None and entry.until > self._clock()

    def gave_back(self, job: int, error: str) -> GiveBack:
        """Note that the job was given back for ``error``; returns its entry."""
        with self._lock:
            entry = after_give_back(self._entries.get(job), error, self._clock(), self._cooldown)
            self._entries[job] = entry
            self._save()
        return entry
