"""The commands as a user runs them: `agent check`, `agent run-once` (server and --spec)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agent.outcome import ExitCode
from executors.cgroup import detect_cgroup
from tests.agent_harness import Harness, harness
from tests.cli_process import agent_process as agent_command
from tests.servers import ServerUnderTest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.json") if p.name != "template.json")


def config_file(
    tmp_path: Path, url: str, password: str = "node", username: str = "node", **extra: str
) -> Path:
    path = tmp_path / "agent.toml"
    lines = [
        f'state_dir = "{tmp_path / "state"}"',
        "[server]",
        f'url = "{url}"',
        f'username = "{username}"',
        f'password = "{password}"',
        "[node]",
        'ip = "127.0.0.4"',
        "[poll]",
        "interval = 0.1",
        "[run]",
        "progress_interval = 0.2",
        "cancel_check_interval = 0.2",
        "kill_grace = 1.0",
    ]
    for key, value in extra.items():
        lines.append(f"{key} = {value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def server_config(h: Harness, tmp_path: Path, password: str | None = None) -> Path:
    """A config for the harness's server (either kind), logging in as its node user."""
    node = h.server.node
    return config_file(tmp_path, h.server.url, password or node.password, node.username)


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The commands against the reference server and against the real backend."""
    async with harness(any_server, tmp_path) as value:
        yield value


@pytest.mark.anyio
async def test_check_against_a_running_server(h: Harness, tmp_path: Path) -> None:
    config = server_config(h, tmp_path)
    result = await anyio.to_thread.run_sync(lambda: agent_command("check", "--config", str(config)))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"{h.server.url} answers" in out
    assert f"logged in as {h.server.node.username!r}" in out
    assert "(127.0.0.4, 0) not registered yet: would be created" in out
    assert "cores:" in out and "memory:" in out and "mpi:" in out
    assert "agent check: all well" in out


@pytest.mark.anyio
async def test_check_with_a_wrong_password(h: Harness, tmp_path: Path) -> None:
    config = server_config(h, tmp_path, password="Wr0ng-Pa55word")
    result = await anyio.to_thread.run_sync(lambda: agent_command("check", "--config", str(config)))
    assert result.returncode != 0
    failures = [line for line in result.stderr.splitlines() if "FAIL" in line]
    assert len(failures) == 1
    assert "auth" in failures[0] and "refused" in failures[0]
    assert "Wr0ng-Pa55word" not in result.stdout + result.stderr  # never printed


def test_check_with_no_server(tmp_path: Path) -> None:
    config = config_file(tmp_path, "http://127.0.0.1:9")
    result = agent_command("check", "--config", str(config), env={"AGENT_SERVER__TIMEOUT": "2"})
    assert result.returncode == ExitCode.SERVER_UNAVAILABLE
    assert "unreachable" in result.stderr
    assert "[warn] password: shorter than 8 characters" in result.stdout  # "node"
    guard = detect_cgroup()
    expected = "a cgroup per job" if guard.base is not None else "RSS sampled every 0.5 s"
    assert "[  ok] memory guard: " in result.stdout and expected in result.stdout


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("analysis", "code"),
    [
        ({"command": "echo fine", "hardware": {"coresPerSlot": 1}}, ExitCode.SUCCESS),
        ({"command": "exit 3", "hardware": {"coresPerSlot": 1}}, ExitCode.JOB_FAILED),
        ({"command": "true", "useMpi": True, "hardware": {"coresPerSlot": 1}}, ExitCode.NODE_ERROR),
    ],
)
async def test_run_once_exit_codes(
    h: Harness, tmp_path: Path, analysis: dict[str, object], code: ExitCode
) -> None:
    job = await h.submit(analysis)
    config = server_config(h, tmp_path)
    env = {"AGENT_MPI__MPIEXEC": "/nonexistent/mpiexec"}  # an MPI job here is a node error
    result = await anyio.to_thread.run_sync(
        lambda: agent_command("run-once", "--job", str(job), "--config", str(config), env=env)
    )
    assert result.returncode == code, result.stderr
    assert f"job {job}:" in result.stderr
    if code is ExitCode.NODE_ERROR:  # no mpiexec: released before start
        released = await h.job(job)
        assert released.phase == "CREATED" and released.node is None
        assert await h.calls(job) == ["/acquire", "/release"]
    else:
        assert (await h.job(job)).phase == ("FINISHED" if code is ExitCode.SUCCESS else "ERRORED")


@pytest.mark.anyio
async def test_run_once_with_nothing_to_do(h: Harness, tmp_path: Path) -> None:
    config = server_config(h, tmp_path)
    result = await anyio.to_thread.run_sync(
        lambda: agent_command("run-once", "--config", str(config))
    )
    assert result.returncode == ExitCode.NOTHING_TO_DO
    assert "nothing to do" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only a root agent switches users")
@pytest.mark.anyio
async def test_a_work_dir_the_job_user_cannot_enter(h: Harness, tmp_path: Path) -> None:
    """State in a private directory (``mktemp -d`` is 0700): the job user cannot reach
    its job directories. Nothing queued: nothing to do (3). A job queued: left alone with
    the reason (3), never taken."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    config = server_config(h, tmp_path)
    env = {"AGENT_STATE_DIR": str(closed / "state")}
    idle = await anyio.to_thread.run_sync(
        lambda: agent_command("run-once", "--config", str(config), env=env)
    )
    assert idle.returncode == ExitCode.NOTHING_TO_DO, idle.stderr
    job = await h.submit({"command": "true", "hardware": {"coresPerSlot": 1}})
    asked = await anyio.to_thread.run_sync(
        lambda: agent_command("run-once", "--job", str(job), "--config", str(config), env=env)
    )
    assert asked.returncode == ExitCode.NOTHING_TO_DO, asked.stderr
    assert (
        f"agent: job {job} not run: this agent cannot run jobs: run.work_dir: the job user "
        f"'agent-job' cannot enter {closed} (mode 700)"
    ) in asked.stderr
    assert (await h.job(job)).phase == "CREATED"
    assert await h.calls(job) == []


@pytest.mark.anyio
async def test_run_once_cancelled(h: Harness, tmp_path: Path) -> None:
    job = await h.submit({"command": "sleep 60", "hardware": {"coresPerSlot": 1}})
    config = server_config(h, tmp_path)
    command = [sys.executable, "-m", "agent", "run-once", "--config", str(config)]
    async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as process:
        with anyio.fail_after(30):
            while (await h.job(job)).start_time is None:
                await anyio.sleep(0.05)
        await h.admin.cancel(job)
        with anyio.fail_after(30):
            assert await process.wait() == ExitCode.CANCELLED
    cancelled = await h.job(job)
    assert cancelled.phase == "CANCELLED" and cancelled.node is not None
    assert (await h.admin.get_node(cancelled.node)).current_job is None  # finished: node free


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_runs_with_run_once_spec(example: Path, tmp_path: Path) -> None:
    env = {"AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_NODE__QUEUES": '["D"]'}
    mpich = os.environ.get("AGENT_TEST_MPICH_MPIEXEC")
    data = json.loads(example.read_text(encoding="utf-8"))
    if data.get("analysis", {}).get("useMpi"):
        if not (mpich and Path(mpich).exists()):
            pytest.skip("no mpiexec: set AGENT_TEST_MPICH_MPIEXEC (CI installs the mpich wheel)")
        env["AGENT_MPI__MPIEXEC"] = mpich
    out = tmp_path / "out"
    result = agent_command(
        "run-once", "--spec", str(example), "--out", str(out), env=env, timeout=300
    )
    expected = {"failing.json": ExitCode.JOB_FAILED}.get(example.name, ExitCode.SUCCESS)
    assert result.returncode == expected, result.stderr
    assert (out / "log.txt").exists()
    for output in data.get("outputs", []):
        if expected is ExitCode.SUCCESS:
            assert list(out.glob(f"{output['name']}*")), output


@pytest.mark.anyio
async def test_check_reports_a_configured_mpiexec_that_is_missing(
    h: Harness, tmp_path: Path
) -> None:
    config = server_config(h, tmp_path)
    result = await anyio.to_thread.run_sync(
        lambda: agent_command(
            "check", "--config", str(config), env={"AGENT_MPI__MPIEXEC": "/nonexistent/mpiexec"}
        )
    )
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if "FAIL" in line]
    assert len(failures) == 1
    assert "mpi" in failures[0] and "/nonexistent/mpiexec" in failures[0]
