"""Shared fixtures: anyio on asyncio, stamina without waits, a clean AGENT_* environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import stamina


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's AGENT_* settings or /etc/agent/config.toml."""
    for name in list(os.environ):
        if name.startswith("AGENT_") and not name.startswith("AGENT_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_retry_waits() -> Iterator[None]:
    """Retries still happen (a fixed number) but without backoff sleeps."""
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)
