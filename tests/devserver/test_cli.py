"""`python -m agent.devserver` (the `agent devserver` command) in a subprocess."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .helpers import TEMPLATE, TLS


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_DEVSERVER_")}
    env.update(extra or {})
    return env


def _read_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no line from the devserver; got {line!r}")
            chunk = os.read(proc.stderr.fileno(), 1)
            if not chunk:
                raise AssertionError(f"devserver exited: {line!r} rc={proc.wait(5)}")
            line += chunk
    return line.decode().strip()


@contextmanager
def devserver(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.devserver", "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(env),
    )
    try:
        line = _read_line(proc)
        prefix = "devserver listening on "
        assert line.startswith(prefix), line
        yield proc, line.removeprefix(prefix)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def _login(url: str, name: str, password: str) -> int:
    reply = httpx.post(
        f"{url}/v1/auth/obtain", json={"username": name, "password": password}, verify=TLS
    )
    return reply.status_code


def _token(url: str, name: str, password: str) -> str:
    reply = httpx.post(
        f"{url}/v1/auth/obtain", json={"username": name, "password": password}, verify=TLS
    )
    reply.raise_for_status()
    return str(reply.json()["access"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_on_a_free_port_and_exits_0_on_signal(signum: int) -> None:
    with devserver() as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        assert _login(url, "admin", "admin") == 200
        assert _login(url, "node", "node") == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == 0


def test_flags_choose_the_users() -> None:
    with devserver("--admin", "boss:s3cret", "--user", "w1:p1", "--user", "w2:p2") as (proc, url):
        assert _login(url, "admin", "admin") == 401
        assert _login(url, "node", "node") == 401
        assert _login(url, "w1", "p1") == 200
        assert _login(url, "w2", "p2") == 200
        boss = {"Authorization": f"Bearer {_token(url, 'boss', 's3cret')}"}
        assert (
            httpx.post(f"{url}/v1/job-templates/import", json=TEMPLATE, headers=boss).status_code
            == 200
        )
        worker = {"Authorization": f"Bearer {_token(url, 'w1', 'p1')}"}
        assert (
            httpx.post(f"{url}/v1/job-templates/import", json=TEMPLATE, headers=worker).status_code
            == 403
        )
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_environment_chooses_the_users() -> None:
    env = {"AGENT_DEVSERVER_ADMIN": "root:r", "AGENT_DEVSERVER_USERS": "a:1, b:2"}
    with devserver(env=env) as (proc, url):
        assert _login(url, "admin", "admin") == 401
        assert _login(url, "root", "r") == 200
        assert _login(url, "a", "1") == 200
        assert _login(url, "b", "2") == 200
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_db_flag_keeps_state_across_runs(tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    with devserver("--db", db) as (proc, url):
        auth = {"Authorization": f"Bearer {_token(url, 'admin', 'admin')}"}
        template = httpx.post(f"{url}/v1/job-templates/import", json=TEMPLATE, headers=auth).json()
        body = {"input_values": {}, "parameter_values": {}, "description": "survivor"}
        job = httpx.post(
            f"{url}/v1/job-templates/{template['pk']}/create-job", json=body, headers=auth
        ).json()
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    with devserver("--db", db) as (proc, url):
        auth = {"Authorization": f"Bearer {_token(url, 'admin', 'admin')}"}
        reply = httpx.get(f"{url}/v1/jobs/{job['pk']}", headers=auth)
        assert reply.status_code == 200
        assert reply.json()["description"] == "survivor"
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_bad_account_flag_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.devserver", "--admin", "nocolon"],
        capture_output=True,
        env=_env(),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"NAME:PASSWORD" in proc.stderr


def test_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "agent.devserver", "--port", str(port)],
            capture_output=True,
            env=_env(),
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert b"cannot start" in proc.stderr
