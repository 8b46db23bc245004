"""The agent: node slots, the poll loop, and shutdown.

``node.slots`` nodes are registered as ``(ip, index)``; each runs at most one job. The
loop lists pending jobs (oldest first), skips those that are not ours (executor class)
or can never fit, takes the first that fits what is free now, acquires it (406 → the
next candidate) and runs it in the background. An agent that lost an acquire to
another node in the last 30 s starts its picks at a random one of the 16 oldest jobs,
so agents sharing a queue stop racing for the same job. It polls again at once when a job
ends, else after ``poll.interval`` with jitter, backing off on server errors.

Shutdown escalates: :meth:`Agent.drain` stops taking work; after
``shutdown.drain_timeout`` (or at once on :meth:`Agent.stop_now`) running jobs are
stopped and given back.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import structlog
from pydantic import ValidationError

from agent import __version__
from agent.cleanup import remove_job_dirs, stale_job_names
from agent.cluster import PartitionBook, follows_again
from agent.config import Settings
from agent.gpus import MemoryMonitor, inventory, node_facts
from agent.health import LoopClock, SlotView, why_not_ready
from agent.host import host_ip, usable_cores, usable_memory_mb
from agent.jobrun import AgentContext, JobReport, JobRun
from agent.journal import JournalEntry
from agent.outcome import EndReason, Outcome
from agent.queuedrain import QueueDrain
from agent.recovery import recover_node
from agent.server import (
    BadRequest,
    Forbidden,
    Job,
    JobTaken,
    Node,
    NotFound,
    ServerError,
    ServerUnreachable,
    Template,
)
from agent.server.client import LazyJobs
from agent.server.errors import field_errors
from agent.server.filters import PENDING_JOBS
from agent.server.link import log_failed_call
from agent.slots import (
    SPREAD_WINDOW,
    Allocation,
    Allocator,
    Need,
    SlotPlan,
    slot_plans,
    spread,
    why_never_fits,
    why_no_slot_takes,
)
from agent.spec import RunSpec, SpecError, resolve_job_spec
from agent.staging import why_inputs_cannot_fit
from agent.statedir import private_dir, work_dir_problem
from executors import NodeError, find_mpiexec
from executors.identity import current_user
from executors.slurm import SlurmCommands

logger = structlog.get_logger("agent")

HEARTBEAT_SECONDS = 30.0
CONTENTION_MEMORY = 30.0
"""Seconds after an acquire lost to another node during which picks are spread."""
BACKLOG_LIMIT = 256
"""Most pending jobs kept from a list for the slots that free up after it (a queue of
thousands is not held between polls)."""
BUSY_RECHECK_SECONDS = 5.0
"""With every slot busy, the poll loop still wakes at least this often (and ticks)."""


class RegistrationRefused(Exception):
    """The server refused to create one of this agent's nodes (400 or 403)."""

    def __init__(self, ip: str, index: int, error: ServerError) -> None:
        reason = field_errors(error.body) or error.detail
        super().__init__(f"node registration ({ip}, {index}) refused ({error.status}): {reason}")


class NoSlots(Exception):
    """``node.slots = "per-gpu"`` on a host without GPUs, and no ``node.cpu_slots``."""

    def __init__(self, gpus_found: str) -> None:
        super().__init__(
            f"node.slots = per-gpu, but no GPU ({gpus_found}) and node.cpu_slots = 0:"
            " this agent would have no slot"
        )


class JobNotFound(Exception):
    """``run-once --job PK``: the server has no such job."""

    def __init__(self, pk: int) -> None:
        super().__init__(f"job {pk} does not exist on the server")
        self.pk = pk


@dataclass
class Slot:
    index: int
    node: int
    job: int | None = None
    plan: SlotPlan = field(default_factory=lambda: SlotPlan(0))
    """Which jobs this slot takes, and on which GPUs."""
    run: JobRun | None = None
    since: float = field(default_factory=time.time)
    """Wall-clock time the slot took its job, or became idle."""

    def view(self) -> SlotView:
        run = self.run
        execution = run.execution if run is not None else None
        return SlotView(
            self.index,
            self.node,
            self.job,
            run.phase if run is not None else "idle",
            execution.tracker.value if execution is not None else None,
            self.since,
            execution.pid if execution is not None else None,
        )


def need_of(spec: RunSpec | SpecError, scheduler: bool = False) -> Need:
    """Resources a job asks of this host; an invalid spec needs one core (it only
    reports). With a scheduler (Slurm) it asks none: the cluster's resources are
    Slurm's to give, and the partition's limits decide the fit."""
    if scheduler:
        return Need(queue=spec.queue if isinstance(spec, RunSpec) else None)
    if isinstance(spec, SpecError):
        return Need({"cores": 1})
    return Need({"cores": spec.cores, "gpus": spec.gpus}, spec.memory_mb or 0, spec.queue)


def resolve_spec(template: Template, job: Job) -> RunSpec | SpecError:
    parameters = {name: p.model_dump() for name, p in template.parameters.items()}
    try:
        return resolve_job_spec(parameters, job.parameter_values, job.input_values)
    except SpecError as exc:
        return exc


@dataclass
class Agent:
    context: AgentContext
    exit_when_idle: bool = False
    only_job: int | None = None
    """``run-once --job PK``: consider this job only."""
    max_jobs: int | None = None
    """Stop taking work after this many jobs (``run-once``: 1)."""
    reports: list[JobReport] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = self.context.settings
        self.ip = settings.node.ip or host_ip(settings.server.url)
        self.gpus = inventory(settings.node.gpus)
        """This host's GPUs (NVML or ``node.gpus``); every node of the agent may use them."""
        self.allocator = Allocator(
            {"cores": usable_cores(settings.node), "gpus": self.gpus.indices()},
            usable_memory_mb(settings.node),
        )
        self.context.gpu_count = len(self.gpus.gpus)
        self.gpu_memory = MemoryMonitor(self.gpus)
        """Memory in use per GPU (NVML only), for ``/status`` and ``/metrics``."""
        self.plans = slot_plans(settings.node.slots, settings.node.cpu_slots, self.gpus.indices())
        """The node slots: ``node.slots`` sharing the GPUs, or one per GPU (``per-gpu``)."""
        self.slurm = SlurmCommands()
        """Slurm's client commands (``run.executor = "slurm"``, and recovery of a job
        an earlier life of the agent submitted)."""
        self.partitions = (
            PartitionBook(self.slurm, settings.slurm.partition)
            if settings.run.executor == "slurm"
            else None
        )
        """Slurm's partition limits (``run.executor = "slurm"``), for the fit."""
        self._follow: dict[int, tuple[JournalEntry, Job]] = {}
        """Slurm jobs an earlier life of the agent submitted, to follow again, by node."""
        self._generations: dict[str, int | None] = {}
        """GPU generation pk per compute capability, asked once per agent."""
        self._draining = False
        self._paused = False
        """``agent drain``: take no new job until ``agent resume``; keep running."""
        self._wake = anyio.Event()
        self._skipped: dict[int, str] = {}
        self._mpi_problem: str | None = None
        self._run_problem: str | None = None
        """Why no job can run here at all (the job user cannot reach run.work_dir)."""
        self._taken = 0
        self._contended_until = float("-inf")
        """Until when this agent spreads its picks (it lost an acquire lately)."""
        self._backlog: tuple[LazyJobs, float] | None = None
        """The pending jobs a poll listed that no slot was free for, and when they were
        listed: taken in turn as slots free up, while younger than a poll interval."""
        self._drain = QueueDrain()
        """How fast other nodes take jobs off the queue's head (a contended backlog
        starts past the jobs they have likely taken since it was listed)."""
        self._not_pending: str | None = None
        self.idle_polls = 0
        self.registered = False
        self.loops = LoopClock()
        """Where the poll loop and the heartbeat tick (``/healthz``, the watchdog)."""
        self.context.metrics.watch(
            slots=lambda: len(self.slots),
            busy=lambda: sum(slot.job is not None for slot in self.slots),
            server_up=lambda: self.context.client.link.up,
            gpus=len(self.gpus.gpus),
            gpu_memory=self.gpu_memory.used,
        )

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def draining(self) -> bool:
        """Stopping: no new job, and the agent exits once its jobs are done."""
        return self._draining

    @property
    def paused(self) -> bool:
        """``agent drain``: no new job until ``agent resume``; the agent goes on."""
        return self._paused

    @property
    def mode(self) -> str:
        """``running`` · ``draining`` (``agent drain``) · ``stopping`` (a signal)."""
        if self._draining:
            return "stopping"
        return "draining" if self._paused else "running"

    @property
    def busy(self) -> bool:
        return any(slot.job is not None for slot in self.slots)

    # -------------------------------------------------------------- health

    def slot_views(self) -> list[SlotView]:
        return [slot.view() for slot in self.slots]

    def status(self) -> dict[str, object]:
        """What ``/status`` and ``agent status`` show."""
        now = time.time()
        if not self.registered:
            state = "starting"
        elif self._paused and not self._draining and not self.busy:
            state = "drained"
        else:
            state = self.mode
        return {
            "version": __version__,
            "server": self.settings.server.url,
            "pid": os.getpid(),
            "state": state,
            "ready": self.why_not_ready() is None,
            "not_ready_because": self.why_not_ready(),
            "stalled_loops": self.loops.stalled(),
            "gpus": [
                {
                    "index": gpu.index,
                    "uuid": gpu.uuid,
                    "name": gpu.name,
                    "memory": gpu.memory_bytes,
                    "memory_used": self.gpu_memory.used().get(gpu.index),
                }
                for gpu in self.gpus.gpus
            ],
            "slots": [view.as_json(now) for view in self.slot_views()],
        }

    def why_not_ready(self) -> str | None:
        link = self.context.client.link
        return why_not_ready(self.registered, link.up, link.problem)

    def _call_budget(self) -> float:
        """Longest one retried server call of the poll loop may take."""
        client = self.context.client
        policies = client.policies
        longest = max(policy.timeout or 0.0 for policy in (policies.quick, policies.normal))
        return longest + client.timeout

    def _poll_budget(self) -> float:
        """By when the poll loop promises to tick again: a wait (interval with jitter, a
        backoff, or a busy recheck) plus one retried call."""
        poll = self.settings.poll
        wait = max(poll.interval * 1.2, poll.max_backoff, self._busy_recheck())
        return wait + self._call_budget() + 2.0

    def _busy_recheck(self) -> float:
        return min(BUSY_RECHECK_SECONDS, max(1.0, self.settings.poll.interval))

    # -------------------------------------------------------------- nodes

    async def register(self) -> None:
        """Find or create this agent's nodes, recovering any interrupted job."""
        client = self.context.client
        if not self.plans:
            raise NoSlots(self.gpus.how)
        await client.login(self.settings.server.startup_timeout)
        self.slots = []
        for plan in self.plans:
            index = plan.index
            facts = await self._node_facts(plan)
            node = await client.find_node(self.ip, index)
            try:
                if node is None:
                    node = await client.create_node(self.ip, index, **facts)
                    logger.info("node registered", node=node.pk, ip=self.ip, index=index)
                else:
                    node = await self._update_facts(node, facts)
            except (BadRequest, Forbidden) as exc:
                raise RegistrationRefused(self.ip, index, exc) from None
            interrupted = self.context.journal.read(node.pk)
            self.slots.append(Slot(index, node.pk, plan=plan))
            if interrupted is not None and await self._follow_again(interrupted, node.pk):
                continue
            await recover_node(
                client,
                self.context.journal,
                node.pk,
                node.current_job,
                self.settings.run.kill_grace,
            )
            if interrupted is not None and interrupted.workspace:
                self._remove_job_dirs(Path(interrupted.workspace).name, "recovered")
        self.registered = True
        for name in stale_job_names(private_dir(self.settings.state_dir), time.time(), ()):
            self._remove_job_dirs(name, "stale: older than a day, no journal entry")

        try:
            if self.partitions is None:  # with Slurm, ranks start under srun
                find_mpiexec(self.settings.mpi.mpiexec)
        except NodeError as exc:
            self._mpi_problem = str(exc)
            logger.warning("MPI jobs will be left to other agents", why=self._mpi_problem)
        user = self.context.job_user or current_user()
        self._run_problem = work_dir_problem(self.settings.work_dir, user)
        if self._run_problem is not None:
            logger.error(
                "this agent cannot run jobs: all are left to others", why=self._run_problem
            )

    async def _follow_again(self, entry: JournalEntry, node: int) -> bool:
        """Whether the journal's Slurm job is followed again (the job is still started
        here); one that is not is cancelled in Slurm before the job is given back."""
        if entry.slurm_job is None:
            return False
        try:
            job = await self.context.client.get_job(entry.job, node=node)
        except (ServerError, ServerUnreachable) as exc:
            logger.error(
                "cannot read an interrupted Slurm job's state", job=entry.job, error=str(exc)
            )
            job = None
        if job is not None and self.partitions is not None and follows_again(entry, job, node):
            self._follow[node] = (entry, job)
            return True
        logger.warning(
            "cancelling the Slurm job of an interrupted job",
            job=entry.job,
            slurm_job=entry.slurm_job,
        )
        await self.slurm.cancel(entry.slurm_job, self.context.job_user)
        return False

    async def _resume_jobs(self, group: anyio.abc.TaskGroup) -> None:
        """Follow again the Slurm jobs found at registration, each in its own slot."""
        follow, self._follow = self._follow, {}
        for slot in self.slots:
            if slot.node not in follow:
                continue
            entry, job = follow[slot.node]
            template = await self._template_of(job)
            spec = resolve_spec(template, job) if template is not None else None
            if not isinstance(spec, RunSpec):
                logger.error("cannot follow the interrupted Slurm job again", job=job.pk)
                await self.slurm.cancel(entry.slurm_job or "", self.context.job_user)
                await recover_node(
                    self.context.client,
                    self.context.journal,
                    slot.node,
                    job.pk,
                    self.settings.run.kill_grace,
                )
                continue
            allocation = self.allocator.allocate(need_of(spec, scheduler=True))
            assert allocation is not None  # a scheduler's job needs nothing here
            slot.job = job.pk
            self._taken += 1
            group.start_soon(self._run_job, job, slot, spec, allocation, entry)

    async def _node_facts(self, plan: SlotPlan) -> dict[str, Any]:
        """What a node registers: memory in bytes and its GPUs' facts (nulls without
        GPUs); the generation is looked up on the server by compute capability."""
        gpu = node_facts(self.gpus.subset(plan.gpus))
        capability = gpu.compute_capability
        if capability is not None and capability not in self._generations:
            generation = await self.context.client.hardware_generation(capability)
            self._generations[capability] = generation
            if generation is None:
                logger.warning(
                    "the server knows no GPU generation for this compute capability:"
                    " nodes register without one",
                    compute_capability=capability,
                )
        return {
            "cpu_mem": usable_memory_mb(self.settings.node) * 1024 * 1024,
            "gpu_mem": gpu.gpu_mem,
            "driver_version": gpu.driver_version,
            "hardware_generation": None if capability is None else self._generations[capability],
        }

    async def _update_facts(self, node: Node, facts: dict[str, Any]) -> Node:
        """PATCH what changed since the node was registered (memory, GPUs, driver)."""
        changed = {key: value for key, value in facts.items() if getattr(node, key) != value}
        if not changed:
            return node
        updated = await self.context.client.update_node(node.pk, **changed)
        logger.info("node facts updated", node=node.pk, changed=", ".join(sorted(changed)))
        return updated

    def _remove_job_dirs(self, name: str, why: str) -> None:
        """Remove an ended job's directories (unless ``run.keep_job_dirs``)."""
        if self.settings.run.keep_job_dirs:
            return
        remove_job_dirs(name, self.settings.work_dir, private_dir(self.settings.state_dir))
        logger.info("job directory removed", directory=name, why=why)

    async def heartbeat(self) -> None:
        client = self.context.client
        ping_budget = (client.policies.quick.timeout or 0.0) + client.timeout
        within = max(HEARTBEAT_SECONDS, ping_budget) + 2.0
        while True:  # pings at once: `agent nodes` sees a node as alive from the start
            for slot in self.slots:
                self.loops.tick("heartbeat", within)
                try:
                    await self.context.client.ping(slot.node)
                except (ServerError, ServerUnreachable) as exc:
                    self._server_trouble("heartbeat failed", exc, node=slot.node)
            self.loops.tick("heartbeat", within)
            await anyio.sleep(HEARTBEAT_SECONDS)

    def _server_trouble(self, what: str, exc: Exception, **details: object) -> None:
        """Log a failed call, but quietly during an outage: the link has said it once."""
        if isinstance(exc, ServerError | ServerUnreachable):
            log_failed_call(logger, self.context.client.link, what, exc, **details)
        else:
            logger.warning(what, error=str(exc), **details, exc_info=True)

    # -------------------------------------------------------------- shutdown

    def drain(self, why: str = "agent stopping") -> None:
        """Take no new work; running jobs go on until the drain timeout."""
        self._draining = True
        self.context.stop_message = why
        self._wake.set()

    def pause(self) -> None:
        """``agent drain``: take no new job; running jobs go on; the agent stays up."""
        if not self._paused:
            self._paused = True
            running = sum(slot.job is not None for slot in self.slots)
            logger.info("draining: no new jobs until `agent resume`", running=running)

    def resume(self) -> None:
        """``agent resume``: take jobs again."""
        if self._paused:
            self._paused = False
            logger.info("resumed: taking jobs again")
            self._wake.set()

    def reconfigure(self, settings: Settings) -> None:
        """Use ``settings`` from now on (SIGHUP: only keys that can change live differ)."""
        self.context.settings = settings
        self._wake.set()

    def stop_now(self, why: str = "agent stopping") -> None:
        """Stop running jobs now and give them back."""
        self.drain(why)
        self.context.stop_jobs.set()

    # -------------------------------------------------------------- the loop

    async def run(self) -> list[JobReport]:
        """Register, then poll and run jobs until drained (or idle, if asked)."""
        await self.register()
        async with anyio.create_task_group() as group:
            group.start_soon(self.heartbeat)
            await self._resume_jobs(group)
            await self._poll_loop(group)
            while self.busy:
                self.loops.tick("poll", self._poll_budget())
                await self._wait_for_change(self._busy_recheck())
            self.loops.done("poll")
            group.cancel_scope.cancel()
        self.loops.done("heartbeat")
        return self.reports

    def _done_taking_work(self) -> bool:
        return self._draining or (self.max_jobs is not None and self._taken >= self.max_jobs)

    async def _poll_loop(self, group: anyio.abc.TaskGroup) -> None:
        backoff = 0.0
        while not self._done_taking_work():
            self.loops.tick("poll", self._poll_budget())
            if self._paused or not any(slot.job is None for slot in self.slots):
                await self._wait_for_change(self._busy_recheck())
                continue
            try:
                with self.context.workload.holding():
                    taken = await self._take_jobs(group)
                backoff = 0.0
            except JobNotFound:
                raise
            except Exception as exc:
                backoff = min(max(backoff * 2, 1.0), self.settings.poll.max_backoff)
                self._server_trouble("polling failed", exc, retry_in=round(backoff, 1))
                await self._wait_for_change(backoff)
                continue
            if taken:
                continue
            self.idle_polls += 1
            if self.exit_when_idle and not self.busy:
                return
            interval = self.settings.poll.interval
            await self._wait_for_change(interval * random.uniform(0.8, 1.2))  # noqa: S311

    async def _wait_for_change(self, timeout: float | None) -> None:
        """Sleep until a job ends, a drain starts, or ``timeout`` passes."""
        self._wake = anyio.Event()
        if timeout is None:
            await self._wake.wait()
            return
        with anyio.move_on_after(timeout):
            await self._wake.wait()

    async def _ordered_candidates(self) -> LazyJobs:
        """Pending jobs, oldest first; spread near the head of the queue while this
        agent is losing acquires to others (:func:`~agent.slots.spread`)."""
        if self.partitions is not None:
            await self.partitions.refresh()
        return self._spread_if_contended(await self._candidates())

    def _spread_if_contended(self, candidates: LazyJobs) -> LazyJobs:
        """``candidates`` with the picks spread over their head while this agent has
        lately lost an acquire to another node; as they are otherwise."""
        if not self._contended():
            return candidates
        offset = random.randrange(SPREAD_WINDOW)  # noqa: S311
        return candidates.reordered(lambda items: spread(items, offset))

    async def _candidates(self) -> LazyJobs:
        client = self.context.client
        if self.only_job is not None:
            try:
                job = await client.get_job(self.only_job)
            except NotFound:
                raise JobNotFound(self.only_job) from None
            self._not_pending = why_not_pending(job)
            return LazyJobs([] if self._not_pending else [job])
        return await client.lazy_jobs(PENDING_JOBS)

    def why_not_taken(self, pk: int) -> str | None:
        """Why this agent left job ``pk`` alone (``run-once --job``), if it said so."""
        if pk == self.only_job and self._not_pending:
            return self._not_pending
        return self._skipped.get(pk)

    async def _take_jobs(self, group: anyio.abc.TaskGroup) -> int:
        """Acquire as many fitting jobs as there are free slots; returns how many.

        Jobs left over from the last list are tried first while the list is younger
        than a poll interval (a backlog is worked through without listing every pending
        job again for each one); when none of them is taken, the server is asked."""
        backlog, self._backlog = self._backlog, None
        if backlog is not None and self._backlog_usable(backlog[1]):
            candidates = self._spread_if_contended(self._past_likely_gone(*backlog))
            taken = await self._take_from(group, candidates, backlog[1], from_backlog=True)
            if taken:
                return taken
        listed_at = time.monotonic()
        candidates = await self._ordered_candidates()
        self.context.metrics.polled()
        pending = candidates.pks
        self._drain.listed(listed_at, candidates.pks_in_order(), pending, self._taken)
        self._skipped = {pk: why for pk, why in self._skipped.items() if pk in pending}
        return await self._take_from(group, candidates, listed_at)

    def _contended(self) -> bool:
        """Whether this agent has lost an acquire to another node lately."""
        return time.monotonic() < self._contended_until

    def _past_likely_gone(self, backlog: LazyJobs, listed_at: float) -> LazyJobs:
        """The backlog without the jobs at its head that other nodes have likely taken
        since it was listed (:class:`~agent.queuedrain.QueueDrain`), while this agent is
        losing acquires to them; all of it otherwise."""
        if not self._contended():
            return backlog
        return backlog.after(self._drain.likely_gone(time.monotonic() - listed_at))

    def _backlog_usable(self, listed_at: float) -> bool:
        """Whether jobs listed at ``listed_at`` may still be tried without a new list:
        younger than a poll interval."""
        return time.monotonic() - listed_at < self.settings.poll.interval

    async def _take_from(
        self,
        group: anyio.abc.TaskGroup,
        candidates: LazyJobs,
        listed_at: float,
        *,
        from_backlog: bool = False,
    ) -> int:
        """Acquire fitting jobs of ``candidates`` for the free slots; keeps the rest as
        the backlog when the slots run out first. A backlog in which another node won a
        job is stale: dropped at once (the caller lists again) instead of walked through
        with an acquire per job others took meanwhile."""
        taken = 0
        for job in candidates:
            free = [slot for slot in self.slots if slot.job is None]
            if not free or self._done_taking_work():
                if not free and self.only_job is None:  # the rest waits for a slot
                    self._backlog = (candidates.starting_at(job.pk, BACKLOG_LIMIT), listed_at)
                break
            if self._passed_over(job.pk):
                continue
            template = await self._template_of(job)
            if template is None:
                continue
            if template.executor_class not in self.settings.server.executor_classes:
                self._skip(job.pk, f"executor_class {template.executor_class!r} is not ours")
                continue
            spec = resolve_spec(template, job)
            if self._mpi_problem and self.only_job is None and _wants_mpi(spec):
                self._skip(job.pk, f"MPI job, and {self._mpi_problem}")
                continue
            need = need_of(spec, scheduler=self.partitions is not None)
            never = self._why_never(spec, need)
            if never is not None:
                self._skip(job.pk, never)
                continue
            placed = self._place(need, free)
            if placed is None:
                continue  # fits later, when a running job ends
            slot, allocation = placed
            acquired = await self._acquire(job.pk, slot, allocation)
            if acquired == "taken" and from_backlog:
                break
            if not isinstance(acquired, Job):
                continue
            slot.job = job.pk
            self._taken += 1
            taken += 1
            logger.info("job acquired", job=job.pk, node=slot.node)
            group.start_soon(self._run_job, acquired, slot, spec, allocation)
        return taken

    async def _acquire(
        self, pk: int, slot: Slot, allocation: Allocation
    ) -> Job | Literal["taken", "gone"]:
        """Acquire job ``pk`` for ``slot``: the job, or why not (``allocation`` is then
        given back): another node won it (this agent is then contended), or it is gone."""
        try:
            return await self.context.client.acquire(pk, slot.node)
        except JobTaken:
            self._contended_until = time.monotonic() + CONTENTION_MEMORY
            self.allocator.release(allocation)
            logger.info("job taken by another node", job=pk)
            return "taken"
        except NotFound:  # deleted since it was listed
            self.allocator.release(allocation)
            logger.info("job gone before it could be acquired", job=pk)
            return "gone"
        except BaseException:
            self.allocator.release(allocation)
            raise

    def _place(self, need: Need, free: list[Slot]) -> tuple[Slot, Allocation] | None:
        """A free slot that takes the job, and what it gets there (a per-gpu slot: its
        own GPU); None when nothing fits now."""
        for slot in free:
            if not slot.plan.takes(need.ids.get("gpus", 0)):
                continue
            within = {"gpus": slot.plan.gpus} if slot.plan.gpus is not None else None
            allocation = self.allocator.allocate(need, within)
            if allocation is not None:
                return slot, allocation
        return None

    async def _template_of(self, job: Job) -> Template | None:
        """The job's template; None when it is unreadable (the job is left to others)."""
        self.loops.tick("poll", self._poll_budget())
        try:
            return await self.context.client.get_template(job.template.pk, job.template.version)
        except (ServerError, ValidationError) as exc:
            if isinstance(exc, ServerError) and exc.status >= 500:
                raise  # the server's trouble: back off and poll again
            self._skip(job.pk, f"its template {job.template.pk} is unreadable: {exc}")
            return None

    def _why_never(self, spec: RunSpec | SpecError, need: Need) -> str | None:
        """Why this agent leaves the job to others: too big for it (cores, memory,
        declared inputs), or a queue it does not serve."""
        never = why_never_fits(
            need, self.allocator.capacity, self.allocator.memory_mb, self.settings.node.queues
        )
        if self.partitions is not None:  # Slurm's limits, not this host's
            if never is None and isinstance(spec, RunSpec):
                never = self.partitions.why_refused(spec)
            return never
        never = never or why_no_slot_takes(self.plans, need.ids.get("gpus", 0))
        if (
            never is None
            and isinstance(spec, RunSpec)
            and any(item.declared_size for item in spec.input_files)  # statvfs only then
        ):
            never = why_inputs_cannot_fit(
                spec, self.settings.run.max_input_bytes, free_bytes(self.settings.work_dir)
            )
        return never

    def _passed_over(self, job: int) -> bool:
        """Already left to others, cooling down after a give-back, or nothing can run
        here at all (then it is left to others now, with the reason)."""
        if job in self._skipped or self._cooling(job):
            return True
        if self._run_problem is not None:
            self._skip(job, f"this agent cannot run jobs: {self._run_problem}")
            return True
        return False

    def _cooling(self, job: int) -> bool:
        """Given back for node trouble lately (``run-once --job`` asks for it anyway)."""
        return job != self.only_job and self.context.give_backs.cooling(job)

    def _skip(self, job: int, why: str) -> None:
        self._skipped[job] = why
        logger.info("leaving job for other agents", job=job, why=why)

    async def _run_job(
        self,
        job: Job,
        slot: Slot,
        spec: RunSpec | SpecError,
        allocation: Allocation,
        follow: JournalEntry | None = None,
    ) -> None:
        began = time.monotonic()
        slot.since = time.time()
        gpus = tuple(self.gpus.by_index(index) for index in allocation.ids.get("gpus", ()))
        slot.run = JobRun(self.context, job, slot.node, spec, allocation.cores, gpus)
        try:
            run = slot.run
            with self.context.workload.holding():
                report = await (run.run() if follow is None else run.resume(follow))
        except Exception as exc:  # JobRun reports its own faults; this is a last resort
            logger.exception("job run crashed", job=job.pk)
            report = JobReport(job.pk, Outcome(EndReason.NODE_ERROR, False, str(exc)))
        finally:
            self.allocator.release(allocation)
            slot.job = None
            slot.run = None
            slot.since = time.time()
            self._wake.set()
        reason = report.outcome.reason
        if reason is not EndReason.TAKEN:
            self.context.metrics.job_ended(
                reason.value,
                time.monotonic() - began,
                gave_back=reason.gives_back,
                memory=reason is EndReason.MEMORY,
            )
        self.reports.append(report)


def free_bytes(path: Path) -> int:
    """Free bytes of the file system holding ``path`` (0 when it cannot be asked)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def why_not_pending(job: Job) -> str | None:
    """Why a job cannot be taken now (None: it is pending)."""
    phase = job.phase
    if phase != "CREATED":
        on = f" on node {job.node}" if job.node is not None and phase == "STARTED" else ""
        return f"it is {phase}{on}"
    if job.error_reason:
        return f"it is CREATED with error {job.error_reason!r}"
    if job.node is not None:
        return f"node {job.node} holds it"
    return None


def _wants_mpi(spec: RunSpec | SpecError) -> bool:
    return not isinstance(spec, SpecError) and spec.use_mpi


def summarize(reports: Sequence[JobReport]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome.reason.value] = counts.get(report.outcome.reason.value, 0) + 1
    return counts
