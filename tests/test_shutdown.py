"""`agent run` as a real process: drain on SIGTERM, give back, recover after SIGKILL.

Each scenario runs on the reference server and on the real UFDL backend (``any_server``);
what the server stores and the calls it answered are checked on both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest

from agent.server import filters
from tests.agent_harness import Harness, harness, job_writable
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def write_config(h: Harness, tmp_path: Path, drain_timeout: float) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
state_dir = "{h.state_dir}"
[server]
url = "{h.server.url}"
username = "{h.server.node.username}"
password = "{h.server.node.password}"
[node]
ip = "127.0.0.3"
[poll]
interval = 0.1
[run]
kill_grace = 1.0
cancel_check_interval = 0.2
progress_interval = 0.2
[shutdown]
drain_timeout = {drain_timeout}
[log]
format = "json"
[health]
listen = ""
""",
        encoding="utf-8",
    )
    return path


def start_agent(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_started(h: Harness, job: int, pid_file: Path) -> list[int]:
    with anyio.fail_after(30):
        while (
            (await h.job(job)).start_time is None
            or not pid_file.exists()
            or len(pid_file.read_text().split()) < 2
        ):
            await anyio.sleep(0.05)
    return [int(pid) for pid in pid_file.read_text().split()]


async def wait_exit(process: subprocess.Popen[bytes], seconds: float) -> int:
    with anyio.fail_after(seconds):
        while process.poll() is None:
            await anyio.sleep(0.05)
    return process.returncode


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sleeper(pid_file: Path) -> dict[str, object]:
    return {
        "command": f"sleep 1000 & echo $! >> {pid_file}; echo $$ >> {pid_file}; wait",
        "hardware": {"coresPerSlot": 1},
    }


async def test_sigterm_drains_then_gives_the_job_back(h: Harness, tmp_path: Path) -> None:
    pid_file = job_writable(tmp_path) / "pids"
    job = await h.submit(sleeper(pid_file))
    process = start_agent(write_config(h, tmp_path, drain_timeout=0.5))
    pids = await wait_started(h, job, pid_file)
    process.send_signal(signal.SIGTERM)
    assert await wait_exit(process, 20) == 0
    assert not any(alive(pid) for pid in pids)
    back = await h.job(job)
    assert back.phase == "CREATED" and back.node is None
    assert back.start_time is None and back.error_reason is None  # ready for another node
    assert back.outputs == []  # nothing uploaded that would block the next attempt
    calls = await h.requests(job)
    assert [path for _, path, _ in calls][:2] == ["/acquire", "/start"]
    assert calls[-3:] == [
        ("POST", "/finish", 200),
        ("DELETE", "/reset", 200),
        ("DELETE", "/release", 200),
    ]
    if h.server.devserver is not None:  # the request bodies only the reference server keeps
        finish = next(r for r in h.devserver.request_log() if r.path.endswith(f"{job}/finish"))
        assert b"node" in finish.body and b"SIGTERM" in finish.body
    nodes = await h.admin.list_nodes(filters.spec())
    assert [node.current_job for node in nodes] == [None]


async def test_second_signal_gives_back_at_once(h: Harness, tmp_path: Path) -> None:
    pid_file = job_writable(tmp_path) / "pids"
    job = await h.submit(sleeper(pid_file))
    process = start_agent(write_config(h, tmp_path, drain_timeout=600))
    pids = await wait_started(h, job, pid_file)
    process.send_signal(signal.SIGTERM)
    await anyio.sleep(0.3)
    assert process.poll() is None  # draining: the job still runs
    process.send_signal(signal.SIGINT)
    assert await wait_exit(process, 20) == 0
    assert not any(alive(pid) for pid in pids)
    back = await h.job(job)
    assert back.phase == "CREATED" and back.node is None
    assert (await h.calls(job))[-3:] == ["/finish", "/reset", "/release"]


async def test_drain_lets_a_short_job_finish(h: Harness, tmp_path: Path) -> None:
    job = await h.submit({"command": "sleep 1; echo done", "hardware": {"coresPerSlot": 1}})
    process = start_agent(write_config(h, tmp_path, drain_timeout=30))
    with anyio.fail_after(30):
        while (await h.job(job)).start_time is None:
            await anyio.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert await wait_exit(process, 30) == 0
    final = await h.job(job)
    assert final.phase == "FINISHED" and final.error_reason is None
    assert await h.output(job, "log", "str") == b"done\n"
    assert (await h.calls(job))[-1] == "/finish"


async def test_sigkill_then_restart_recovers_the_job(h: Harness, tmp_path: Path) -> None:
    pid_file = job_writable(tmp_path) / "pids"
    flag = job_writable(tmp_path) / "second-run"
    job = await h.submit(
        {
            "command": f"if [ -e {flag} ]; then echo again; exit 0; fi; touch {flag}; "
            f"sleep 1000 & echo $! >> {pid_file}; echo $$ >> {pid_file}; wait",
            "hardware": {"coresPerSlot": 1},
        }
    )
    config = write_config(h, tmp_path, drain_timeout=1)
    process = start_agent(config)
    pids = await wait_started(h, job, pid_file)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert any(alive(pid) for pid in pids)  # the job's session outlived the agent
    interrupted_dirs = [path.name for path in (h.state_dir / "private").iterdir()]
    assert len(interrupted_dirs) == 1 and (h.state_dir / "jobs" / interrupted_dirs[0]).is_dir()
    restarted = start_agent(config, "--exit-when-idle")
    assert await wait_exit(restarted, 60) == 0
    assert not any(alive(pid) for pid in pids)
    # Recovery removed the interrupted run's directories; the second run removed its own.
    assert list((h.state_dir / "jobs").iterdir()) == []
    assert list((h.state_dir / "private").iterdir()) == []
    final = await h.job(job)
    assert final.phase == "FINISHED" and final.error_reason is None
    assert await h.output(job, "log", "str") == b"again\n"  # the second run's
    calls = await h.calls(job)
    recovery = calls.index("/finish")
    assert calls[recovery : recovery + 3] == ["/finish", "/reset", "/release"]
    assert calls[recovery + 3 :].count("/acquire") == 1
    assert calls[-1] == "/finish"
    nodes = await h.admin.list_nodes(filters.spec())
    assert [(node.pk, node.current_job) for node in nodes] == [(final.node, None)]
