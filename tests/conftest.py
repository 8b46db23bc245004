"""Shared fixtures: anyio on asyncio, stamina without waits, a clean AGENT_* environment,
and the job servers (the reference server and the real UFDL backend).

With ``AGENT_TEST_FORBID_SKIPS=1`` (set by ``.ci/run``) a skipped test fails the run:
CI has the real backend, root and both MPI wheels, so nothing may quietly not run there.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina

from tests.servers import (
    ServerUnderTest,
    UfdlBackend,
    devserver_server,
    ufdl_backend_dir,
    ufdl_server,
)

SERVER_KINDS = ["devserver", "ufdl"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's AGENT_* settings or /etc/agent/config.toml."""
    for name in list(os.environ):
        if name.startswith("AGENT_") and not name.startswith("AGENT_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _job_user_can_reach_tmp_path(request: pytest.FixtureRequest) -> None:
    """As root, jobs run as the job account, which must pass through the test's
    directory: pytest makes its temporary directories 0700; allow others to pass (not
    to list)."""
    if os.geteuid() != 0 or "tmp_path" not in request.fixturenames:
        return
    path: Path = request.getfixturevalue("tmp_path")
    for directory in [path, *path.parents]:
        if directory == Path(tempfile.gettempdir()) or directory == directory.parent:
            break
        directory.chmod(directory.stat().st_mode | stat.S_IXOTH)


@pytest.fixture
def no_retry_waits() -> Iterator[None]:
    """Retries still happen (a fixed number) but without backoff sleeps."""
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


@pytest.fixture(scope="session")
def ufdl_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UfdlBackend]:
    """The real UFDL backend, started once per session (skips when this clone has none)."""
    folder = ufdl_backend_dir()
    if folder is None:
        pytest.skip("needs the real UFDL backend: ../shared/ufdl-backend is not beside this clone")
    root = tmp_path_factory.mktemp("ufdl")
    backend = UfdlBackend(folder, root / "data")
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(params=SERVER_KINDS)
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerUnderTest]:
    """Each test using this runs twice: on the reference server and on the real backend."""
    if request.param == "ufdl":
        yield ufdl_server(request.getfixturevalue("ufdl_backend"))
        return
    with devserver_server(tmp_path / "devserver.sqlite3") as server:
        yield server


@pytest.fixture
def real_server(ufdl_backend: UfdlBackend) -> ServerUnderTest:
    """The real backend alone, reset to a fresh state."""
    return ufdl_server(ufdl_backend)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("AGENT_TEST_FORBID_SKIPS") == "1" and _skipped:
        print(f"\nAGENT_TEST_FORBID_SKIPS: {len(_skipped)} test(s) skipped; CI must run them all:")
        for nodeid in _skipped[:20]:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
