"""How much the agent has in hand at once: job runs and job hunts (polls).

A job printing without pause has its output read by a thread of its own, which holds
the GIL while it filters and writes a block. When the agent has nothing else in hand
that costs nothing, and the job's log is taken in at full speed; when other jobs run or
the agent is looking for one, the reader yields (:func:`executors.logsink.reader_pause`)
so their work does not wait on it. The daemon counts; reader threads only read the
count (an int, read whole under the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Workload:
    """A count of the things in hand, each held for as long as it lasts."""

    def __init__(self) -> None:
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @contextmanager
    def holding(self) -> Iterator[None]:
        """One more thing in hand for the block's duration."""
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1

    def crowded(self) -> bool:
        """Whether more than one thing is in hand: asked on behalf of a running job,
        whether anything besides it is."""
        return self._count > 1
