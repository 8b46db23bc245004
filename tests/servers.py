"""The job servers tests run against: the reference server (`agent devserver`) and the
real UFDL backend (`../shared/ufdl-backend`, upstream Django, unmodified).

The real backend is started once per test session (migrations take seconds) and reset
before each test by swapping its SQLite file for the copy taken right after start-up
and emptying its file store: each test sees a fresh server, with the same pks a fresh
server would give. Its request log is read from daphne's access log.

A user's clone has no `../shared`: tests needing the real backend skip, naming why.
`AGENT_TEST_UFDL_BACKEND` points at another copy of the backend's folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.devserver import DevServer

REPO = Path(__file__).resolve().parents[1]
UFDL_START_TIMEOUT = 180.0
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+)" (?P<status>\d{3}) ')


def ufdl_backend_dir() -> Path | None:
    """The real backend's folder (with `start.sh`), or None when this clone has none."""
    configured = os.environ.get("AGENT_TEST_UFDL_BACKEND")
    folder = Path(configured) if configured else REPO.parent / "shared" / "ufdl-backend"
    return folder if (folder / "start.sh").is_file() else None


@dataclass(frozen=True)
class Seen:
    """One request as a server answered it."""

    method: str
    path: str
    status: int


class _Logged(Protocol):
    def request_log(self) -> list[Seen]: ...


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass
class ServerUnderTest:
    """A job server a test talks to, whichever kind it is."""

    kind: str
    """``devserver`` or ``ufdl``."""
    url: str
    admin: Credentials
    node: Credentials
    log: _Logged
    devserver: DevServer | None = field(default=None, repr=False)
    """The reference server object (fault injection, full request records), when it is one."""

    @property
    def real(self) -> bool:
        return self.kind == "ufdl"

    def request_log(self) -> list[Seen]:
        """Every request answered since this server (or this test's reset) began."""
        return self.log.request_log()


class _DevServerLog:
    def __init__(self, server: DevServer) -> None:
        self._server = server

    def request_log(self) -> list[Seen]:
        return [Seen(r.method, r.path, r.status) for r in self._server.request_log()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class UfdlBackend:
    """The real backend as a child process on 127.0.0.1, resettable between tests."""

    def __init__(self, folder: Path, data: Path) -> None:
        self.folder = folder
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = data.parent / "ufdl-server.log"
        self._snapshot = data.parent / "ufdl-pristine.sqlite3"
        self._log_offset = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "UFDL_PORT": str(self.port), "UFDL_DATA": str(self.data)}
        with self.output.open("wb") as sink:
            self._process = subprocess.Popen(
                [str(self.folder / "start.sh"), "--reset"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + UFDL_START_TIMEOUT
        while _ping_status(self.url) != 401:
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.output.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the UFDL backend did not start:\n{tail}")
            time.sleep(0.2)
        shutil.copyfile(self.data / "db.sqlite3", self._snapshot)
        self._log_offset = self.output.stat().st_size

    def reset(self) -> None:
        """Back to the state right after start-up: the same users, no jobs, no files."""
        staged = self.data / "db.sqlite3.reset"
        shutil.copyfile(self._snapshot, staged)
        staged.replace(self.data / "db.sqlite3")
        shutil.rmtree(self.data / "fs", ignore_errors=True)
        (self.data / "fs").mkdir()
        self._log_offset = self.output.stat().st_size

    def request_log(self) -> list[Seen]:
        with self.output.open("rb") as handle:
            handle.seek(self._log_offset)
            text = handle.read().decode("utf-8", "replace")
        seen = []
        for match in _ACCESS_LINE.finditer(text):
            path = match["target"].split("?", 1)[0]
            seen.append(Seen(match["method"], path, int(match["status"])))
        return seen

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None


def _ping_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/v1/nodes/ping", timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


UFDL_ADMIN = Credentials("admin", "admin")
UFDL_NODE = Credentials("node", "nodepass")
DEVSERVER_ADMIN = Credentials("admin", "admin")
DEVSERVER_NODE = Credentials("node", "node")


def ufdl_server(backend: UfdlBackend) -> ServerUnderTest:
    backend.reset()
    return ServerUnderTest("ufdl", backend.url, UFDL_ADMIN, UFDL_NODE, backend)


@contextmanager
def devserver_server(db_path: Path | None = None) -> Iterator[ServerUnderTest]:
    with DevServer(port=0, db_path=db_path) as server:
        yield ServerUnderTest(
            "devserver",
            server.url,
            DEVSERVER_ADMIN,
            DEVSERVER_NODE,
            _DevServerLog(server),
            devserver=server,
        )
