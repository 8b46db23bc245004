"""The Slurm executor: each job's command becomes one ``sbatch`` job.

The agent runs on a host that can submit (a login or head node) and keeps doing
everything else itself: it submits with ``sbatch --parsable`` (the script on standard
input, the job's environment as sbatch's own with ``--export=ALL``, so no value is on a
command line and no credential of the agent's is in it), follows the job with
``scontrol -o show job ID`` every ``slurm.poll_interval`` seconds (``sacct -c`` once
slurmctld has forgotten it; never ``sbatch --wait``), cancels it with ``scancel``, and
maps how it ended onto the decision table (:func:`executors.slurm_state.slurm_ending`).

Slurm writes the job's output to ``slurm.out`` in the job's own directory (beside its
working directory, on the shared filesystem); the agent reads it as it grows into the
job's log through the same filter, cap and progress callback as a local run's output.
The agent creates that file itself before submitting and keeps reading the descriptor
it opened, so a job that swaps the file for a symlink cannot make the agent read
anything else.

When the agent runs as root and jobs run as another account, ``sbatch`` and ``scancel``
run as that account: the job is the job user's in Slurm's records, as it would be run
by hand.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from executors.base import (
    EndKind,
    JobTampered,
    NodeError,
    PreparedRun,
    RunHandle,
    RunResult,
)
from executors.env import job_environment
from executors.identity import JobUser
from executors.logsink import LogSink
from executors.process import identity_switch, open_sink, spawn_failure
from executors.safefiles import NotRegularFile, open_regular
from executors.slurm_state import (
    JobState,
    Request,
    batch_script,
    parse_sacct,
    parse_scontrol,
    sbatch_argv,
    sbatch_refusal,
    slurm_ending,
    unreachable,
)

logger = structlog.get_logger("executors.slurm")

#: Seconds one Slurm command may take before Slurm counts as unreachable.
COMMAND_TIMEOUT = 60.0

#: Looks in a row at a job neither scontrol nor the completion log knows before it
#: counts as lost (the node's fault).
UNKNOWN_LIMIT = 3

#: Seconds after ``scancel`` before the agent stops waiting for Slurm to confirm.
CANCEL_CONFIRM = 120.0

#: Name of the file Slurm writes the job's output to, in the job's directory.
OUTPUT_NAME = "slurm.out"

_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """What one Slurm command said."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SlurmCommands:
    """Runs Slurm's client commands (each in a worker thread, with a timeout)."""

    sbatch: str = "sbatch"
    scontrol: str = "scontrol"
    scancel: str = "scancel"
    sacct: str = "sacct"
    timeout: float = COMMAND_TIMEOUT

    async def call(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        user: JobUser | None = None,
        cwd: Path | None = None,
    ) -> Answer:
        """Run ``argv``; a missing command or a timeout raises :class:`NodeError`."""

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                timeout=self.timeout,
                check=False,
                **identity_switch(user),
            )

        try:
            done = await anyio.to_thread.run_sync(run)
        except subprocess.TimeoutExpired:
            raise NodeError(f"Slurm did not answer {argv[0]} within {self.timeout:g} s") from None
        except OSError as exc:
            raise NodeError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        return Answer(done.returncode, done.stdout, done.stderr)

    async def job_state(self, job_id: str) -> JobState | None:
        """The job's state, from slurmctld or else its completion log; None when neither
        knows it. Raises :class:`NodeError` when Slurm cannot be asked."""
        answer = await self.call([self.scontrol, "-o", "show", "job", job_id])
        if answer.returncode == 0:
            state = parse_scontrol(answer.stdout)
            if state is not None:
                return state
        elif unreachable(answer.stderr) or "invalid job id" not in answer.stderr.lower():
            raise NodeError(f"scontrol show job {job_id}: {_last_line(answer.stderr)}")
        history = await self.call([self.sacct, "-c", "-P", "-n", "-o", "jobid,state,exitcode"])
        if history.returncode != 0:
            return None
        return parse_sacct(history.stdout, job_id)

    async def cancel(self, job_id: str, user: JobUser | None) -> None:
        """``scancel`` the job (as the account that submitted it); errors are logged."""
        try:
            answer = await self.call([self.scancel, job_id], user=user)
        except NodeError as exc:
            logger.warning("scancel failed", slurm_job=job_id, error=str(exc))
            return
        if answer.returncode != 0:
            logger.warning("scancel failed", slurm_job=job_id, error=_last_line(answer.stderr))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def job_name(run: PreparedRun) -> str:
    """``ufdl-job-42`` for the job of pk 42 (``AGENT_JOB_PK``), else by its marker."""
    pk = run.job_env.get("AGENT_JOB_PK")
    return f"ufdl-job-{pk}" if pk else f"agent-{run.marker[:8]}"


def output_path(run: PreparedRun) -> Path:
    """Where Slurm writes the run's output: the job's directory, beside its cwd."""
    return run.cwd.parent / OUTPUT_NAME


@dataclass
class SlurmExecutor:
    """Submits one job's command to Slurm; built per job with what the job asks."""

    mpi: bool = False
    cpus: int = 1
    gpus: int = 0
    memory_mb: int | None = None
    queue: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    extra_args: Sequence[str] = ()
    poll_interval: float = 5.0
    agent_env: Mapping[str, str] | None = None
    commands: SlurmCommands = field(default_factory=SlurmCommands)

    name = "slurm"

    def request(self, run: PreparedRun) -> Request:
        return Request(
            job_name=job_name(run),
            workdir=run.cwd,
            output=output_path(run),
            mpi=self.mpi,
            ranks=run.ranks,
            cpus=self.cpus,
            gpus=self.gpus,
            memory_mb=self.memory_mb,
            walltime=run.walltime,
            partition=self.queue or self.partition,
            account=self.account,
            qos=self.qos,
            extra_args=tuple(self.extra_args),
        )

    def environment(self, run: PreparedRun) -> dict[str, str]:
        """Exactly the job's environment (sbatch's own, exported to the job), plus
        ``SLURM_CONF`` when the agent has one: sbatch and the job's srun need it."""
        agent_env = os.environ if self.agent_env is None else self.agent_env
        cpus = 1 if self.mpi else self.cpus
        env = job_environment(
            agent_env, run.inherit_env, run.job_env, cpus, run.marker, user=run.user
        )
        if "SLURM_CONF" in agent_env:
            env["SLURM_CONF"] = agent_env["SLURM_CONF"]
        return env

    async def start(self, run: PreparedRun) -> RunHandle:
        """Submit the run. Slurm unreachable is :class:`NodeError`; a request Slurm
        refuses ends the run at once with sbatch's message (the job's fault)."""
        if not run.cwd.is_dir():
            raise NodeError(f"job directory {run.cwd} does not exist")
        sink = open_sink(run)
        try:
            output_fd = _create_output(output_path(run), run.user)
        except BaseException:
            sink.__exit__(None, None, None)
            raise
        try:
            answer = await self.commands.call(
                sbatch_argv(self.request(run), self.commands.sbatch),
                stdin=batch_script(run.command, self.mpi),
                env=self.environment(run),
                user=run.user,
                cwd=run.cwd,
            )
        except BaseException:
            os.close(output_fd)
            sink.__exit__(None, None, None)
            raise
        job_id = answer.stdout.strip().split(";", 1)[0]
        if answer.returncode != 0 or not job_id.isdigit():
            os.close(output_fd)
            job_fault, message = sbatch_refusal(answer.stderr or answer.stdout)
            if not job_fault:
                sink.__exit__(None, None, None)
                raise NodeError(f"sbatch failed: {message}")
            sink.__exit__(None, None, None)
            refused = f"Slurm refused the job: {message}"
            return spawn_failure(run, f"[agent: {refused}]", None, error=refused)
        logger.info("submitted to Slurm", slurm_job=job_id, job_name=job_name(run))
        if run.on_scheduled is not None:
            run.on_scheduled(job_id)
        sink.notice(f"[agent: submitted to Slurm as job {job_id}]")
        return SlurmRun(job_id, run, sink, output_fd, self.poll_interval, self.commands)

    async def attach(self, run: PreparedRun, ref: str, log_start: int) -> RunHandle:
        """Follow a job submitted by an earlier life of the agent: its log is cut back to
        ``log_start`` bytes and read again from Slurm's output file."""
        _truncate(run.log_path, log_start)
        sink = open_sink(run)
        try:
            output_fd = open_regular(output_path(run), os.O_RDONLY, beneath=run.cwd.parent)
        except NotRegularFile as exc:
            sink.__exit__(None, None, None)
            raise JobTampered(
                f"the job replaced its Slurm output file: it {exc.reason} now"
            ) from exc
        except OSError:
            output_fd = -1  # never written: the job may not have started yet
        logger.info("following a Slurm job again", slurm_job=ref)
        sink.notice(f"[agent: restarted; following Slurm job {ref} again]")
        return SlurmRun(ref, run, sink, output_fd, self.poll_interval, self.commands)


def _create_output(path: Path, user: JobUser | None) -> int:
    """Create Slurm's output file empty (the job user's, 0600) and return a descriptor
    the agent reads it by."""
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode=0o600)
    except NotRegularFile as exc:
        raise JobTampered(f"the job's Slurm output file {path} {exc.reason}") from exc
    except OSError as exc:
        raise NodeError(f"cannot create {path}: {exc.strerror}") from exc
    if user is not None and not user.is_current():
        os.fchown(fd, user.uid, user.gid)
    return fd


def _truncate(path: Path, size: int) -> None:
    try:
        fd = open_regular(path, os.O_WRONLY)
    except NotRegularFile as exc:
        raise JobTampered(f"the job replaced its log file: it {exc.reason} now") from exc
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NodeError(f"cannot open the job log {path}: {exc.strerror}") from exc
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


class SlurmRun:
    """A submitted Slurm job: its output read into the log, its state followed."""

    def __init__(
        self,
        job_id: str,
        run: PreparedRun,
        sink: LogSink,
        output_fd: int,
        poll_interval: float,
        commands: SlurmCommands,
    ) -> None:
        self.job_id = job_id
        self._run = run
        self._sink = sink
        self._fd = output_fd
        self._offset = 0
        self._poll = poll_interval
        self._commands = commands
        self._started = anyio.current_time()
        self._stop = anyio.Event()
        self._cancel_sent: float | None = None
        self._unknown = 0
        self._lock = anyio.Lock()
        self._result: RunResult | None = None
        self._node_fault: str | None = None

    @property
    def pid(self) -> int:
        """No process on this host: 0."""
        return 0

    async def stop(self) -> None:
        self._stop.set()

    async def wait(self) -> RunResult:
        async with self._lock:
            if self._result is None and self._node_fault is None:
                await self._follow()
        if self._node_fault is not None:
            raise NodeError(self._node_fault)
        assert self._result is not None
        return self._result

    async def _follow(self) -> None:
        while True:
            await self._read_output()
            state = await self._look()
            if state is not None and state.ended:
                await self._read_output()
                self._end(state)
                return
            if self._stop.is_set():
                await self._cancel()
                wait = min(self._poll, 1.0)
            if self._node_fault is not None:
                return
            wait = self._poll
            with anyio.move_on_after(wait):
                await self._stop.wait()

    async def _look(self) -> JobState | None:
        try:
            state = await self._commands.job_state(self.job_id)
        except NodeError as exc:
            logger.warning(
                "cannot read the Slurm job's state", slurm_job=self.job_id, error=str(exc)
            )
            self._unknown = 0  # Slurm is away, the job is not lost
            self._give_up_cancel(str(exc))
            return None
        if state is None:
            self._unknown += 1
            if self._unknown >= UNKNOWN_LIMIT:
                self._close(f"Slurm no longer knows job {self.job_id}")
            return None
        self._unknown = 0
        return state

    async def _cancel(self) -> None:
        if self._cancel_sent is None:
            self._cancel_sent = anyio.current_time()
            logger.info("cancelling the Slurm job", slurm_job=self.job_id)
            await self._commands.cancel(self.job_id, self._run.user)
        self._give_up_cancel("Slurm did not confirm the cancel")

    def _give_up_cancel(self, why: str) -> None:
        sent = self._cancel_sent
        if sent is not None and anyio.current_time() - sent > CANCEL_CONFIRM:
            self._close(f"{why} of job {self.job_id} within {CANCEL_CONFIRM:g} s")

    def _close(self, node_fault: str | None = None) -> None:
        """End the run: the node's fault when ``node_fault`` is given (the job goes
        back), else with :attr:`_result` set; the output is closed either way."""
        if self._node_fault is None and self._result is None:
            self._node_fault = node_fault
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._sink.finish()
        self._sink.__exit__(None, None, None)

    async def _read_output(self) -> None:
        if self._fd < 0:
            try:
                self._fd = open_regular(
                    output_path(self._run), os.O_RDONLY, beneath=self._run.cwd.parent
                )
            except OSError:
                return
        await anyio.to_thread.run_sync(self._drain)

    def _drain(self) -> None:
        while True:
            data = os.pread(self._fd, _READ_CHUNK, self._offset)
            if not data:
                return
            self._offset += len(data)
            self._sink.feed(data)

    def _end(self, state: JobState) -> None:
        ending = slurm_ending(state, self._stop.is_set())
        if ending.node_fault is not None:
            self._close(ending.node_fault)
            return
        logger.info(
            "Slurm job ended",
            slurm_job=self.job_id,
            state=state.state,
            exit_code=f"{state.exit_code}:{state.signal}",
        )
        sink = self._sink
        limit = self._run.memory_limit_bytes
        self._result = RunResult(
            kind=ending.kind,
            exit_code=ending.exit_code,
            signal=ending.signal,
            duration=anyio.current_time() - self._started,
            peak_rss_bytes=0,
            cpu_seconds=0.0,
            log_bytes=sink.bytes_seen,
            log_truncated=sink.truncated,
            disk_full=sink.disk_full,
            memory_limit_bytes=limit,
            memory_limit_hit=ending.kind is EndKind.MEMORY,
            error=ending.error,
        )
        self._close()
