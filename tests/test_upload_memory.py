"""Uploads are streamed from disk: the client's memory does not grow with the file."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from agent.server import ServerClient
from tests.devserver_process import devserver_process

pytestmark = pytest.mark.anyio

SIZE = 200 * 1024 * 1024
BOUND = 30 * 1024 * 1024


class PeakRss:
    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


async def test_200_mib_upload_keeps_rss_flat(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(SIZE)
    with devserver_process(tmp_path / "db.sqlite3") as url:
        async with (
            ServerClient(url, "admin", "admin") as admin,
            ServerClient(url, "node", "node") as client,
        ):
            template = await admin.import_template("t", "agent.analysis", {})
            job = await admin.create_job(template.pk, {})
            node = await client.create_node("127.0.0.9", 0, cpu_mem=1)
            await client.acquire(job.pk, node.pk)
            await client.start(job.pk, node.pk)
            meter = PeakRss()
            await client.add_output(job.pk, node.pk, "big", "bin", big)
            growth = meter.stop()
            info = await client.output_info(job.pk, "big", "bin")
    assert info.name == "big"
    assert growth < BOUND, f"RSS grew by {growth / 2**20:.1f} MiB during a 200 MiB upload"
