"""Upload a 200 MiB output through the client; print throughput and the client's RSS growth.

The reference server runs as a separate process, so only the client's memory is measured.
Run: .venv/bin/python bench/upload_rss.py [MiB]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.devserver_process import PeakRss, devserver_process, started_job


async def main(mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.bin"
        with big.open("wb") as handle:
            chunk = bytes(range(256)) * 4096
            for _ in range(mib):
                handle.write(chunk)
        with devserver_process(Path(tmp) / "db.sqlite3") as url:
            async with started_job(url) as (client, job, node):
                meter = PeakRss()
                started = time.perf_counter()
                await client.add_output(job, node, "big", "bin", big)
                seconds = time.perf_counter() - started
                growth = meter.stop()
    print(
        f"upload of {mib} MiB: {seconds:.2f} s ({mib / seconds:.0f} MiB/s), client RSS "
        f"{meter.start / 2**20:.1f} MiB, peak {meter.peak / 2**20:.1f} MiB "
        f"(growth {growth / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200)
