"""Facts about this host: its address, the cores and memory jobs may use."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import psutil

from agent.config import NodeConfig


def host_ip(server_url: str) -> str:
    """The address this host uses to reach the server (no packet is sent)."""
    host = urlsplit(server_url).hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"


def available_cores() -> list[int]:
    """Core ids this process may run on (its affinity mask), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def usable_cores(config: NodeConfig) -> list[int]:
    """The cores the agent hands to jobs: ``node.cores`` ids, or the first N, or all."""
    allowed = available_cores()
    if config.cores is None:
        return allowed
    if isinstance(config.cores, int):
        return allowed[: config.cores]
    return sorted(set(config.cores))


def usable_memory_mb(config: NodeConfig) -> int:
    if config.memory is not None:
        return config.memory
    return int(psutil.virtual_memory().total // (1024 * 1024))
