"""How fast other nodes take jobs off the head of the queue, so that a backlog is not
tried job by job where they have been.

Agents sharing a queue all take its oldest jobs. An agent keeps the jobs its last list
had no free slot for (its backlog) and takes them as slots free up; meanwhile the others
take jobs off the same head, so the first jobs of an older backlog are most likely
gone. Trying them costs an acquire lost (a 406) and then a new list of every pending
job, the dearest call there is. :class:`QueueDrain` compares successive lists: jobs that
were at the head of one and are missing from a later one left the queue (taken by
another node, cancelled, deleted), minus the ones this agent took itself. That gives
a rate; a backlog ``age`` seconds old has then lost about ``rate * age`` jobs off its
head, and the agent starts its picks past them. A job skipped that was still there is
at the head of the next list, so nothing is lost by guessing high, only a little of
the queue's order.

Pure bookkeeping: the caller passes the clock and what it listed and took.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from itertools import islice

#: Shortest time between the two lists a rate is measured over: lists closer than this
#: (a slot freeing right after a poll) count too few jobs to say anything.
MIN_SPAN = 0.25

#: Jobs of a list's head kept to compare the next list with.
HEAD = 256


class QueueDrain:
    """The rate at which other nodes take jobs off the queue's head, from lists."""

    def __init__(self) -> None:
        self.rate = 0.0
        """Jobs per second other nodes took off the head (0 until two lists were
        :data:`MIN_SPAN` apart)."""
        self._head: frozenset[int] = frozenset()
        self._at: float | None = None
        self._taken = 0

    def listed(self, at: float, pks: Iterable[int], pending: Collection[int], taken: int) -> None:
        """A list made at ``at`` (monotonic seconds): ``pks`` its jobs in queue order (at
        least its first :data:`HEAD`), ``pending`` all of them; ``taken`` how many jobs
        this agent has acquired in all so far."""
        if self._at is not None:
            span = at - self._at
            if span < MIN_SPAN:
                return  # keep measuring from the older list
            gone = sum(1 for pk in self._head if pk not in pending)
            self.rate = max(0, gone - (taken - self._taken)) / span
        self._head, self._at, self._taken = frozenset(islice(pks, HEAD)), at, taken

    def likely_gone(self, age: float) -> int:
        """How many jobs off the head of a list ``age`` seconds old others have likely
        taken by now."""
        return int(self.rate * max(age, 0.0))
