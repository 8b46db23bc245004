"""Which job fits what is free, and who holds which cores.

The allocator counts resources by id (``cores`` now; GPUs as ``gpus`` later, exported
to the job as ``CUDA_VISIBLE_DEVICES``, without a rewrite) plus memory as a quantity.
The decisions are pure functions; :class:`Allocator` only keeps the free sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Need:
    """What a job asks of this host."""

    ids: Mapping[str, int] = field(default_factory=dict)
    """How many ids of each resource, e.g. ``{"cores": 4}``."""
    memory_mb: int = 0
    queue: str | None = None


@dataclass(frozen=True)
class Allocation:
    ids: Mapping[str, tuple[int, ...]]
    memory_mb: int

    @property
    def cores(self) -> tuple[int, ...]:
        return tuple(self.ids.get("cores", ()))


def pick_ids(free: Iterable[int], count: int) -> tuple[int, ...] | None:
    """The ``count`` lowest free ids, or None if there are not enough."""
    ordered = sorted(free)
    if count > len(ordered):
        return None
    return tuple(ordered[:count])


def why_never_fits(
    need: Need, capacity: Mapping[str, int], memory_mb: int, queues: Sequence[str]
) -> str | None:
    """Why this agent can never run a job (too big, wrong queue); None if it could."""
    for name, count in need.ids.items():
        if count > capacity.get(name, 0):
            return f"needs {count} {name}, this agent has {capacity.get(name, 0)}"
    if need.memory_mb > memory_mb:
        return f"needs {need.memory_mb} MiB, this agent has {memory_mb} MiB"
    if need.queue is not None and queues and need.queue not in queues:
        return f"queue {need.queue!r} is not served here (node.queues = {list(queues)})"
    return None


class Allocator:
    """Free ids and memory of this agent; allocate and release are the only changes."""

    def __init__(self, pools: Mapping[str, Iterable[int]], memory_mb: int) -> None:
        self._capacity = {name: frozenset(ids) for name, ids in pools.items()}
        self._free = {name: set(ids) for name, ids in self._capacity.items()}
        self.memory_mb = memory_mb
        self._free_memory = memory_mb

    @property
    def capacity(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in self._capacity.items()}

    def free(self, name: str) -> frozenset[int]:
        return frozenset(self._free.get(name, ()))

    @property
    def free_memory_mb(self) -> int:
        return self._free_memory

    def fits(self, need: Need) -> bool:
        if need.memory_mb > self._free_memory:
            return False
        return all(len(self._free.get(name, ())) >= count for name, count in need.ids.items())

    def allocate(self, need: Need) -> Allocation | None:
        if not self.fits(need):
            return None
        chosen: dict[str, tuple[int, ...]] = {}
        for name, count in need.ids.items():
            ids = pick_ids(self._free[name], count)
            assert ids is not None  # fits() said so
            chosen[name] = ids
        for name, ids in chosen.items():
            self._free[name].difference_update(ids)
        self._free_memory -= need.memory_mb
        return Allocation(chosen, need.memory_mb)

    def release(self, allocation: Allocation) -> None:
        for name, ids in allocation.ids.items():
            self._free[name].update(ids)
        self._free_memory += allocation.memory_mb
