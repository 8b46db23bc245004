"""One acquired job, from staging to the last server call.

The order is DESIGN.md's: stage (inputs, templates, pre-process) while the job is
still CREATED → ``start`` → run with cancel, progress and stop watchers → post-process
→ outputs + log → the calls :func:`agent.outcome.decide` returns. The reporting half
runs shielded from cancellation, so a stopping agent still tells the server.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from agent.calls import perform, start_on_server
from agent.config import LogOutputConfig, Settings
from agent.execution import (
    Execution,
    Reattach,
    StepOutcome,
    Watcher,
    make_executor,
    output_problems,
)
from agent.givebacks import GiveBackBook, gave_up_text, should_give_up
from agent.gpus import Gpu, gpu_env
from agent.journal import Journal, JournalEntry
from agent.logs import bind_job_redactor
from agent.metrics import AgentMetrics
from agent.outcome import CallKind, EndReason, Outcome, ServerCall, decide, uploads_results
from agent.outputs import CollectedOutput, OutputBlocked, OutputEmpty, upload_output
from agent.redact import Redactor
from agent.server import Conflict, Forbidden, Job, ServerClient, ServerError, ServerUnreachable
from agent.server.link import log_failed_call
from agent.spec import OutputSpec, RunSpec, SpecError
from agent.staging import InputBudget, JobFault, stage
from agent.statedir import private_dir
from agent.workload import Workload
from agent.workspace import Workspace
from executors.base import JobTampered, NodeError
from executors.identity import JobUser
from executors.safefiles import UnsafeFile

logger = structlog.get_logger("agent.job")

ServerTrouble = (ServerError, ServerUnreachable)


class JobObserver(Protocol):
    """Told about a job's progress (``agent run-once`` draws a bar with it)."""

    def started(self, job: int, execution: Execution) -> None: ...

    def ended(self, report: JobReport) -> None: ...


@dataclass
class AgentContext:
    """What every job run needs from the agent around it."""

    settings: Settings
    client: ServerClient
    redactor: Redactor
    journal: Journal
    job_user: JobUser | None = None
    """Who jobs run as (:func:`agent.jobuser.resolve_job_user`); None: the agent's user."""
    give_backs: GiveBackBook = field(default_factory=lambda: GiveBackBook(None))
    """Jobs given back for node trouble: cooldowns and counts (kept in ``state_dir``)."""
    stop_jobs: anyio.Event = field(default_factory=anyio.Event)
    """Set when running jobs must stop and go back to the queue (agent shutdown)."""
    observer: JobObserver | None = None
    stop_message: str = "agent stopping"
    metrics: AgentMetrics = field(default_factory=AgentMetrics)
    gpu_count: int = 0
    """GPUs of this host jobs may use (set by the agent from its inventory)."""
    workload: Workload = field(default_factory=Workload)
    """Job runs and polls in hand (held by the daemon); a chatty job's log reader
    yields while anything else is."""


@dataclass
class JobReport:
    """How a job ended on this node, for logs, ``run-once`` and the demo table."""

    job: int
    outcome: Outcome
    summary: dict[str, Any] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    workspace: str | None = None


def give_back_text(context: AgentContext, node: int) -> str:
    """The ``error`` a job given back by a stopping agent carries ("node: ..." as the
    decision table wants: recovery recognises its own give-backs by that prefix)."""
    host = context.settings.node.ip or socket.gethostname()
    return f"node: node {node} ({host}) {context.stop_message}; job given back"


def log_output_clash(
    outputs: tuple[OutputSpec, ...], log_output: LogOutputConfig
) -> SpecError | None:
    """A declared output with the name and type the agent uploads the job's log under
    (``run.log_output``), as the spec error the job ends with; None when there is none.

    Let through, one of the two uploads would overwrite or block the other."""
    for index, output in enumerate(outputs):
        if output.name == log_output.name and output.type == log_output.type:
            return SpecError(
                f"outputs[{index}].name",
                f"{output.name!r} ({output.type}) is the name and type of the job log the "
                "agent uploads (run.log_output); choose another name or type",
            )
    return None


def _no_longer_ours(exc: Exception, outcome: Outcome) -> bool:
    """A 403 on a job cancelled or aborted on the server: expected, nothing to report."""
    return (
        isinstance(exc, ServerError) and exc.status == 403 and outcome.reason is EndReason.CANCELLED
    )


def replaced_log_text(reason: str) -> str:
    """The error of a job whose log file is no regular file any more."""
    return f"the job replaced its log file: it {reason} now; no log uploaded"


# ------------------------------------------------------------------ watchers


def cancel_watcher(client: ServerClient, job: int, node: int, interval: float) -> Watcher:
    """Stop the run when the server says the job was cancelled or taken away."""

    async def watch(execution: Execution, _handle: object) -> None:
        while True:
            await anyio.sleep(interval)
            try:
                current = await client.get_job(job, node=node)
            except ServerTrouble as exc:
                log_failed_call(logger, client.link, "cancel check failed", exc)
                continue
            if current.is_cancelled or current.error_reason or current.node != node:
                why = current.error_reason or "released on the server"
                await execution.stop(EndReason.CANCELLED, f"cancelled on the server ({why})")
                return

    return watch


def progress_watcher(
    client: ServerClient, job: int, node: int, metrics: AgentMetrics | None = None
) -> Watcher:
    """Post progress (coalesced by the tracker); a 406 means the job was cancelled.

    The first post comes one interval after the start: the server already knows the
    job started, and a job done sooner has its progress in the final post."""

    async def watch(execution: Execution, _handle: object) -> None:
        tracker = execution.tracker
        await anyio.sleep(tracker.interval)
        while True:
            execution.progress_from_file()
            post = tracker.due(anyio.current_time())
            if post is not None:
                try:
                    await client.progress(job, node, post.value, post.body)
                except Conflict:
                    await execution.stop(EndReason.CANCELLED, "cancelled on the server")
                    return
                except ServerTrouble as exc:
                    log_failed_call(logger, client.link, "progress post failed", exc)
                else:
                    if metrics is not None:
                        metrics.progress_posts.inc()
            await anyio.sleep(
                max(0.05, min(tracker.interval, tracker.next_due(anyio.current_time())))
            )

    return watch


def stop_watcher(context: AgentContext, node: int) -> Watcher:
    """Stop the run when the agent must give its jobs back."""

    async def watch(execution: Execution, _handle: object) -> None:
        await context.stop_jobs.wait()
        await execution.stop(EndReason.AGENT_STOP, give_back_text(context, node))

    return watch


# ------------------------------------------------------------------ the run


class JobRun:
    """One acquired job on one node slot."""

    def __init__(
        self,
        context: AgentContext,
        job: Job,
        node: int,
        spec: RunSpec | SpecError,
        cores: tuple[int, ...],
        gpus: tuple[Gpu, ...] = (),
    ) -> None:
        self.context = context
        self.gpus = gpus
        """The GPUs assigned to this run (none: a CPU job, which sees no GPU)."""
        self.job = job
        self.node = node
        self.spec = spec
        self.cores = cores
        self.marker = uuid.uuid4().hex
        self.started = False
        self.slurm_job: str | None = None
        """The job's Slurm job id, once submitted (``run.executor = "slurm"``)."""
        self.log_start = 0
        self._phase = "staging"
        self.execution: Execution | None = None
        self.report = JobReport(job.pk, Outcome(EndReason.NODE_ERROR, False))
        self.log = logger.bind(job=job.pk, node=node)
        env = spec.env if isinstance(spec, RunSpec) else {}
        self.redactor = context.redactor.for_job(env)
        """Masks the job's secrets too: in its error text and the agent's log lines about it."""

    @property
    def settings(self) -> Settings:
        return self.context.settings

    @property
    def client(self) -> ServerClient:
        return self.context.client

    @property
    def phase(self) -> str:
        """``staging`` · ``pre-process`` · ``running`` · ``post-process`` · ``reporting``."""
        if self._phase == "running" and self.execution is not None and self.execution.step:
            return self.execution.step
        return self._phase

    @property
    def workspace_name(self) -> str:
        """The name of the job's directories (under ``work_dir`` and the private dir)."""
        return f"job-{self.job.pk}-{self.marker[:8]}"

    def _entry(self) -> JournalEntry:
        """The journal's record of this run. Before the job's directory exists, the one
        it is about to get: recovery removes it whether or not it was made."""
        root = self.execution.workspace.root if self.execution else None
        if root is None and isinstance(self.spec, RunSpec):
            root = self.settings.work_dir / self.workspace_name
        workspace = None if root is None else str(root)
        return JournalEntry(
            self.node,
            self.job.pk,
            self.marker,
            self.started,
            workspace,
            self.slurm_job,
            self.log_start,
        )

    async def _journal(self) -> None:
        """Record the job for recovery; the write and its fsync in a worker thread."""
        await anyio.to_thread.run_sync(self.context.journal.record, self._entry())

    def _journal_and_create(self, spec: RunSpec) -> Workspace:
        """Record the job for recovery (naming the directory it is about to get), then
        make its directories and write ``spec.json``: one worker-thread call."""
        self.context.journal.record(self._entry())
        workspace = Workspace.create(
            self.settings.work_dir,
            private_dir(self.settings.state_dir),
            self.workspace_name,
            self.context.job_user,
        )
        workspace.write_json("spec.json", {"job": self.job.pk, "spec": dataclasses.asdict(spec)})
        return workspace

    def _execution(self, spec: RunSpec, workspace: Workspace) -> Execution:
        return Execution(
            spec,
            workspace,
            self.settings,
            self.redactor,
            self.cores,
            self.marker,
            extra_env=self._extra_env(),
            gpu_count=self.context.gpu_count,
            on_scheduled=self._scheduled,
            crowded=self.context.workload.crowded,
        )

    def _extra_env(self) -> dict[str, str]:
        """The agent's variables for the job: its pk, and on this host its GPUs (Slurm
        sets a job's GPU variables itself, from ``--gres``)."""
        extra = {"AGENT_JOB_PK": str(self.job.pk)}
        if self.settings.run.executor != "slurm":
            extra.update(gpu_env(self.gpus))
        return extra

    def _scheduled(self, slurm_job: str) -> None:
        """Slurm accepted the job: journal its id before anything else can happen."""
        self.slurm_job = slurm_job
        if self.execution is not None:
            self.log_start = self.execution.workspace.log_size()
        self.context.journal.record(self._entry())  # at once: sbatch has answered
        self.log.info("job submitted to Slurm", slurm_job=slurm_job)

    async def run(self) -> JobReport:
        """Run the job and tell the server how it ended. Never raises for the job's or
        the server's faults; cancelled from outside, it still reports (shielded)."""
        return await self._run(self._attempt)

    async def resume(self, entry: JournalEntry) -> JobReport:
        """Follow the Slurm job an earlier life of the agent submitted for this job
        (journal ``entry``) to its end, then report as :meth:`run` does."""
        return await self._run(lambda: self._reattach(entry))

    async def _run(self, attempt: Callable[[], Awaitable[StepOutcome]]) -> JobReport:
        structlog.contextvars.bind_contextvars(job=self.job.pk, node=self.node)
        bind_job_redactor(self.redactor)
        outcome: Outcome | None = None
        step: StepOutcome | None = None
        try:
            step = await attempt()  # which records the job in the journal first
            outcome = Outcome(step.reason, self.started, step.error or None)
        except NodeError as exc:
            outcome = Outcome(EndReason.NODE_ERROR, self.started, f"node: {exc}")
        except JobFault as exc:
            outcome = Outcome(EndReason.INPUT_FAULT, self.started, str(exc))
        except JobTampered as exc:  # its log is a FIFO, a symlink, ... at a command's start
            outcome = Outcome(EndReason.OUTPUT_REJECTED, self.started, str(exc))
        except ServerTrouble as exc:
            outcome = Outcome(EndReason.NODE_ERROR, self.started, f"node: server trouble: {exc}")
        except anyio.get_cancelled_exc_class():
            outcome = Outcome(
                EndReason.AGENT_STOP, self.started, give_back_text(self.context, self.node)
            )
            with anyio.CancelScope(shield=True):
                await self._conclude(outcome, step)
            raise
        except OSError as exc:  # the journal or the work dir cannot be written
            outcome = Outcome(EndReason.NODE_ERROR, self.started, f"node: {exc}")
        except Exception as exc:  # a bug of ours must not take the agent down
            self.log.exception("job run failed unexpectedly")
            outcome = Outcome(
                EndReason.NODE_ERROR,
                self.started,
                f"node: internal error: {type(exc).__name__}: {exc}",
            )
        with anyio.CancelScope(shield=True):
            await self._conclude(outcome, step)
        return self.report

    async def _attempt(self) -> StepOutcome:
        if isinstance(self.spec, SpecError):
            await self._journal()
            return StepOutcome(EndReason.INVALID_SPEC, str(self.spec))
        clash = log_output_clash(self.spec.outputs, self.settings.run.log_output)
        if clash is not None:
            await self._journal()
            return StepOutcome(EndReason.INVALID_SPEC, str(clash))
        spec = self.spec
        workspace = await anyio.to_thread.run_sync(self._journal_and_create, spec)
        self.execution = self._execution(spec, workspace)
        executor = make_executor(self.settings, spec)
        budget = InputBudget(self.settings.run.max_input_bytes)
        if await stage(spec, workspace, self.client.download, budget):
            await anyio.to_thread.run_sync(workspace.hand_over)  # (create handed over the rest)
        stop_only = [stop_watcher(self.context, self.node)]
        self._phase = "running"
        if spec.pre_process is not None:
            pre = await self.execution.run_script(spec.pre_process, "pre-process", stop_only)
            if pre.reason is not EndReason.SUCCEEDED:
                return pre
        if self.context.stop_jobs.is_set():
            return StepOutcome(EndReason.AGENT_STOP, give_back_text(self.context, self.node))
        lost = await self._start()
        if lost is not None:
            return StepOutcome(EndReason.TAKEN, lost)
        self.context.metrics.jobs_started.inc()
        self.log.info(
            "job started",
            cores=list(self.cores),
            gpus=[gpu.index for gpu in self.gpus],
            mpi=spec.use_mpi,
            ranks=spec.ranks,
        )
        if self.context.observer is not None:
            self.context.observer.started(self.job.pk, self.execution)
        return await self.execution.run_all(executor, self._watchers(), pre=False)

    def _watchers(self) -> list[Watcher]:
        """What watches a started job's command: the agent's stop, the server's cancel,
        progress posts."""
        return [
            stop_watcher(self.context, self.node),
            cancel_watcher(
                self.client, self.job.pk, self.node, self.settings.run.cancel_check_interval
            ),
            progress_watcher(self.client, self.job.pk, self.node, self.context.metrics),
        ]

    async def _reattach(self, entry: JournalEntry) -> StepOutcome:
        """The rest of a started job whose Slurm job outlived the agent: follow it,
        post-process, outputs; nothing is staged or started again. The journal keeps the
        earlier life's entry until this one is recorded (below, once it is complete)."""
        if isinstance(self.spec, SpecError) or entry.slurm_job is None or not entry.workspace:
            raise NodeError("the interrupted job cannot be followed again")
        self.marker = entry.marker
        self.started = True
        self.slurm_job = entry.slurm_job
        self.log_start = entry.log_start
        root = Path(entry.workspace)
        workspace = Workspace(
            root, private_dir(self.settings.state_dir) / root.name, self.context.job_user
        )
        if not workspace.run_dir.is_dir():
            raise NodeError(f"the interrupted job's directory {workspace.run_dir} is gone")
        self.execution = self._execution(self.spec, workspace)
        executor = make_executor(self.settings, self.spec)
        self._phase = "running"
        await self._journal()
        self.context.metrics.jobs_started.inc()
        self.log.info("following the job's Slurm job again", slurm_job=entry.slurm_job)
        if self.context.observer is not None:
            self.context.observer.started(self.job.pk, self.execution)
        attach = Reattach(entry.slurm_job, entry.log_start)
        return await self.execution.run_all(executor, self._watchers(), pre=False, attach=attach)

    async def _start(self) -> str | None:
        """``start`` the job; None once started, or why it is no longer this node's.

        A 403 means the job is held by another node (or by none): the real server's
        acquire is not atomic, so two nodes can both be told yes, and an admin may abort
        a job while it is being staged. Then there is nothing to tell the server."""
        try:
            await start_on_server(self.client, self.job.pk, self.node)
        except Forbidden:
            holder = (await self.client.get_job(self.job.pk)).node
            if holder == self.node:
                raise
            self.log.info("job taken away before start", holder=holder)
            by = "no node" if holder is None else f"node {holder}"
            return f"taken away before start: {by} holds it now"
        self.started = True
        return None

    # -------------------------------------------------------------- reporting

    def _give_back_or_give_up(self, outcome: Outcome) -> Outcome:
        """Node trouble: give the job back (noted in the book, which starts its cooldown)
        unless this agent already did so ``run.max_give_backs`` times for the same
        reason; then it ends the job with that reason."""
        error = outcome.error or "node: trouble on this node"
        book = self.context.give_backs
        previous = book.get(self.job.pk)
        if previous is not None and should_give_up(
            previous, error, self.settings.run.max_give_backs
        ):
            self.log.warning("giving up on the job", give_backs=previous.count, error=error)
            return Outcome(EndReason.GAVE_UP, outcome.started, gave_up_text(error, previous.count))
        book.gave_back(self.job.pk, error)
        return outcome

    async def _conclude(self, outcome: Outcome, step: StepOutcome | None) -> None:
        execution = self.execution
        self._phase = "reporting"
        if execution is not None:
            execution.step = None
            self.context.metrics.log_bytes.inc(execution.workspace.log_size())
        if outcome.reason is EndReason.NODE_ERROR:
            outcome = self._give_back_or_give_up(outcome)
        if outcome.reason.job_fault and not outcome.started:
            try:
                lost = await self._start()
                if lost is None:
                    outcome = replace(outcome, started=True)
                else:
                    outcome = Outcome(EndReason.TAKEN, False, lost)
            except ServerTrouble as exc:
                self.log.error("cannot start the job to report its fault", error=str(exc))
                outcome = Outcome(EndReason.NODE_ERROR, False, f"node: {exc}")
        if outcome.started and uploads_results(outcome.reason) and execution is not None:
            outcome = await self._upload_results(outcome, execution)
        if outcome.error:
            outcome = replace(outcome, error=self.redactor.redact(outcome.error))
        async with anyio.create_task_group() as cleanup:
            if execution is not None:  # its files are uploaded: removed while we report
                self.report.summary = execution.summary(step) if step else {}
                self.report.workspace = str(execution.workspace.root)
                if not self._keeps_workspace(outcome):
                    cleanup.start_soon(self._remove_workspace, execution.workspace)
            await self._report(outcome)
        self.report.outcome = outcome
        self.log.info(
            "job ended",
            reason=outcome.reason.value,
            error=outcome.error,
            **{k: v for k, v in self.report.summary.items() if k not in {"reason", "error"}},
        )
        if self.context.observer is not None:
            self.context.observer.ended(self.report)
        structlog.contextvars.unbind_contextvars("job", "node")
        bind_job_redactor(None)

    async def _report(self, outcome: Outcome) -> None:
        """The last progress of a success, then the decision table's calls; the journal
        entry goes once they all went through."""
        if outcome.reason is EndReason.SUCCEEDED:
            await self._final_progress()
        for call in decide(outcome):
            if call.kind is CallKind.START:
                continue  # done above
            if not await self._perform(call):
                return
        self.context.journal.clear(self.node)

    def _keeps_workspace(self, outcome: Outcome) -> bool:
        """``run.keep_job_dirs``, or files the server refused (kept for the operator)."""
        return self.settings.run.keep_job_dirs or outcome.reason is EndReason.OUTPUT_REJECTED

    async def _remove_workspace(self, workspace: Workspace) -> None:
        await anyio.to_thread.run_sync(workspace.remove)
        self.report.workspace = None

    async def _final_progress(self) -> None:
        tail = self.execution.tracker.log_tail() if self.execution else ""
        try:
            await self.client.progress(
                self.job.pk, self.node, 1.0, {"message": "finished", "log_tail": tail}
            )
        except ServerTrouble as exc:
            log_failed_call(self.log, self.client.link, "final progress post failed", exc)
        else:
            self.context.metrics.progress_posts.inc()

    async def _upload_results(self, outcome: Outcome, execution: Execution) -> Outcome:
        collected: list[CollectedOutput] = []
        try:
            collected = await execution.outputs()
        except OSError as exc:
            self.log.error("collecting outputs failed", error=str(exc))
        problem = output_problems(collected)
        if problem is not None and outcome.reason is EndReason.SUCCEEDED:
            outcome = replace(outcome, reason=problem[0], error=problem[1])
        for item in collected:
            if item.file is None:
                continue
            try:
                await upload_output(
                    self.client,
                    self.job.pk,
                    self.node,
                    item.spec.name,
                    item.spec.type,
                    item.file,
                    within=item.within,
                )
                self.report.uploaded.append(item.spec.name)
            except UnsafeFile as exc:  # replaced since it was collected
                if outcome.reason is EndReason.SUCCEEDED:
                    outcome = replace(
                        outcome,
                        reason=EndReason.OUTPUT_REJECTED,
                        error=f"output {item.spec.name!r} refused: {exc.reason}",
                    )
            except OutputBlocked as exc:
                kept = f"; its files are kept in {execution.workspace.root}"
                outcome = replace(outcome, reason=EndReason.OUTPUT_REJECTED, error=f"{exc}{kept}")
            except OutputEmpty as exc:
                self.log.warning("output not uploaded", output=item.spec.name, why=str(exc))
                if outcome.reason is EndReason.SUCCEEDED:  # a failed run keeps its own error
                    outcome = replace(outcome, reason=EndReason.OUTPUT_REJECTED, error=str(exc))
            except ServerError as exc:
                if _no_longer_ours(exc, outcome):
                    self.log.info("output not uploaded: the job is no longer this node's")
                    continue
                if exc.status in (400, 403, 406, 417):
                    outcome = replace(
                        outcome,
                        reason=EndReason.OUTPUT_REJECTED,
                        error=f"output {item.spec.name!r} refused by the server: "
                        f"{exc.status} {exc.detail}",
                    )
                else:
                    return Outcome(
                        EndReason.NODE_ERROR,
                        True,
                        f"node: upload of output {item.spec.name!r} failed: {exc}",
                    )
            except ServerUnreachable as exc:
                return Outcome(
                    EndReason.NODE_ERROR,
                    True,
                    f"node: upload of output {item.spec.name!r} failed: {exc}",
                )
        return await self._upload_log(execution, outcome)

    async def _upload_log(self, execution: Execution, outcome: Outcome) -> Outcome:
        """Upload the job's log; one the job replaced (a FIFO, a symlink, a directory)
        is not read, and fails a run that otherwise succeeded."""
        log_output = self.settings.run.log_output
        if execution.workspace.log_is_empty():  # no need to open it in a worker thread
            self.log.info("the job printed nothing: no log uploaded")
            return outcome
        # A deleted log of an earlier attempt blocks the name: then use one of this run's.
        for name in (log_output.name, f"{log_output.name}-{self.marker[:8]}"):
            try:
                await upload_output(
                    self.client,
                    self.job.pk,
                    self.node,
                    name,
                    log_output.type,
                    execution.workspace.log_path,
                    filename="job.log",
                )
            except OutputBlocked:
                continue
            except OutputEmpty:
                self.log.info("the job printed nothing: no log uploaded")
            except UnsafeFile as exc:
                self.log.warning("the job replaced its log file: not uploaded", why=exc.reason)
                if outcome.reason is EndReason.SUCCEEDED:
                    error = replaced_log_text(exc.reason)
                    outcome = replace(outcome, reason=EndReason.OUTPUT_REJECTED, error=error)
            except ServerTrouble as exc:
                if _no_longer_ours(exc, outcome):
                    self.log.info("log not uploaded: the job is no longer this node's")
                else:
                    self.log.error("log upload failed", error=str(exc))
            else:
                self.report.uploaded.append(name)
            return outcome
        return outcome

    async def _perform(self, call: ServerCall) -> bool:
        """Carry out one call; on failure, see whether the server is there anyway."""
        try:
            await perform(self.client, self.job.pk, self.node, call)
        except ServerTrouble as exc:
            if await self._already(call):
                return True
            self.log.error(
                "server call failed; the journal keeps the job for recovery",
                call=call.kind.value,
                error=str(exc),
            )
            return False
        return True

    async def _already(self, call: ServerCall) -> bool:
        """Whether the server is already where ``call`` would have put the job (a retry
        whose first try got through, or a finish on a job finished elsewhere)."""
        try:
            current = await self.client.get_job(self.job.pk)
        except ServerTrouble:
            return False
        checks: dict[CallKind, Callable[[Job], bool]] = {
            CallKind.FINISH: lambda j: j.end_time is not None or j.is_cancelled,
            CallKind.RESET: lambda j: j.start_time is None,
            CallKind.RELEASE: lambda j: j.node != self.node,
        }
        return checks[call.kind](current)
