"""Start-up and one-shot failures as a user meets them: a real `agent` process against
both job servers (the reference server and the real UFDL backend), each failure one line
on stderr and its documented exit code, never a traceback, and quick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.commands.failures import explain, leaves
from agent.daemon import JobNotFound, RegistrationRefused
from agent.outcome import ExitCode
from agent.server import (
    AuthError,
    BadRequest,
    Forbidden,
    ServerClient,
    ServerFault,
    ServerUnreachable,
)
from tests.cli_process import agent_process, server_config, user_lines, write_config
from tests.servers import ServerUnderTest, free_port

COMMANDS = [["run"], ["run-once"], ["check"]]
ANALYSIS = {"command": "echo hello", "hardware": {"coresPerSlot": 1}}


def assert_one_line(stderr: str, *fragments: str) -> str:
    lines = user_lines(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


async def run_agent(*args: str, timeout: float = 60) -> Any:
    return await anyio.to_thread.run_sync(lambda: agent_process(*args, timeout=timeout))


async def submit(server: ServerUnderTest, executor_class: str = "agent.analysis") -> int:
    async with ServerClient(server.url, server.admin.username, server.admin.password) as admin:
        parameters = {"analysis": {"types": ["JSON"], "default": ANALYSIS, "help": "run"}}
        template = await admin.import_template("startup", executor_class, parameters)
        return (await admin.create_job(template.pk, {})).pk


@pytest.mark.anyio
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_wrong_password(
    any_server: ServerUnderTest, tmp_path: Path, command: list[str]
) -> None:
    config = write_config(tmp_path / "a.toml", any_server.url, "node", "Wr0ng-Pa55word")
    result = await run_agent(*command, "--config", str(config), timeout=30)
    assert result.returncode == ExitCode.REFUSED, result.stderr
    if command != ["check"]:
        assert_one_line(result.stderr, "login as 'node' refused", any_server.url)
    assert "Wr0ng-Pa55word" not in result.stdout + result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
async def test_dead_server_after_the_startup_budget(tmp_path: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path / "a.toml", url, "node", "node", server={"startup_timeout": 1.0})
    result = await run_agent(*command, "--config", str(config), timeout=20)
    assert result.returncode == ExitCode.SERVER_UNAVAILABLE, result.stderr
    if command != ["check"]:
        assert_one_line(result.stderr, "cannot reach the server", url)
    else:
        assert "unreachable" in result.stderr


@pytest.mark.anyio
async def test_run_once_for_a_job_that_does_not_exist(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    config = server_config(tmp_path / "a.toml", any_server)
    result = await run_agent("run-once", "--job", "999999", "--config", str(config), timeout=30)
    assert result.returncode == ExitCode.NO_SUCH_JOB, result.stderr
    assert_one_line(result.stderr, "job 999999 does not exist")


@pytest.mark.anyio
async def test_run_once_for_a_job_that_is_not_ours(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    job = await submit(any_server, executor_class="someone.else")
    config = server_config(tmp_path / "a.toml", any_server)
    result = await run_agent("run-once", "--job", str(job), "--config", str(config), timeout=30)
    assert result.returncode == ExitCode.NOTHING_TO_DO, result.stderr
    assert_one_line(result.stderr, f"job {job} not run", "'someone.else' is not ours")


@pytest.mark.anyio
async def test_run_once_for_a_job_another_node_runs(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    job = await submit(any_server)
    node_user = any_server.node
    async with ServerClient(any_server.url, node_user.username, node_user.password) as other:
        node = await other.create_node("127.0.0.77", 0, cpu_mem=1 << 30)
        await other.acquire(job, node.pk)
        await other.start(job, node.pk)
        config = server_config(tmp_path / "a.toml", any_server)
        result = await run_agent("run-once", "--job", str(job), "--config", str(config))
        assert result.returncode == ExitCode.NOTHING_TO_DO, result.stderr
        assert_one_line(result.stderr, f"it is STARTED on node {node.pk}")
        await other.finish(job, node.pk, True)


@pytest.mark.anyio
@pytest.mark.parametrize("command", [["run"], ["run-once"]], ids=lambda c: c[0])
async def test_registration_refused_names_the_field(
    any_server: ServerUnderTest, tmp_path: Path, command: list[str]
) -> None:
    too_long = "1" * 40  # the server's node ip column holds 39 characters
    config = server_config(tmp_path / "a.toml", any_server, node={"ip": too_long})
    result = await run_agent(*command, "--config", str(config), timeout=30)
    assert result.returncode == ExitCode.REFUSED, result.stderr
    assert_one_line(result.stderr, "registration", "refused (400)", "ip: ")


@pytest.mark.anyio
async def test_run_and_run_once_register_and_run_jobs(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    """From a fresh server, no node created by hand: both commands register and run."""
    first, second = await submit(any_server), await submit(any_server)
    config = server_config(tmp_path / "a.toml", any_server)
    once = await run_agent("run-once", "--job", str(first), "--config", str(config))
    assert once.returncode == ExitCode.SUCCESS, once.stderr
    daemon = await run_agent("run", "--exit-when-idle", "--config", str(config))
    assert daemon.returncode == ExitCode.SUCCESS, daemon.stderr
    async with ServerClient(
        any_server.url, any_server.admin.username, any_server.admin.password
    ) as admin:
        for pk in (first, second):
            job = await admin.get_job(pk)
            assert job.phase == "FINISHED", (pk, job)
        nodes = await admin.list_nodes({})
    assert [(n.ip, n.index, n.cpu_mem) for n in nodes if n.ip == "127.0.0.4"] == [
        ("127.0.0.4", 0, nodes[0].cpu_mem)
    ]
    registered = next(n for n in nodes if n.ip == "127.0.0.4")
    assert registered.cpu_mem is not None and registered.cpu_mem >= 1 << 20  # bytes, not MiB
    assert (registered.gpu_mem, registered.driver_version, registered.hardware_generation) == (
        None,
        None,
        None,
    )


def _refused_registration() -> RegistrationRefused:
    error = BadRequest(400, "...", "POST", "/v1/nodes/create", body={"ip": ["Too long."]})
    return RegistrationRefused("1" * 40, 0, error)


@pytest.mark.parametrize(
    ("error", "code", "fragment"),
    [
        (AuthError(401, "login as 'node' refused: no", "POST", "/x"), ExitCode.REFUSED, "refused"),
        (_refused_registration(), ExitCode.REFUSED, "refused (400): ip: Too long."),
        (JobNotFound(7), ExitCode.NO_SUCH_JOB, "job 7 does not exist"),
        (
            ServerUnreachable("GET", "/v1/x", ConnectionRefusedError("refused")),
            ExitCode.SERVER_UNAVAILABLE,
            "ConnectionRefusedError: refused",
        ),
        (ServerFault(502, "bad gateway", "GET", "/x"), ExitCode.SERVER_UNAVAILABLE, "502"),
        (Forbidden(403, "no", "POST", "/v1/nodes/list"), ExitCode.REFUSED, "403"),
    ],
)
def test_expected_failures_are_found_inside_task_groups(
    error: Exception, code: ExitCode, fragment: str
) -> None:
    if isinstance(error, ServerUnreachable):
        error.__cause__ = ConnectionRefusedError("refused")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [error])])
    for raised in (error, nested):
        failure = explain(raised, "http://server")
        assert failure is not None
        assert failure.code == code
        assert fragment in failure.line and "\n" not in failure.line


def test_a_bug_is_not_mistaken_for_an_expected_failure() -> None:
    assert explain(ExceptionGroup("g", [KeyError("x")]), "http://server") is None
    first, second = KeyError("x"), ValueError("v")
    assert leaves(ExceptionGroup("g", [first, ExceptionGroup("h", [second])])) == [first, second]
