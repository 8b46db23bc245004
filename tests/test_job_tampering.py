"""A job that replaces the agent's files under it: a real `agent run` must not hang,
crash or leak.

Jobs replace their log file (found by globbing for ``job.log``: the job learns the agent's
directories from its envVars) and their progress file (``$AGENT_PROGRESS_FILE``) with a
FIFO, a symlink to ``/dev/zero``, a symlink to ``/etc/passwd`` and a directory. Every
job must end within ``kill_grace + 10`` seconds of its start, the agent must go on to
run an ordinary job, and SIGTERM must stop it at once. What each case ends as:

- log replaced during the main command: ERRORED, "the job replaced its log file: it is
  a FIFO now; no log uploaded" (or "a symbolic link", "a directory");
- log replaced before the post-process starts: ERRORED, "the job replaced its log file:
  it is a FIFO now";
- progress file replaced: FINISHED, progress is only ever read from a regular file.

The log the job printed after the swap is lost (the agent's descriptor held the file the
job unlinked); no log is uploaded at all for a replaced log, so none can carry
``/etc/passwd`` or ``/dev/zero``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.config import LogOutputConfig
from agent.jobrun import log_output_clash
from agent.spec import OutputSpec
from tests.agent_harness import Harness, harness
from tests.cli_process import server_config
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio

KILL_GRACE = 1.0
#: How long any one job may take from its start to its end.
JOB_BOUND = KILL_GRACE + 10
#: How long SIGTERM may take to stop an idle agent.
STOP_BOUND = 5.0

FIND_LOG = (
    'log=$(find "$TEST_STATE_DIR" "$TEST_WORK_DIR" -path "*/job-$AGENT_JOB_PK-*/job.log" '
    "2>/dev/null | head -n 1); "
    '[ -n "$log" ] || { echo "job.log not found"; exit 9; }; '
)

#: How each case replaces a file at "$target".
REPLACE = {
    "fifo": 'rm -rf "$target" && mkfifo "$target"',
    "dev-zero": 'rm -rf "$target" && ln -s /dev/zero "$target"',
    "passwd": 'rm -rf "$target" && ln -s /etc/passwd "$target"',
    "dir": 'rm -rf "$target" && mkdir "$target"',
}

#: What the log file is afterwards, as the error names it.
WHAT = {
    "fifo": "a FIFO",
    "dev-zero": "a symbolic link",
    "passwd": "a symbolic link",
    "dir": "a directory",
}


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def agent_config(h: Harness, tmp_path: Path, *, root_jobs: bool = True) -> Path:
    """The agent's config for these tests (the one place it is written).

    Jobs must run as the agent's own user, so that they can reach the agent's files at
    all (as a separate job user they could not even see them): ``run.user = "root"``
    with ``run.allow_root_jobs`` makes a root agent's jobs run as root. Without
    ``root_jobs`` they run as the default job account.
    """
    run: dict[str, object] = {"kill_grace": KILL_GRACE}
    if root_jobs:
        run |= {"user": "root", "allow_root_jobs": True}
    return server_config(tmp_path / "agent.toml", h.server, run=run, log={"format": "json"})


@contextmanager
def running_agent(config: Path, stderr_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``agent run`` as a process (its log to a file, which never fills up like a pipe);
    killed if the test leaves it running."""
    with stderr_file.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def stop_agent(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(STOP_BOUND):
        while process.poll() is None:
            await anyio.sleep(0.05)
    return process.returncode


@dataclass
class Case:
    name: str
    analysis: dict[str, Any]
    pk: int = 0


def job_env(h: Harness) -> dict[str, str]:
    """Where the job looks for the agent's files: the state directory and the default
    work directory (the layout may change; the job searches both)."""
    return {"TEST_STATE_DIR": str(h.state_dir), "TEST_WORK_DIR": str(h.state_dir / "jobs")}


async def run_cases(
    h: Harness, tmp_path: Path, cases: list[Case], *, root_jobs: bool = True
) -> Case:
    """Submit the cases and an ordinary job after them, run one agent until all have
    ended (each within :data:`JOB_BOUND` of its start), stop it with SIGTERM; returns the
    ordinary job's case."""
    ordinary = Case("ordinary", {"command": "echo ordinary", "hardware": {"coresPerSlot": 1}})
    everything = [*cases, ordinary]
    for case in everything:
        case.pk = await h.submit(case.analysis)
    stderr_file = tmp_path / "agent.stderr"
    with running_agent(agent_config(h, tmp_path, root_jobs=root_jobs), stderr_file) as process:
        seen_started: dict[int, float] = {}
        with anyio.fail_after(30 + len(everything) * JOB_BOUND):
            while True:
                jobs = {case.name: await h.job(case.pk) for case in everything}
                now = anyio.current_time()
                for case in everything:
                    if jobs[case.name].phase == "STARTED":
                        since = now - seen_started.setdefault(case.pk, now)
                        assert since < JOB_BOUND, (
                            f"job {case.name!r} still running after {since:.0f} s; "
                            f"agent log:\n{stderr_file.read_text()[-4000:]}"
                        )
                assert process.poll() is None, stderr_file.read_text()[-4000:]
                if all(job.end_time is not None for job in jobs.values()):
                    break
                await anyio.sleep(0.1)
        for name, job in jobs.items():
            assert job.start_time is not None and job.end_time is not None
            took = (job.end_time - job.start_time).total_seconds()
            assert took < JOB_BOUND, f"job {name!r} took {took:.1f} s"
        assert await stop_agent(process) == 0
    return ordinary


async def assert_no_leaked_log(h: Harness, pk: int) -> None:
    """No log of the job carries /etc/passwd or bytes of /dev/zero."""
    passwd = Path("/etc/passwd").read_bytes()
    for output in (await h.job(pk)).outputs:
        if output.name.startswith("log"):
            data = await h.output(pk, output.name, output.type)
            assert passwd not in data and b"root:" not in data
            assert b"\0" * 16 not in data


async def test_a_job_replacing_its_log_file(h: Harness, tmp_path: Path) -> None:
    during = [
        Case(
            f"log-{kind}",
            {
                "command": f"echo before; {FIND_LOG}target=$log; {action}; echo after",
                "envVars": job_env(h),
                "hardware": {"coresPerSlot": 1},
            },
        )
        for kind, action in REPLACE.items()
    ]
    before_post = Case(
        "log-fifo-then-post-process",
        {
            "command": f"echo main; {FIND_LOG}target=$log; {REPLACE['fifo']}",
            "postProcessScriptCommand": "echo post",
            "envVars": job_env(h),
            "hardware": {"coresPerSlot": 1},
        },
    )
    ordinary = await run_cases(h, tmp_path, [*during, before_post])

    for case, kind in zip(during, REPLACE, strict=True):
        job = await h.job(case.pk)
        assert job.phase == "ERRORED", case.name
        assert job.error_reason is not None
        assert f"the job replaced its log file: it is {WHAT[kind]} now" in job.error_reason
        assert [o.name for o in job.outputs if o.name.startswith("log")] == []
        await assert_no_leaked_log(h, case.pk)
    job = await h.job(before_post.pk)
    assert job.phase == "ERRORED"
    assert job.error_reason is not None
    assert "the job replaced its log file: it is a FIFO now" in job.error_reason
    await assert_no_leaked_log(h, before_post.pk)

    assert (await h.job(ordinary.pk)).phase == "FINISHED"
    assert await h.output(ordinary.pk, "log", "str") == b"ordinary\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only a root agent switches users")
async def test_as_the_job_account_the_log_is_out_of_reach(h: Harness, tmp_path: Path) -> None:
    """The default: the job runs as the job account, which cannot even find the log
    (``state_dir`` and ``private/`` are closed to it), so the log arrives whole."""
    case = Case(
        "log-out-of-reach",
        {
            "command": f"echo before; {FIND_LOG}target=$log; {REPLACE['fifo']}; echo after",
            "envVars": job_env(h),
            "hardware": {"coresPerSlot": 1},
        },
    )
    ordinary = await run_cases(h, tmp_path, [case], root_jobs=False)
    job = await h.job(case.pk)
    assert (job.phase, job.error_reason) == ("ERRORED", "exit code 9")
    assert await h.output(case.pk, "log", "str") == b"before\njob.log not found\n"
    assert (await h.job(ordinary.pk)).phase == "FINISHED"


async def test_a_job_replacing_its_progress_file(h: Harness, tmp_path: Path) -> None:
    cases = [
        Case(
            f"progress-{kind}",
            {
                # a while for the agent to look at the file several times
                "command": f'target=$AGENT_PROGRESS_FILE; {action}; sleep 1; echo "{kind} done"',
                "hardware": {"coresPerSlot": 1},
            },
        )
        for kind, action in REPLACE.items()
    ]
    ordinary = await run_cases(h, tmp_path, cases)

    for case, kind in zip(cases, REPLACE, strict=True):
        job = await h.job(case.pk)
        assert job.phase == "FINISHED", (case.name, job.error_reason)
        assert await h.output(case.pk, "log", "str") == f"{kind} done\n".encode()
    assert (await h.job(ordinary.pk)).phase == "FINISHED"


def test_an_output_named_like_the_log_is_an_invalid_spec() -> None:
    log = LogOutputConfig()
    clash = log_output_clash((OutputSpec("model", "bin", "m"), OutputSpec("log", "str", "x")), log)
    assert clash is not None and clash.field == "outputs[1].name"
    assert str(clash).startswith("invalid analysis: outputs[1].name 'log' (str) is the name")
    assert (
        log_output_clash((OutputSpec("log", "txt", "x"), OutputSpec("out", "str", "y")), log)
        is None
    )
    custom = LogOutputConfig(name="joblog", type="txt")
    assert log_output_clash((OutputSpec("log", "str", "x"),), custom) is None
    assert log_output_clash((OutputSpec("joblog", "txt", "x"),), custom) is not None
