"""Fixtures for the executor tests: real processes in a temporary job directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from executors import MARKER_ENV, PreparedRun


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def marker() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def make_run(tmp_path: Path, marker: str) -> Callable[..., PreparedRun]:
    """Build a PreparedRun in tmp_path; keywords override the defaults."""

    def make(command: str | list[str], **overrides: Any) -> PreparedRun:
        options: dict[str, Any] = {
            "cwd": tmp_path,
            "log_path": tmp_path / "job.log",
            "marker": marker,
            "inherit_env": ("PATH",),
            "kill_grace": 0.5,
        }
        options.update(overrides)
        return PreparedRun(command=command, **options)

    return make


def alive(pid: int) -> bool:
    """A process is alive when it exists and is not a zombie (ended, unreaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def carrying(marker: str) -> list[int]:
    """Living processes whose environment holds MARKER_ENV=marker (independent scan)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_ENV) == marker and alive(process.pid):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def is_alive() -> Callable[[int], bool]:
    return alive


@pytest.fixture
def marked() -> Callable[[str], list[int]]:
    return carrying


@pytest.fixture
def no_leftovers(marker: str) -> Iterator[None]:
    """After the test, no process of the run survives (killed for hygiene if one does)."""
    yield
    left = carrying(marker)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert not left, f"processes carrying the marker survived: {left}"


def mpiexec_for(env_var: str, flavor_words: tuple[str, ...]) -> str:
    """Path of the mpiexec of one flavour (env var, else PATH), or skip the test."""
    path = os.environ.get(env_var) or shutil.which("mpiexec")
    if path is None:
        pytest.skip(f"no mpiexec: set {env_var} to the full path of one")
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    text = version.stdout + version.stderr
    if not any(word in text for word in flavor_words):
        pytest.skip(f"{path} is not {flavor_words[0]}: set {env_var}")
    return path


@pytest.fixture
def mpich_mpiexec() -> str:
    return mpiexec_for("AGENT_TEST_MPICH_MPIEXEC", ("HYDRA", "MPICH"))


@pytest.fixture
def openmpi_mpiexec() -> str:
    return mpiexec_for("AGENT_TEST_OPENMPI_MPIEXEC", ("Open MPI",))
