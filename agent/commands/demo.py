"""``agent demo``: the reference server, sample jobs and the agent, then a summary.

Starts :class:`~agent.devserver.DevServer` in-process on a free 127.0.0.1 port, imports
the sample template, submits the samples of ``examples/`` (a shell job with progress
and two outputs, a failing job, an MPI job when an ``mpiexec`` is found, and a long
job that is cancelled once it runs), runs the agent until it is idle, downloads the
outputs and prints a table. Exit 0 when every job ended the way it was meant to.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import agent
from agent.commands.common import agent_context, settings_or_exit, setup
from agent.config import Settings
from agent.daemon import Agent
from agent.devserver import DevServer
from agent.jobrun import JobReport
from agent.jobuser import JobUserError, resolve_job_user
from agent.outcome import EndReason
from agent.server import ServerClient
from agent.statedir import PASS_THROUGH, StateDirError, prepare, work_dir_problem
from agent.submission import job_values as submission_values
from agent.submission import spec_parts
from executors import NodeError, find_mpiexec
from executors.identity import JobUser, current_user, search_blocked


@dataclass(frozen=True)
class Sample:
    file: str
    description: str
    expected: EndReason
    cancel_when_running: bool = False


SAMPLES = (
    Sample("shell-progress.json", "shell job, progress, two outputs", EndReason.SUCCEEDED),
    Sample("failing.json", "exits with code 3", EndReason.FAILED),
    Sample("mpi-hello.json", "MPI, 2 ranks", EndReason.SUCCEEDED),
    Sample(
        "long-running.json",
        "cancelled while running",
        EndReason.CANCELLED,
        cancel_when_running=True,
    ),
)


def examples_dir() -> Path:
    """``examples/`` of a checkout, or the copy packed into the wheel."""
    package = Path(agent.__file__).parent
    for candidate in (package / "_examples", package.parent / "examples"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the examples directory is missing from this installation")


def load_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((examples_dir() / name).read_text(encoding="utf-8"))
    return data


def job_values(example: dict[str, Any]) -> dict[str, Any]:
    """Template parameter values for a sample: analysis, outputs and its variables
    (the same values ``agent submit`` sends)."""
    parts = spec_parts(example)
    return submission_values(parts.analysis, parts.outputs, parts.parameters)


def has_mpiexec(settings: Settings) -> bool:
    return _mpiexec_path(settings) is not None


def demo_job_user(settings: Settings) -> JobUser:
    """Who the sample jobs run as: ``run.user`` as ``agent run`` would use it. On a host
    without that account (or where it cannot reach the demo's files or mpiexec) the
    demo's own samples run as this user instead, and one line says why."""
    try:
        user = resolve_job_user(settings.run)
        if not user.is_current():
            settings.state_dir.parent.chmod(PASS_THROUGH)
        prepare(settings.state_dir, settings.work_dir, user)
        _check_reachable(settings, user)
    except (JobUserError, StateDirError) as exc:
        print(f"demo: {exc}; the samples run as this user instead", file=sys.stderr)
        user = current_user()
        prepare(settings.state_dir, settings.work_dir, user)
    return user


def _check_reachable(settings: Settings, user: JobUser) -> None:
    problem = work_dir_problem(settings.work_dir, user)
    if problem is not None:
        raise StateDirError(problem)
    mpiexec = _mpiexec_path(settings)
    blocked = search_blocked(mpiexec.parent, user) if mpiexec else None
    if blocked is not None:
        raise StateDirError(f"the job user {user.name!r} cannot enter {blocked} (mpiexec)")


def _mpiexec_path(settings: Settings) -> Path | None:
    try:
        return Path(find_mpiexec(settings.mpi.mpiexec))
    except NodeError:
        return None


async def _cancel_when_running(admin: ServerClient, job: int) -> None:
    while True:
        current = await admin.get_job(job)
        if current.start_time is not None or current.end_time is not None:
            break
        await anyio.sleep(0.2)
    await anyio.sleep(1.0)  # let it print some progress first
    await admin.cancel(job)


async def _demo(
    settings: Settings, job_user: JobUser, server: DevServer, out_dir: Path
) -> tuple[list[tuple[Sample, int]], list[JobReport], dict[int, list[str]]]:
    redactor = setup(settings)
    async with ServerClient(server.url, "admin", "admin") as admin:
        template_body = load_example("template.json")
        specific = template_body["specific"]
        template = await admin.import_template(
            template_body["name"], specific["executor_class"], specific["parameters"]
        )
        submitted: list[tuple[Sample, int]] = []
        for sample in SAMPLES:
            if sample.file == "mpi-hello.json" and not has_mpiexec(settings):
                print("demo: no mpiexec found; skipping the MPI sample", file=sys.stderr)
                continue
            job = await admin.create_job(
                template.pk, job_values(load_example(sample.file)), description=sample.description
            )
            submitted.append((sample, job.pk))
        async with ServerClient(
            server.url, settings.server.username, settings.password, redactor=redactor
        ) as client:
            context = agent_context(settings, client, redactor, job_user)
            node_agent = Agent(context, exit_when_idle=True)
            async with anyio.create_task_group() as group:
                for sample, pk in submitted:
                    if sample.cancel_when_running:
                        group.start_soon(_cancel_when_running, admin, pk)
                reports = await node_agent.run()
        downloaded: dict[int, list[str]] = {}
        for _, pk in submitted:
            job = await admin.get_job(pk)
            for output in job.outputs:
                target = out_dir / f"job-{pk}"
                target.mkdir(parents=True, exist_ok=True)
                dest = target / f"{output.name}.{output.type}"
                await admin.download_output(pk, output.name, output.type, dest)
                downloaded.setdefault(pk, []).append(output.name)
    return submitted, reports, downloaded


def _table(
    submitted: list[tuple[Sample, int]], reports: list[JobReport], downloaded: dict[int, list[str]]
) -> tuple[list[str], bool]:
    by_job = {report.job: report for report in reports}
    rows = [("job", "sample", "result", "exit", "seconds", "outputs")]
    all_as_expected = True
    for sample, pk in submitted:
        report = by_job.get(pk)
        reason = report.outcome.reason if report else None
        summary = report.summary if report else {}
        as_expected = reason is sample.expected
        all_as_expected &= as_expected
        result = reason.value if reason else "not run"
        if not as_expected:
            result += f" (expected {sample.expected.value})"
        rows.append(
            (
                str(pk),
                sample.description,
                result,
                "" if summary.get("exit_code") is None else str(summary["exit_code"]),
                "" if summary.get("seconds") is None else f"{summary['seconds']:.1f}",
                ", ".join(downloaded.get(pk, [])) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines, all_as_expected


def run_demo(config: str | None) -> int:
    root = Path(tempfile.mkdtemp(prefix="agent-demo-"))
    with DevServer(port=0, db_path=root / "devserver.sqlite3") as server:
        settings = settings_or_exit(
            config,
            overrides={
                "server": {"url": server.url, "username": "node", "password": "node"},
                "node": {"ip": "127.0.0.1", "slots": 2},
                "poll": {"interval": 0.2},
                "run": {
                    "progress_interval": 0.5,
                    "cancel_check_interval": 0.5,
                    "kill_grace": 2.0,
                    "keep_job_dirs": True,
                },
                "log": {"level": "warning"},
                "state_dir": str(root / "state"),
                "health": {"listen": ""},
            },
        )
        print(f"demo: reference server on {server.url}; files in {root}", file=sys.stderr)
        job_user = demo_job_user(settings)
        print(f"demo: jobs run as {job_user.name} (uid {job_user.uid})", file=sys.stderr)
        submitted, reports, downloaded = anyio.run(
            _demo, settings, job_user, server, root / "outputs"
        )
    lines, ok = _table(submitted, reports, downloaded)
    print("\n".join(lines))
    print(
        f"\noutputs downloaded to {root / 'outputs'}; job directories in "
        f"{settings.work_dir}; server database {root / 'devserver.sqlite3'}"
    )
    print("demo: all jobs ended as expected" if ok else "demo: some jobs did not end as expected")
    return 0 if ok else 1
