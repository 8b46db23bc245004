"""Upload a 200 MiB output through the client; print throughput and the client's RSS growth.

The reference server runs as a separate process, so only the client's memory is measured.
Run: .venv/bin/python bench/upload_rss.py [MiB]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.server import ServerClient
from tests.devserver_process import devserver_process


class Peak:
    def __init__(self) -> None:
        self.process = psutil.Process()
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self.done = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)


async def main(mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.bin"
        with big.open("wb") as handle:
            chunk = bytes(range(256)) * 4096
            for _ in range(mib):
                handle.write(chunk)
        with devserver_process(Path(tmp) / "db.sqlite3") as url:
            async with (
                ServerClient(url, "admin", "admin") as admin,
                ServerClient(url, "node", "node") as client,
            ):
                template = await admin.import_template("bench", "agent.analysis", {})
                job = await admin.create_job(template.pk, {})
                node = await client.create_node("127.0.0.9", 0, cpu_mem=1)
                await client.acquire(job.pk, node.pk)
                await client.start(job.pk, node.pk)
                peak = Peak()
                started = time.perf_counter()
                await client.add_output(job.pk, node.pk, "big", "bin", big)
                seconds = time.perf_counter() - started
                peak.done.set()
    growth = (peak.peak - peak.base) / 2**20
    print(
        f"upload of {mib} MiB: {seconds:.2f} s ({mib / seconds:.0f} MiB/s), "
        f"client RSS {peak.base / 2**20:.1f} MiB -> peak {peak.peak / 2**20:.1f} MiB "
        f"(growth {growth:.1f} MiB)"
    )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200)
