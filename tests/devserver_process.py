"""The reference server as a separate process (its memory is not ours), and helpers
that the upload test uses."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import psutil

from agent.server import ServerClient


@contextmanager
def devserver_process(db: Path, *extra: str) -> Iterator[str]:
    """Run ``python -m agent.devserver --port 0``; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.devserver", "--port", "0", "--db", str(db), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                url = match.group(1)
        if url is None:
            raise RuntimeError("devserver did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def started_job(url: str) -> AsyncIterator[tuple[ServerClient, int, int]]:
    """A node client and a job it has acquired and started: (client, job pk, node pk)."""
    async with (
        ServerClient(url, "admin", "admin") as admin,
        ServerClient(url, "node", "node") as client,
    ):
        template = await admin.import_template("upload", "agent.analysis", {})
        job = await admin.create_job(template.pk, {})
        node = await client.create_node("127.0.0.9", 0, cpu_mem=1)
        await client.acquire(job.pk, node.pk)
        await client.start(job.pk, node.pk)
        yield client, job.pk, node.pk


class PeakRss:
    """Samples this process's RSS from a thread; :meth:`stop` gives the growth in bytes."""

    def __init__(self, period: float = 0.005) -> None:
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._period):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start
