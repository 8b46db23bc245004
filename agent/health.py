"""Is the agent alive, is it ready, and what is it doing: pure answers.

Liveness is about the agent's own loops, never the server: each loop *ticks* and says
how long it may take before its next tick (a poll loop waiting out a backoff or a
retried call may take minutes). The agent is healthy while no loop is past its promise.
A server outage makes the agent not ready, never unhealthy: restarting it would not
bring the server back, and would give running jobs back for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    at: float
    """When the loop last ticked (monotonic clock)."""
    within: float
    """Seconds by which the loop promised to tick again."""


def stalled_loops(ticks: Mapping[str, Tick], now: float) -> list[str]:
    """The loops past their promise at ``now``: the agent is healthy when there are none."""
    return sorted(name for name, tick in ticks.items() if now - tick.at > tick.within)


class LoopClock:
    """Where the agent's loops tick."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.ticks: dict[str, Tick] = {}

    def tick(self, loop: str, within: float) -> None:
        self.ticks[loop] = Tick(self._clock(), within)

    def done(self, loop: str) -> None:
        """The loop has ended on purpose: no more promise to keep."""
        self.ticks.pop(loop, None)

    def stalled(self) -> list[str]:
        return stalled_loops(self.ticks, self._clock())


def why_not_ready(registered: bool, server_up: bool, server_problem: str = "") -> str | None:
    """Why the agent is not ready to take jobs (None: ready)."""
    if not registered:
        return "not logged in and registered yet"
    if not server_up:
        return f"the job server does not answer: {server_problem}".rstrip(": ")
    return None


@dataclass(frozen=True)
class SlotView:
    """One slot as ``/status``, ``agent status`` and systemd's STATUS= show it."""

    slot: int
    node: int
    job: int | None
    phase: str
    progress: float | None
    since: float
    """Wall-clock time the slot entered this job (or became idle)."""
    pid: int | None = None

    def as_json(self, now: float) -> dict[str, object]:
        return {
            "slot": self.slot,
            "node": self.node,
            "job": self.job,
            "phase": self.phase,
            "progress": None if self.progress is None else round(self.progress, 4),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
            "elapsed": round(max(0.0, now - self.since), 1),
            "pid": self.pid,
        }


def status_line(slots: Sequence[SlotView], mode: str = "running") -> str:
    """One line for systemd's STATUS=: ``idle, 2 slots`` · ``running job 42 (37%)``;
    ``mode`` ``draining`` (``agent drain``) or ``stopping`` (a signal) says so first."""
    busy = [slot for slot in slots if slot.job is not None]
    if not busy:
        idle = f"idle, {_count(len(slots), 'slot')}"
        if mode == "stopping":
            return "stopping, no job running"
        return f"drained (agent resume takes jobs again), {idle}" if mode == "draining" else idle
    jobs = ", ".join(
        f"{slot.job}" + ("" if slot.progress is None else f" ({slot.progress:.0%})")
        for slot in busy
    )
    text = f"running job{'s' if len(busy) > 1 else ''} {jobs}"
    idle_slots = len(slots) - len(busy)
    if idle_slots:
        text += f"; {idle_slots} of {len(slots)} slots idle"
    return text if mode == "running" else f"{mode}: {text}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
