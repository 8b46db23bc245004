"""Uploads are streamed from disk: the client's memory does not grow with the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.devserver_process import PeakRss, devserver_process, started_job

pytestmark = pytest.mark.anyio

SIZE = 200 * 1024 * 1024
BOUND = 30 * 1024 * 1024


async def test_200_mib_upload_keeps_rss_flat(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(SIZE)
    with devserver_process(tmp_path / "db.sqlite3") as url:
        async with started_job(url) as (client, job, node):
            meter = PeakRss()
            await client.add_output(job, node, "big", "bin", big)
            growth = meter.stop()
            info = await client.output_info(job, "big", "bin")
    assert info.name == "big"
    assert growth < BOUND, f"RSS grew by {growth / 2**20:.1f} MiB during a 200 MiB upload"
