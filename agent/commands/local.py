"""``agent run-once --spec FILE [--out DIR]``: run a job definition here, no server.

FILE is a bare analysis in any dialect, or ``{"analysis", "outputs", "parameters"}`` as
a template would give them. Inputs with absolute http(s) URLs are downloaded; other
``downloadUrl`` values are paths relative to FILE's directory (there is no server to
ask). Declared outputs and the log are copied to DIR. The job directory is kept: under
``run.work_dir`` when configured, else in a new temporary directory. The exit code is
run-once's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path

import anyio
import httpx

from agent.commands.common import settings_or_exit, setup
from agent.commands.console import ProgressConsole
from agent.config import Settings
from agent.execution import Execution, StepOutcome, make_executor, output_problems
from agent.host import usable_cores
from agent.jobuser import JobUserError, resolve_job_user
from agent.outcome import EndReason, ExitCode, exit_code
from agent.outputs import CollectedOutput
from agent.redact import Redactor
from agent.server.errors import TooLarge, error_for
from agent.spec import RunSpec, SpecError, load_spec_document
from agent.staging import Fetch, InputBudget, JobFault, stage
from agent.statedir import StateDirError, prepare_spec_dir
from agent.workspace import Workspace
from executors.base import NodeError
from executors.identity import JobUser
from executors.safefiles import open_regular


def local_fetcher(base_dir: Path, timeout: float) -> Fetch:
    async def fetch(url: str, dest: Path, limit: int | None) -> int:
        if url.startswith(("http://", "https://")):
            async with (
                httpx.AsyncClient(timeout=timeout) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for(response, "GET", url)
                written = 0
                async with await anyio.open_file(dest, "wb") as handle:
                    async for chunk in response.aiter_bytes():
                        written += len(chunk)
                        if limit is not None and written > limit:
                            raise TooLarge(url, written, limit)
                        await handle.write(chunk)
                return written
        source = (base_dir / url.removeprefix("file://")).resolve()
        if not source.is_file():
            raise JobFault(f"input {url!r}: no such file {source}")
        size = source.stat().st_size
        if limit is not None and size > limit:
            raise TooLarge(url, size, limit)
        await anyio.to_thread.run_sync(shutil.copyfile, source, dest)
        return size

    return fetch


def spec_work_dir(settings: Settings) -> Path:
    """Where a spec run's job directory goes: ``run.work_dir`` when configured, else a
    new private temporary directory (a debugging run leaves nothing in the daemon's
    state directory, and needs no write access to it)."""
    if settings.run.work_dir is not None:
        return settings.run.work_dir
    return Path(tempfile.mkdtemp(prefix="agent-spec-"))


async def _stop_on_signal(execution: Execution, _handle: object) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            await execution.stop(EndReason.AGENT_STOP, "node: run-once stopped by a signal")
            return


async def run_local(
    settings: Settings,
    job_user: JobUser,
    redactor: Redactor,
    spec: RunSpec,
    spec_dir: Path,
    out_dir: Path | None,
    console: ProgressConsole,
) -> tuple[StepOutcome, Path]:
    cores = usable_cores(settings.node)
    if spec.cores > len(cores):
        raise NodeError(f"the job needs {spec.cores} cores, this host offers {len(cores)}")
    marker = uuid.uuid4().hex
    base = spec_work_dir(settings)
    try:
        private = prepare_spec_dir(base, job_user, ours=settings.run.work_dir is None)
    except StateDirError as exc:
        raise NodeError(str(exc)) from None
    workspace = Workspace.create(base, private, f"local-{marker[:8]}", job_user)
    execution = Execution(
        spec,
        workspace,
        settings,
        redactor.for_job(spec.env),
        tuple(cores[: spec.cores]),
        marker,
        extra_env={"AGENT_JOB_PK": "0"},
    )
    executor = make_executor(settings, spec)
    fetch = local_fetcher(spec_dir, settings.server.timeout)
    try:
        await stage(spec, workspace, fetch, InputBudget(settings.run.max_input_bytes))
    except JobFault as exc:
        return StepOutcome(EndReason.INPUT_FAULT, str(exc)), workspace.root
    await anyio.to_thread.run_sync(workspace.hand_over)
    console.started(0, execution)
    step = await execution.run_all(executor, [_stop_on_signal])
    collected = await execution.outputs()
    problem = output_problems(collected)
    if problem is not None and step.reason is EndReason.SUCCEEDED:
        step = StepOutcome(problem[0], problem[1], step.result)
    if out_dir is not None:
        log_name = f"{settings.run.log_output.name}.txt"
        skipped = await anyio.to_thread.run_sync(
            copy_results, collected, workspace.log_path, out_dir, log_name
        )
        for line in skipped:
            print(f"agent: {line}", file=sys.stderr)
    return step, workspace.root


def copy_results(
    collected: list[CollectedOutput], log_path: Path, out_dir: Path, log_name: str
) -> list[str]:
    """Declared outputs as ``<name><suffix>`` and the log as ``log_name`` into ``out_dir``.

    Each is read from a descriptor checked to be a regular file inside its directory
    (the job may have swapped a file for a FIFO or a symlink since it was collected);
    returns a line for each that was not copied."""
    out_dir.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    copies: list[tuple[Path, Path | None, Path]] = [(log_path, log_path.parent, out_dir / log_name)]
    for item in collected:
        if item.file is not None:
            suffix = ".tar.gz" if item.file.name.endswith(".tar.gz") else item.file.suffix
            copies.append((item.file, item.within, out_dir / f"{item.spec.name}{suffix}"))
    for source, within, target in copies:
        try:
            fd = open_regular(source, beneath=within)
        except OSError as exc:
            skipped.append(f"{target.name} not copied: {exc}")
            continue
        with os.fdopen(fd, "rb") as reader, target.open("wb") as writer:
            shutil.copyfileobj(reader, writer)
    return skipped


def run_spec_file(config: str | None, spec_file: Path, out_dir: Path | None) -> int:
    settings = settings_or_exit(config)
    try:
        job_user = resolve_job_user(settings.run)
    except JobUserError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.USAGE
    redactor = setup(settings)
    try:
        document = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"agent: cannot read {spec_file}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        spec = load_spec_document(document, queues=settings.node.queues)
    except SpecError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return ExitCode.JOB_FAILED
    console = ProgressConsole.for_stream(sys.stderr)
    try:
        step, root = anyio.run(
            run_local,
            settings,
            job_user,
            redactor,
            spec,
            spec_file.resolve().parent,
            out_dir,
            console,
        )
    except NodeError as exc:
        print(f"agent: node error: {exc}", file=sys.stderr)
        return ExitCode.NODE_ERROR
    finally:
        console.close()
    result = step.result
    print(
        f"{spec_file.name}: {step.reason.value}"
        + (f": {step.error}" if step.error else "")
        + (f" ({result.duration:.1f} s)" if result else ""),
        file=sys.stderr,
    )
    print(
        f"job directory: {root}" + (f"; outputs in {out_dir}" if out_dir else ""), file=sys.stderr
    )
    return exit_code(step.reason)
