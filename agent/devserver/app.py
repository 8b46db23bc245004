"""`DevServer`: the reference job server, started in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from agent.devserver.api import Api
from agent.devserver.auth import Authenticator
from agent.devserver.db import Database
from agent.devserver.faults import FaultInjector
from agent.devserver.hardware import Hardware
from agent.devserver.httpd import DevHTTPServer
from agent.devserver.lifecycle import Lifecycle
from agent.devserver.models import RecordedRequest, User
from agent.devserver.outputs import Outputs
from agent.devserver.recorder import RequestRecorder
from agent.devserver.store import Store
from agent.devserver.tokens import TokenService

DEFAULT_USERS = (User("admin", "admin", staff=True), User("node", "node"))


class DevServer:
    """The reference job server (PROTOCOL.md), for tests, demos and benchmarks.

    `db_path` None keeps everything in memory; a file keeps jobs, nodes, templates,
    outputs and the token secret across restarts. `users` defaults to `admin`/`admin`
    (staff) and `node`/`node`. Use as a context manager, or `start()`/`stop()`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        db_path: str | Path | None = None,
        users: Sequence[User] | None = None,
        access_ttl: float = 300.0,
        refresh_ttl: float = 8 * 3600,
    ) -> None:
        self._host = host
        self._port = port
        users = list(DEFAULT_USERS if users is None else users)
        if len({user.name for user in users}) != len(users):
            raise ValueError("user names must be unique")
        self._db = Database(db_path)
        self._store = Store(self._db)
        pks = self._store.sync_users(users)
        tokens = TokenService(self._db.secret(), access_ttl, refresh_ttl)
        self._faults = FaultInjector()
        self._recorder = RequestRecorder()
        auth = Authenticator(tokens, {pks[user.name]: user for user in users})
        self._api = Api(
            self._store,
            Lifecycle(self._db),
            Outputs(self._db),
            Hardware(self._db),
            auth,
            self._faults,
        )
        self._httpd: DevHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        """Bind (port 0 picks a free port) and serve in a daemon thread."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("a DevServer can be started once")
        host = self._host.strip("[]")
        self._httpd = DevHTTPServer(
            (host, self._port), self._api.handle, self._recorder.record, ipv6=":" in host
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="devserver",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and the database (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._db.close()

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:43121` (IPv6 hosts bracketed)."""
        if self._httpd is None:
            raise RuntimeError("the DevServer is not started")
        host = self._host.strip("[]")
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._httpd.server_port}"

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------- test and demo helpers

    def request_log(self) -> list[RecordedRequest]:
        """Every request answered so far (the last 100 000), oldest first."""
        return self._recorder.entries()

    def clear_request_log(self) -> None:
        """Empty the request log."""
        self._recorder.clear()

    def fail_next(
        self,
        path_regex: str,
        status: int,
        times: int = 1,
        body: bytes = b"<html>boom</html>",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests whose path matches `path_regex` (`re.search`,
        any method, before authentication) with `status` and `body` (`text/html` unless
        `headers` sets a Content-Type), leaving all state untouched."""
        self._faults.add(path_regex, status, times, body, headers)
