"""The agent's Prometheus metrics, served on ``health.listen`` at ``/metrics``.

Each agent has its own registry (several agents share a process in tests), written with
``prometheus-client`` so that the text format is the reference one. The server client
reports its requests here (:class:`agent.server.link.CallObserver`); the daemon and the
job runs report jobs, progress posts and log bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from agent import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No `*_created` series: they would double every counter for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]

JOB_SECONDS_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600, 24 * 3600)
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class AgentMetrics:
    """Counters, gauges and histograms of one agent."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        Info("agent", "The agent's version", registry=registry).info({"version": __version__})
        self.jobs_started = Counter(
            "agent_jobs_started", "Jobs this agent started on the server", registry=registry
        )
        self.jobs_ended = Counter(
            "agent_jobs_ended",
            "Jobs that ended on this agent, by end reason",
            ["reason"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "agent_job_duration_seconds",
            "From acquiring a job to reporting its end, by end reason",
            ["reason"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=registry,
        )
        self.give_backs = Counter(
            "agent_give_backs",
            "Jobs given back to the queue (agent stopping, node trouble, interrupted)",
            registry=registry,
        )
        self.memory_kills = Counter(
            "agent_memory_limit_kills",
            "Runs stopped for going over their memory limit",
            registry=registry,
        )
        self.slots = Gauge("agent_slots", "Node slots of this agent", registry=registry)
        self.gpus = Gauge("agent_gpus", "GPUs jobs of this agent may use", registry=registry)
        self.gpu_memory_used = Gauge(
            "agent_gpu_memory_used_bytes",
            "Memory in use per GPU (NVML, read at most every 10 s; absent without NVML)",
            ["gpu"],
            registry=registry,
        )
        self._gpu_memory: Callable[[], dict[int, int]] = dict
        self.slots_busy = Gauge(
            "agent_slots_busy", "Node slots running a job now", registry=registry
        )
        self.requests = Counter(
            "agent_server_requests",
            "Requests to the job server, by call and HTTP status (or unreachable)",
            ["call", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "agent_server_request_duration_seconds",
            "Time to the reply's headers, by call",
            ["call"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "agent_server_retries",
            "Calls to the job server tried again, by call",
            ["call"],
            registry=registry,
        )
        self.progress_posts = Counter(
            "agent_progress_posts", "Progress reports sent to the server", registry=registry
        )
        self.uploaded_bytes = Counter(
            "agent_uploaded_bytes",
            "Bytes of outputs (logs included) sent to the server",
            registry=registry,
        )
        self.log_bytes = Counter(
            "agent_job_log_bytes", "Bytes jobs wrote to their logs (as kept)", registry=registry
        )
        self._last_good_poll: float | None = None
        Gauge(
            "agent_seconds_since_last_good_poll",
            "Seconds since the job list was last read (NaN: never yet)",
            registry=registry,
        ).set_function(self.seconds_since_good_poll)
        self.server_up = Gauge(
            "agent_server_up",
            "1 while the job server answers, 0 during an outage",
            registry=registry,
        )
        self.server_up.set(1)

    def watch(
        self,
        *,
        slots: Callable[[], int],
        busy: Callable[[], int],
        server_up: Callable[[], bool],
        gpus: int = 0,
        gpu_memory: Callable[[], dict[int, int]] = dict,
    ) -> None:
        """Read these gauges from the agent itself at each scrape."""
        self.gpus.set(gpus)
        self._gpu_memory = gpu_memory
        self.slots.set_function(lambda: float(slots()))
        self.slots_busy.set_function(lambda: float(busy()))
        self.server_up.set_function(lambda: 1.0 if server_up() else 0.0)

    # -------------------------------------------------------------- the client's

    def request(self, call: str, status: str, seconds: float) -> None:
        self.requests.labels(call, status).inc()
        self.request_seconds.labels(call).observe(seconds)

    def retry(self, call: str) -> None:
        self.retries.labels(call).inc()

    def sent(self, nbytes: int) -> None:
        self.uploaded_bytes.inc(nbytes)

    # -------------------------------------------------------------- the agent's

    def polled(self) -> None:
        self._last_good_poll = self._clock()

    def seconds_since_good_poll(self) -> float:
        if self._last_good_poll is None:
            return math.nan
        return self._clock() - self._last_good_poll

    def job_ended(self, reason: str, seconds: float, *, gave_back: bool, memory: bool) -> None:
        self.jobs_ended.labels(reason).inc()
        self.job_seconds.labels(reason).observe(seconds)
        if gave_back:
            self.give_backs.inc()
        if memory:
            self.memory_kills.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        for index, used in self._gpu_memory().items():
            self.gpu_memory_used.labels(str(index)).set(used)
        return generate_latest(self.registry)
