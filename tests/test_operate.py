"""Operating a running agent: its health endpoint, metrics, ``agent status``, the
systemd notify protocol, and logs an operator can read through a server outage.

Every scenario starts a real ``agent run`` process (or, where a loop must be stalled on
purpose, a real agent in this process whose server transport hangs) and asks it over
real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.commands.supervise import supervise
from agent.logs import configure_logging
from agent.server import RetryPolicies, RetryPolicy
from tests.agent_harness import TEMPLATE_PARAMETERS, Harness, harness, submit_while_busy
from tests.agent_processes import running, start_agent, watched_config
from tests.cli_process import agent_process, server_config, write_config
from tests.servers import ServerUnderTest, free_port
from tests.test_packaging import run_healthcheck

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url)


async def wait_for_status(base: str, status: int, path: str, seconds: float = 30) -> httpx.Response:
    with anyio.fail_after(seconds):
        while True:
            try:
                reply = await get(base + path)
                if reply.status_code == status:
                    return reply
            except httpx.TransportError:
                pass
            await anyio.sleep(0.1)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics reply, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def log_lines(path: Path, start: int = 0) -> list[dict[str, object]]:
    lines = path.read_text(encoding="utf-8").splitlines()[start:]
    return [json.loads(line) for line in lines if line.startswith("{")]


# ------------------------------------------------------------ endpoints and metrics


async def test_endpoints_of_a_running_agent_and_its_metrics_move(
    h: Harness, tmp_path: Path
) -> None:
    config, base = watched_config(tmp_path, h.server)
    port = int(base.rsplit(":", 1)[1])
    # The template exists before the agent polls (the real backend's SQLite would be
    # locked by the import while an agent polls every 0.1 s).
    h.template = (await h.admin.import_template("test", "agent.analysis", TEMPLATE_PARAMETERS)).pk
    with running(start_agent(config, tmp_path / "agent.log")):
        assert (await wait_for_status(base, 200, "/readyz")).text == "ready\n"
        assert (await get(base + "/healthz")).text == "ok\n"
        docker_check = run_healthcheck(port)  # the image's HEALTHCHECK, as written
        assert docker_check.returncode == 0, docker_check.stderr
        before = samples((await get(base + "/metrics")).text)
        assert value(before, "agent_slots") == 1
        assert value(before, "agent_jobs_started_total") == 0
        assert value(before, "agent_server_up") == 1

        job = await submit_while_busy(
            h, {"command": 'echo half; echo 0.37 > "$AGENT_PROGRESS_FILE"; sleep 3; echo done'}
        )
        with anyio.fail_after(30):
            while True:
                status = (await get(base + "/status")).json()
                slot = status["slots"][0]
                if slot["job"] == job and slot["progress"] == pytest.approx(0.37):
                    break
                await anyio.sleep(0.1)
        assert status["state"] == "running" and status["ready"] is True
        assert status["server"] == h.server.url
        assert slot["phase"] == "running" and isinstance(slot["pid"], int)
        assert slot["since"].endswith("Z") and slot["elapsed"] >= 0

        table = agent_process("status", "--config", str(config))
        assert table.returncode == 0, table.stderr
        head, columns, row = table.stdout.splitlines()
        assert "running" in head and "ready" in head
        assert columns.split() == ["SLOT", "NODE", "JOB", "PHASE", "PROGRESS", "ELAPSED", "PID"]
        assert row.split()[2:5] == [str(job), "running", "37%"]
        as_json = agent_process("status", "--json", "--config", str(config))
        assert json.loads(as_json.stdout)["slots"][0]["job"] == job

        with anyio.fail_after(30):
            while (await h.job(job)).end_time is None:
                await anyio.sleep(0.1)
        with anyio.fail_after(10):  # the slot is free once the run has reported
            while (await get(base + "/status")).json()["slots"][0]["job"] is not None:
                await anyio.sleep(0.1)
        after = samples((await get(base + "/metrics")).text)

    assert value(after, "agent_jobs_started_total") == 1
    assert value(after, "agent_jobs_ended_total", reason="succeeded") == 1
    assert value(after, "agent_job_duration_seconds_count", reason="succeeded") == 1
    assert value(after, "agent_job_duration_seconds_sum", reason="succeeded") >= 3
    assert value(after, "agent_progress_posts_total") >= 1
    assert value(after, "agent_uploaded_bytes_total") >= len("half\ndone\n")
    assert value(after, "agent_job_log_bytes_total") >= len("half\ndone\n")
    assert value(after, "agent_slots_busy") == 0
    assert 0 <= value(after, "agent_seconds_since_last_good_poll") < 5
    acquired = value(
        after, "agent_server_requests_total", call="GET /v1/jobs/{pk}/acquire", status="200"
    )
    assert acquired == 1
    assert (
        value(after, "agent_server_request_duration_seconds_count", call="POST /v1/jobs/{pk}/start")
        == 1
    )


async def test_agent_status_without_an_agent_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "agent.toml",
        "http://127.0.0.1:9",
        "node",
        "node",
        health={"listen": f"127.0.0.1:{free_port()}"},
    )
    result = agent_process("status", "--config", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("agent status: no agent answers at http://127.0.0.1:")


async def test_a_health_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "agent.toml",
            "http://127.0.0.1:9",
            "node",
            "node",
            health={"listen": f"127.0.0.1:{port}"},
        )
        result = agent_process("run", "--config", str(config), timeout=30)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert lines == [
        f"agent: health.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
        " (another agent with this config?)"
    ]


# ------------------------------------------------------------ a server outage


@contextmanager
def devserver_on(port: int, db: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.devserver", "--port", str(port), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_a_server_outage_is_not_ready_never_unhealthy_and_two_log_lines(
    tmp_path: Path,
) -> None:
    server_port, health_port = free_port(), free_port()
    base = f"http://127.0.0.1:{health_port}"
    db = tmp_path / "server.sqlite"
    log = tmp_path / "agent.log"
    config = write_config(
        tmp_path / "agent.toml",
        f"http://127.0.0.1:{server_port}",
        "node",
        "node",
        health={"listen": f"127.0.0.1:{health_port}"},
        poll={"interval": 0.1, "max_backoff": 2.0},
        log={"format": "json"},
    )
    with devserver_on(server_port, db) as server, running(start_agent(config, log)):
        await wait_for_status(base, 200, "/readyz")
        start = len(log.read_text(encoding="utf-8").splitlines())
        server.terminate()
        server.wait(timeout=10)
        outage_ends = anyio.current_time() + 20
        not_ready = await wait_for_status(base, 503, "/readyz")
        assert not_ready.text.startswith("not ready: the job server does not answer")
        while anyio.current_time() < outage_ends:
            assert (await get(base + "/healthz")).status_code == 200
            status = (await get(base + "/status")).json()
            assert status["ready"] is False and status["stalled_loops"] == []
            await anyio.sleep(1)
        metrics = samples((await get(base + "/metrics")).text)
        assert value(metrics, "agent_server_up") == 0
        assert value(metrics, "agent_seconds_since_last_good_poll") >= 19
        assert sum(v for (name, _), v in metrics.items() if name == "agent_server_retries_total")
        with devserver_on(server_port, db):
            await wait_for_status(base, 200, "/readyz")
            await anyio.sleep(1)
            during = log_lines(log, start)
    events = [line["event"] for line in during]
    assert len(during) <= 3, events
    assert events == [
        "server unreachable; retrying quietly until it answers",
        "server reachable again",
    ]
    assert "callable" not in log.read_text(encoding="utf-8")
    assert during[1]["down_for"] >= 20


# ------------------------------------------------------------ systemd notify


@contextmanager
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="notify-", dir="/tmp")  # unix socket paths are short
    path = f"{folder}/notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        try:
            yield sock, path
        finally:
            os.unlink(path)
            os.rmdir(folder)


async def receive(sock: socket.socket, seconds: float) -> list[str]:
    """Every message that arrives within ``seconds``."""
    messages: list[str] = []
    with anyio.move_on_after(seconds):
        while True:
            await anyio.wait_readable(sock)
            messages.append(sock.recv(4096).decode())
    return messages


async def test_systemd_hears_ready_status_watchdog_and_stopping(h: Harness, tmp_path: Path) -> None:
    config = server_config(tmp_path / "agent.toml", h.server, log={"format": "json"})
    with notify_socket() as (sock, path):
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
        with running(start_agent(config, tmp_path / "agent.log", env)) as process:
            first = await receive(sock, 4)
            fields = [field for message in first for field in message.split("\n")]
            assert fields[0] == f"STATUS=logging in to {h.server.url}"
            assert "READY=1" in fields
            assert "STATUS=idle, 1 slot" in fields
            assert fields.count("WATCHDOG=1") >= 4  # every half second while healthy
            job = await submit_while_busy(h, {"command": "sleep 2"})
            busy = await receive(sock, 1.5)
            assert f"STATUS=running job {job} (0%)" in "\n".join(busy).split("\n")
            process.send_signal(signal.SIGTERM)
            stopping = await receive(sock, 1)
            assert any("STOPPING=1" in message for message in stopping)
            assert process.wait(timeout=30) == 0


class StallingTransport(httpx.AsyncBaseTransport):
    """The real network, except that once ``stalled`` is set the job list never returns:
    the agent's poll loop hangs in a call (a library that ignores its timeout)."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.stalled = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.stalled and request.url.path == "/v1/jobs/list":
            await anyio.sleep_forever()
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_no_watchdog_while_the_poll_loop_is_stalled(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = RetryPolicy(attempts=2, timeout=1.0, wait_initial=0.05, wait_max=0.1)
    transport = StallingTransport()
    with notify_socket() as (sock, path):
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        settings = h.settings(
            server={"timeout": 1.0}, poll={"max_backoff": 0.5}, health={"listen": ""}
        )
        async with (
            h.agent(
                settings, policies=RetryPolicies(short, short, short), transport=transport
            ) as agent,
            anyio.create_task_group() as group,
        ):
            group.start_soon(agent.run)
            await group.start(supervise, agent)
            healthy = await receive(sock, 2)
            assert sum("WATCHDOG=1" in message for message in healthy) >= 3
            transport.stalled = True
            with anyio.fail_after(15):
                while not agent.loops.stalled():
                    await anyio.sleep(0.1)
            assert agent.loops.stalled() == ["poll"]
            await receive(sock, 0.05)  # what was queued before: the agent stays quiet now
            stalled = await receive(sock, 2)
            assert not any("WATCHDOG=1" in message for message in stalled)
            transport.stalled = False  # the hung call stays hung: the agent needs a restart
            group.cancel_scope.cancel()


# ------------------------------------------------------------ expected outcomes at info


async def test_an_admin_abort_is_logged_at_info_not_error(h: Harness, tmp_path: Path) -> None:
    buffer = tmp_path / "log.jsonl"
    with buffer.open("w", encoding="utf-8") as stream:
        configure_logging("json", "info", stream=stream)
        try:
            job = await h.submit({"command": "echo started; sleep 30"})
            async with (
                h.agent(exit_when_idle=True, max_jobs=1) as agent,
                anyio.create_task_group() as group,
            ):
                group.start_soon(agent.run)
                with anyio.fail_after(30):
                    while (await h.job(job)).start_time is None:
                        await anyio.sleep(0.05)
                await anyio.sleep(0.3)
                await h.admin.abort(job)
            [report] = agent.reports
        finally:
            configure_logging("console", "warning")
    lines = [json.loads(line) for line in buffer.read_text(encoding="utf-8").splitlines()]
    assert report.outcome.reason.value == "cancelled"
    about_it = [line for line in lines if line.get("job") == job]
    assert any(line["event"] == "job ended" for line in about_it)
    loud = [line for line in about_it if line["level"] in ("warning", "error")]
    assert loud == [], loud
