"""Running a job's commands on this host, with or without a job server.

:class:`Execution` holds one job's run on this node: its workspace, cores, marker
and progress tracker. It runs the pre-process, main and post-process commands through
an executor, lets watchers (cancel checks, progress posts, the agent's stop) stop the
running tree, and turns what happened into an :class:`~agent.outcome.EndReason` with
its error text. The server side (acquire, start, uploads, finish) is in
:mod:`agent.jobrun`; ``agent run-once --spec`` uses this module alone.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

import executors
from agent.config import Settings, job_memory_limit_bytes
from agent.outcome import EndReason, describe_exit
from agent.outputs import CollectedOutput, collect_outputs
from agent.progress import ProgressTracker, read_progress_file
from agent.redact import Redactor
from agent.spec import RunSpec, Script
from agent.workspace import Workspace
from executors.base import (
    EndKind,
    Executor,
    NodeError,
    PreparedRun,
    Reattachable,
    RunHandle,
    RunResult,
)

Watcher = Callable[["Execution", RunHandle], Coroutine[Any, Any, None]]
"""Runs beside a command; may call :meth:`Execution.stop` and then returns."""


@dataclass(frozen=True)
class StepOutcome:
    """How one command ended, as an EndReason; ``result`` is None if it never ran."""

    reason: EndReason
    error: str
    result: RunResult | None = None


def make_executor(settings: Settings, spec: RunSpec) -> Executor:
    """The executor of ``spec``'s main command: Slurm with ``run.executor = "slurm"``,
    else the one the spec selects (subprocess or MPI). Raises
    :class:`~executors.base.NodeError` (no mpiexec, say) now, so a job this node cannot
    run is released before it starts."""
    if settings.run.executor == "slurm":
        slurm = settings.slurm
        return executors.get(
            "slurm",
            mpi=spec.use_mpi,
            cpus=spec.cores,
            gpus=spec.gpus,
            memory_mb=spec.memory_mb,
            queue=spec.queue,
            partition=slurm.partition,
            account=slurm.account,
            qos=slurm.qos,
            extra_args=tuple(slurm.extra_args),
            poll_interval=slurm.poll_interval,
        )
    use_mpi = spec.use_mpi
    name = executors.select_executor_name(use_mpi)
    if name != "mpi":
        return executors.get(name)
    mpi = settings.mpi
    return executors.get(
        name,
        mpiexec=executors.find_mpiexec(mpi.mpiexec),
        flavor=mpi.flavor,
        extra_args=mpi.extra_args,
        hostfile=str(mpi.hostfile) if mpi.hostfile else None,
    )


@dataclass(frozen=True)
class Reattach:
    """A main command an earlier life of the agent started (a Slurm job), to follow."""

    ref: str
    log_start: int
    """Bytes the job's log had when the command started."""


@dataclass
class Execution:
    spec: RunSpec
    workspace: Workspace
    settings: Settings
    redactor: Redactor
    """The job's own (:meth:`Redactor.for_job`): it masks the job's secrets too."""
    cores: tuple[int, ...]
    marker: str
    extra_env: dict[str, str] = field(default_factory=dict)
    gpu_count: int = 0
    """GPUs of the whole agent (the ``per-gpu`` layout's slot count depends on it)."""
    tracker: ProgressTracker = field(init=False)
    stop_reason: EndReason | None = None
    stop_error: str | None = None
    step: str | None = None
    """Which command runs now: ``pre-process``, ``running`` or ``post-process``."""
    on_scheduled: Callable[[str], None] | None = None
    """Told the scheduler's id of the main command once it is accepted (Slurm)."""
    crowded: Callable[[], bool] | None = None
    """Whether the agent has other work in hand (:attr:`PreparedRun.crowded`)."""
    _handle: RunHandle | None = None

    def __post_init__(self) -> None:
        self.tracker = ProgressTracker(
            self.settings.run.progress_interval, self.spec.progress_regex
        )

    # ---------------------------------------------------------------- commands

    def job_env(self) -> dict[str, str]:
        env = {key: str(value) for key, value in self.spec.env.items()}
        env.update(self.extra_env)
        env["AGENT_JOB_DIR"] = str(self.workspace.run_dir)
        env["AGENT_PROGRESS_FILE"] = str(self.workspace.progress_file)
        return env

    def prepared(
        self,
        command: str | Sequence[str],
        *,
        walltime: float | None,
        ranks: int = 1,
        on_scheduled: Callable[[str], None] | None = None,
    ) -> PreparedRun:
        run = self.settings.run
        return PreparedRun(
            command=command if isinstance(command, str) else tuple(command),
            cwd=self.workspace.run_dir,
            log_path=self.workspace.log_path,
            marker=self.marker,
            cores=frozenset(self.cores),
            job_env=self.job_env(),
            inherit_env=tuple(run.inherit_env),
            walltime=walltime,
            kill_grace=run.kill_grace,
            max_log_bytes=run.max_log_bytes,
            ranks=ranks,
            on_line=self.tracker.feed_line,
            on_lines=self.tracker.feed_lines,
            line_filter=self.redactor.redact,
            secret_finder=self.redactor,
            user=self.workspace.owner,
            on_scheduled=on_scheduled,
            memory_limit_bytes=job_memory_limit_bytes(
                self.spec.memory_mb, self.settings.node, self.gpu_count
            ),
            crowded=self.crowded,
        )

    @property
    def pid(self) -> int | None:
        """The running command's process (its session leader), if one runs."""
        return self._handle.pid if self._handle is not None else None

    async def stop(self, reason: EndReason, error: str | None = None) -> None:
        """Stop the running command (if any) for ``reason``; the first reason wins."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_error = error
        if self._handle is not None:
            await self._handle.stop()

    async def run_command(
        self,
        executor: Executor,
        run: PreparedRun,
        watchers: Sequence[Watcher] = (),
        attach: Reattach | None = None,
    ) -> RunResult:
        """Start ``run`` (or follow it again: ``attach``), let the watchers watch it,
        return when the tree is gone."""
        if attach is None:
            handle = await executor.start(run)
        elif isinstance(executor, Reattachable):
            handle = await executor.attach(run, attach.ref, attach.log_start)
        else:
            raise NodeError(f"the {executor.name} executor cannot follow a run again")
        self._handle = handle
        result: RunResult | None = None
        try:
            async with anyio.create_task_group() as group:
                for watcher in watchers:
                    group.start_soon(watcher, self, handle)
                if self.stop_reason is not None:
                    await handle.stop()
                result = await handle.wait()
                group.cancel_scope.cancel()
        finally:
            if result is None:
                # Cancelled from outside (shutdown of the whole agent): never leave a tree.
                with anyio.CancelScope(shield=True):
                    await handle.stop()
                    await handle.wait()
            self._handle = None
        assert result is not None
        return result

    def _step_outcome(self, result: RunResult, label: str | None) -> StepOutcome:
        if result.kind is EndKind.STOPPED and self.stop_reason is not None:
            return StepOutcome(self.stop_reason, self.stop_error or "", result)
        reason, error = describe_exit(result, self.spec.walltime_text)
        if label and error:
            error = f"{label} {error}"
        return StepOutcome(reason, error, result)

    async def run_script(
        self, script: Script, label: str, watchers: Sequence[Watcher] = ()
    ) -> StepOutcome:
        """Pre/post-process (script files were staged): the subprocess executor, no
        walltime of its own."""
        run = self.prepared(script.command, walltime=None)
        self.step = label
        result = await self.run_command(executors.get("subprocess"), run, watchers)
        return self._step_outcome(result, label)

    async def run_main(
        self,
        executor: Executor,
        watchers: Sequence[Watcher] = (),
        attach: Reattach | None = None,
    ) -> StepOutcome:
        run = self.prepared(
            self.spec.command,
            walltime=self.spec.walltime,
            ranks=self.spec.ranks,
            on_scheduled=self.on_scheduled,
        )
        self.step = "running"
        result = await self.run_command(executor, run, watchers, attach)
        return self._step_outcome(result, None)

    async def run_all(
        self,
        executor: Executor,
        watchers: Sequence[Watcher] = (),
        *,
        pre: bool = True,
        attach: Reattach | None = None,
    ) -> StepOutcome:
        """Pre-process (when ``pre``), main command (followed again when ``attach``),
        and post-process after a success."""
        if pre and self.spec.pre_process is not None:
            step = await self.run_script(self.spec.pre_process, "pre-process", watchers)
            if step.reason is not EndReason.SUCCEEDED:
                return step
        step = await self.run_main(executor, watchers, attach)
        if step.reason is EndReason.SUCCEEDED and self.spec.post_process is not None:
            post = await self.run_script(self.spec.post_process, "post-process", watchers)
            if post.reason is not EndReason.SUCCEEDED:
                return StepOutcome(post.reason, post.error, step.result)
        return step

    # ---------------------------------------------------------------- results

    async def outputs(self) -> list[CollectedOutput]:
        return await collect_outputs(
            self.spec.outputs, self.workspace.run_dir, self.workspace.packed_dir
        )

    def progress_from_file(self) -> None:
        value = read_progress_file(self.workspace.progress_file)
        if value is not None:
            self.tracker.update(value)

    def summary(self, step: StepOutcome) -> dict[str, Any]:
        result = step.result
        return {
            "reason": step.reason.value,
            "error": step.error,
            "exit_code": result.exit_code if result else None,
            "signal": result.signal if result else None,
            "seconds": round(result.duration, 3) if result else None,
            "peak_rss_bytes": result.peak_rss_bytes if result else None,
            "cpu_seconds": round(result.cpu_seconds, 3) if result else None,
            "log_truncated": result.log_truncated if result else None,
            "memory_limit_bytes": result.memory_limit_bytes if result else None,
            "memory_guard": result.memory_guard if result else None,
        }


def output_problems(collected: Sequence[CollectedOutput]) -> tuple[EndReason, str] | None:
    """The first missing or refused declared output, as a reason and error text."""
    for item in collected:
        if item.problem == "missing":
            return EndReason.OUTPUT_MISSING, f"output {item.spec.name!r} missing"
        if item.problem is not None:
            return EndReason.OUTPUT_REJECTED, f"output {item.spec.name!r} {item.problem}"
    return None
