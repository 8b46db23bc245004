"""The fleet as an operator handles it: lost nodes and reaping their jobs, draining and
resuming a running agent, and SIGHUP. Real ``agent`` processes on both job servers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from agent.commands.nodes import node_state, parse_duration, reapable
from agent.config import load_config, reload_settings
from agent.server import Job, Node
from tests.agent_harness import Harness, harness, job_writable, submit_while_busy
from tests.agent_processes import running, start_agent, watched_config
from tests.cli_process import agent_process, server_config
from tests.servers import ServerUnderTest
from tests.test_operate import get, wait_for_status

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def admin_section(h: Harness, tmp_path: Path) -> dict[str, object]:
    secret = tmp_path / "admin-password"
    secret.write_text(h.server.admin.password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return {"username": h.server.admin.username, "password_file": str(secret)}


async def wait_phase(h: Harness, job: int, phase: str, seconds: float = 30) -> Job:
    with anyio.fail_after(seconds):
        while (record := await h.job(job)).phase != phase:
            await anyio.sleep(0.1)
    return record


def kill_pid_in(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(path.read_text().split()[0]), signal.SIGKILL)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ------------------------------------------------------------ lost nodes and reaping


async def test_a_killed_agents_job_is_reaped_and_another_agent_finishes_it(
    h: Harness, tmp_path: Path
) -> None:
    shared = job_writable(tmp_path)
    pid_file = shared / "pid"
    # The first run hangs (its host is about to die); a later run finishes at once.
    command = (
        f"if [ -e {shared}/first ]; then echo second run; exit 0; fi; "
        f"touch {shared}/first; echo $$ > {pid_file}; exec sleep 1000"
    )
    job = await h.submit({"command": command})
    admin = admin_section(h, tmp_path)
    doomed = server_config(
        tmp_path / "doomed.toml", h.server, node={"ip": "127.0.0.5"}, admin=admin
    )
    process = start_agent(doomed, tmp_path / "doomed.log")
    try:
        started = await wait_phase(h, job, "STARTED")
        with anyio.fail_after(30):
            while not pid_file.exists() or not pid_file.read_text().strip():
                await anyio.sleep(0.05)
        process.kill()  # kill -9: no give-back, no finish
        process.wait(timeout=10)
        await anyio.sleep(3)  # silent for longer than --lost-after 2s

        listed = agent_process("nodes", "--lost-after", "2s", "--json", "--config", str(doomed))
        assert listed.returncode == 0, listed.stderr
        rows = {row["pk"]: row for row in json.loads(listed.stdout)}
        assert rows[started.node]["state"] == "lost"
        assert rows[started.node]["current_job"] == job
        assert rows[started.node]["ip"] == "127.0.0.5"
        table = agent_process("nodes", "--lost-after", "2s", "--config", str(doomed))
        assert table.stdout.splitlines()[0].split()[:4] == ["NODE", "IP", "INDEX", "STATE"]

        dry = agent_process("reap", "--lost-after", "2s", "--json", "--config", str(doomed))
        assert dry.returncode == 0, dry.stderr
        assert [(item["job"], item["action"]) for item in json.loads(dry.stdout)] == [
            (job, "would abort")
        ]
        unchanged = await h.job(job)
        assert unchanged.phase == "STARTED" and unchanged.node == started.node  # dry run

        applied = agent_process("reap", "--lost-after", "2s", "--apply", "--config", str(doomed))
        assert applied.returncode == 0, applied.stderr
        assert "aborted: back in the queue" in applied.stdout
        back = await h.job(job)
        assert back.phase == "CREATED" and back.node is None
        again = agent_process("reap", "--lost-after", "2s", "--apply", "--config", str(doomed))
        assert again.stdout.startswith("nothing to reap"), again.stdout  # idempotent

        rescuer = server_config(tmp_path / "rescuer.toml", h.server, node={"ip": "127.0.0.6"})
        result = agent_process("run-once", "--job", str(job), "--config", str(rescuer))
        assert result.returncode == 0, result.stderr
        finished = await h.job(job)
        assert finished.phase == "FINISHED" and finished.node != started.node
        assert b"second run" in await h.output(job, "log", "str")
    finally:
        kill_pid_in(pid_file)
        if process.poll() is None:
            process.kill()


async def test_reap_needs_staff_credentials_and_a_good_duration(h: Harness, tmp_path: Path) -> None:
    config = server_config(tmp_path / "agent.toml", h.server)
    no_staff = agent_process("reap", "--config", str(config))
    assert no_staff.returncode == 2
    assert no_staff.stderr.strip().startswith("agent: agent reap needs staff rights")
    bad = agent_process("nodes", "--lost-after", "soon", "--config", str(config))
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "agent nodes: --lost-after: not a duration: 'soon' (e.g. 90s, 10m, 2h)"
    )
    only_user = agent_process("nodes", "--user", "admin", "--config", str(config))
    assert only_user.returncode == 2
    assert "--user and --password-file go together" in only_user.stderr


# ------------------------------------------------------------ drain and resume


async def test_drain_wait_lets_the_job_finish_takes_no_new_one_and_resume_takes_it(
    h: Harness, tmp_path: Path
) -> None:
    config, base = watched_config(tmp_path, h.server)
    first = await h.submit({"command": "sleep 2; echo first"})
    with running(start_agent(config, tmp_path / "agent.log")):
        await wait_for_status(base, 200, "/readyz")
        await wait_phase(h, first, "STARTED")
        drain = spawn("drain", "--wait", "--config", str(config))
        with anyio.fail_after(10):
            while (await get(base + "/status")).json()["state"] != "draining":
                await anyio.sleep(0.05)
        second = await submit_while_busy(h, {"command": "echo second"})
        with anyio.fail_after(30):
            while drain.poll() is None:
                await anyio.sleep(0.1)
        _, said = drain.communicate()
        assert drain.returncode == 0, said
        assert said.splitlines()[-1].endswith("drained, no job running")
        assert (await h.job(first)).phase == "FINISHED"
        await anyio.sleep(1)  # ten poll intervals: a running agent would have taken it
        waiting = await h.job(second)
        assert waiting.phase == "CREATED" and waiting.node is None
        status = agent_process("status", "--config", str(config))
        assert " · drained · " in status.stdout.splitlines()[0]

        resumed = agent_process("resume", "--config", str(config))
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed" in resumed.stderr
        await wait_phase(h, second, "FINISHED")
        assert (await get(base + "/status")).json()["state"] == "running"


async def test_drain_without_a_running_agent_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    result = agent_process("drain", "--config", str(path))
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("agent: no running agent: cannot read ")


# ------------------------------------------------------------ SIGHUP


async def test_sighup_applies_live_keys_and_names_the_others(h: Harness, tmp_path: Path) -> None:
    config, base = watched_config(tmp_path, h.server)
    log = tmp_path / "agent.log"
    text = config.read_text()
    with running(start_agent(config, log)) as process:
        await wait_for_status(base, 200, "/readyz")
        config.write_text(
            text.replace("interval = 0.1", "interval = 0.7").replace(
                'ip = "127.0.0.4"', 'ip = "127.0.0.4"\nslots = 2'
            ),
            encoding="utf-8",
        )
        process.send_signal(signal.SIGHUP)
        with anyio.fail_after(10):
            while "config reloaded" not in log.read_text():
                await anyio.sleep(0.05)
        config.write_text("[poll]\ninterval = -1\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        with anyio.fail_after(10):
            while "config not reloaded" not in log.read_text():
                await anyio.sleep(0.05)
        assert process.poll() is None  # a bad file leaves the agent as it was
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [reloaded] = [line for line in lines if line["event"] == "config reloaded"]
    assert reloaded["applied"] == "poll.interval"
    assert reloaded["need_restart"] == "node.slots"
    [refused] = [
        line for line in lines if line["event"] == "config not reloaded: the file has errors"
    ]
    assert "poll.interval" in refused["errors"]


# ------------------------------------------------------------ pure decisions


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "2h", "1d", "0.5m")] == [
        90,
        90,
        600,
        7200,
        86400,
        30,
    ]
    for bad in ("", "0", "-5m", "10 minutes", "m"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_node_states_and_what_reap_takes() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def node(pk: int, seconds_ago: float | None, job: int | None) -> Node:
        seen = None if seconds_ago is None else now - timedelta(seconds=seconds_ago)
        return Node(pk=pk, ip="10.0.0.1", index=pk, current_job=job, last_seen=seen)

    nodes = [node(1, 10, 100), node(2, 500, 200), node(3, None, None), node(4, 5, None)]
    assert [node_state(n, now, 90) for n in nodes] == ["busy", "lost", "lost", "idle"]
    naive = Node(pk=5, ip="x", index=0, last_seen=datetime(2026, 11, 24, 11, 59, 30))
    assert node_state(naive, now, 90) == "idle"  # a naive time is UTC

    def job(pk: int, node_pk: int | None, phase: str) -> Job:
        started = now if phase != "CREATED" else None
        ended = now if phase == "FINISHED" else None
        return Job.model_validate(
            {
                "pk": pk,
                "template": {"pk": 1},
                "node": node_pk,
                "start_time": started,
                "end_time": ended,
            }
        )

    jobs = [
        job(100, 1, "STARTED"),
        job(200, 2, "STARTED"),
        job(201, 2, "FINISHED"),
        job(300, None, "CREATED"),
        job(400, 99, "STARTED"),
    ]
    found = reapable(jobs, nodes, now, 90)
    assert [(item.job, item.node) for item in found] == [(200, 2)]
    assert found[0].last_seen_age == 500


def test_reload_takes_only_live_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[poll]\ninterval = 1\n[node]\nslots = 1\n", encoding="utf-8")
    current = load_config(path)
    path.write_text(
        '[poll]\ninterval = 3\nmax_backoff = 9\n[node]\nslots = 4\nqueues = ["gpu"]\n'
        '[log]\nlevel = "debug"\n[run]\nkill_grace = 3\n',
        encoding="utf-8",
    )
    reload = reload_settings(current, load_config(path))
    assert reload.applied == ["node.queues", "poll.interval", "poll.max_backoff", "log.level"]
    assert reload.need_restart == ["node.slots", "run.kill_grace"]
    assert reload.settings.poll.interval == 3 and reload.settings.node.queues == ["gpu"]
    assert (
        reload.settings.node.slots == 1 and reload.settings.run.kill_grace == current.run.kill_grace
    )
    same = reload_settings(current, current)
    assert same.applied == [] and same.need_restart == []
