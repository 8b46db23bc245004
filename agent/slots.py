"""Which job fits what is free, and who holds which cores.

The allocator counts resources by id (``cores`` now; GPUs as ``gpus`` later, exported
to the job as ``CUDA_VISIBLE_DEVICES``, without a rewrite) plus memory as a quantity.
The decisions are pure functions; :class:`Allocator` only keeps the free sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

#: How many of the oldest pending jobs a contending agent spreads its picks over.
SPREAD_WINDOW = 16


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

    def allocate(
        self, need: Need, within: Mapping[str, Iterable[int]] | None = None
    ) -> Allocation | None:
        """Take what ``need`` asks, ids of a resource only from ``within`` when it names
        that resource (a per-gpu slot's own GPU); None when it does not fit now."""
        if not self.fits(need):
            return None
        chosen: dict[str, tuple[int, ...]] = {}
        for name, count in need.ids.items():
            free = self._free[name]
            if within is not None and name in within:
                free = free & set(within[name])
            ids = pick_ids(free, count)
            if ids is None:
                return None
            chosen[name] = ids
        for name, ids in chosen.items():
            self._free[name].difference_update(ids)
        self._free_memory -= need.memory_mb
        return Allocation(chosen, need.memory_mb)

    def release(self, allocation: Allocation) -> None:
        for name, ids in allocation.ids.items():
            self._free[name].update(ids)
        self._free_memory += allocation.memory_mb


@dataclass(frozen=True)
class SlotPlan:
    """One node slot: its node ``index`` and the GPUs its jobs may use."""

    index: int
    gpus: tuple[int, ...] | None = None
    """None: any of the agent's GPUs (the shared layout); ``()``: CPU jobs only; else
    GPU jobs only, on these GPUs (``per-gpu``)."""

    def takes(self, gpus_needed: int) -> bool:
        """Whether a job needing ``gpus_needed`` GPUs may run in this slot."""
        if self.gpus is None:
            return True
        if not self.gpus:
            return gpus_needed == 0
        return 1 <= gpus_needed <= len(self.gpus)


def slot_plans(slots: int | str, cpu_slots: int, gpu_indices: Sequence[int]) -> list[SlotPlan]:
    """``node.slots`` slots sharing every GPU, or ``per-gpu``: one slot per GPU whose
    node index is the GPU's index (as the UFDL job launcher runs one launcher per GPU),
    then ``cpu_slots`` CPU-only slots numbered after the highest GPU index."""
    if slots != "per-gpu":
        return [SlotPlan(index) for index in range(int(slots))]
    plans = [SlotPlan(index, (index,)) for index in sorted(gpu_indices)]
    first_cpu = max(gpu_indices, default=-1) + 1
    plans += [SlotPlan(first_cpu + offset, ()) for offset in range(cpu_slots)]
    return plans


def why_no_slot_takes(plans: Sequence[SlotPlan], gpus_needed: int) -> str | None:
    """Why no slot of this layout can ever run a job needing ``gpus_needed`` GPUs."""
    if any(plan.takes(gpus_needed) for plan in plans):
        return None
    if gpus_needed == 0:
        return "a CPU job, and this agent has no CPU slots (node.slots = per-gpu, cpu_slots = 0)"
    return f"needs {gpus_needed} gpus, and each per-gpu slot has 1"


def spread(candidates: Sequence[T], offset: int, window: int = SPREAD_WINDOW) -> list[T]:
    """The candidates with the first ``window`` of them rotated by ``offset``: agents
    that lost acquires to each other start at different jobs near the head of the
    queue instead of all racing for the oldest one. Order beyond the window is kept."""
    head = min(window, len(candidates))
    if head <= 1:
        return list(candidates)
    shift = offset % head
    return [*candidates[shift:head], *candidates[:shift], *candidates[head:]]
