"""A real ``agent run`` process for end-to-end tests, stopped as an operator stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli_process import server_config
from tests.servers import ServerUnderTest, free_port


def start_agent(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )


@contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def watched_config(folder: Path, server: ServerUnderTest) -> tuple[Path, str]:
    """A config for an agent of ``server`` logging JSON and serving its health endpoint
    on a free port; returns the config and the endpoint's base URL."""
    port = free_port()
    config = server_config(
        folder / "agent.toml",
        server,
        health={"listen": f"127.0.0.1:{port}"},
        log={"format": "json"},
    )
    return config, f"http://127.0.0.1:{port}"
