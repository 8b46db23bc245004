"""The pump's reader thread: stopped by a cancel while a writer keeps the pipe open,
and its errors reach the awaiting task."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from executors.logsink import LogSink, pump


@pytest.mark.anyio
async def test_a_cancelled_pump_stops_its_thread(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    lines: list[str] = []
    try:
        with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
            os.write(write_fd, b"before\n")
            with anyio.fail_after(10):
                with anyio.move_on_after(0.2):  # the writer never closes: only a cancel ends it
                    await pump(read_fd, sink)
            # The thread is gone: the sink is ours again, and nothing more is read.
            os.write(write_fd, b"after\n")
            sink.finish()
    finally:
        os.close(write_fd)
        os.close(read_fd)
    assert lines == ["before"]


@pytest.mark.anyio
async def test_an_error_in_the_reader_reaches_the_task(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)

    def refuse(line: str) -> None:
        raise ValueError(f"refused {line}")

    try:
        with LogSink(tmp_path / "log", 1 << 20, on_line=refuse) as sink:
            os.write(write_fd, b"one\n")
            with anyio.fail_after(10), pytest.raises(ValueError, match="refused one"):
                await pump(read_fd, sink)
    finally:
        os.close(write_fd)
        os.close(read_fd)
