"""Fixtures: a fresh in-memory DevServer per test, and logged-in clients for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.devserver import DevServer

from .helpers import World


@pytest.fixture
def server() -> Iterator[DevServer]:
    with DevServer(port=0) as running:
        yield running


@pytest.fixture
def world(server: DevServer) -> Iterator[World]:
    setup = World(server.url)
    try:
        yield setup
    finally:
        setup.close()
