"""The pump's reader thread: stopped by a cancel while a writer keeps the pipe open,
and its errors reach the awaiting task."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from executors.logsink import LogSink, pump, read_on_loop


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


@pytest.mark.anyio
async def test_a_quiet_pipe_is_read_on_the_loop_to_its_end(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    lines: list[str] = []
    try:
        with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
            os.write(write_fd, b"one\ntwo\n")
            os.close(write_fd)
            with anyio.fail_after(10):
                assert await read_on_loop(read_fd, sink)  # end of file, no thread
    finally:
        os.close(read_fd)
    assert lines == ["one", "two"]
    assert (tmp_path / "log").read_bytes() == b"one\ntwo\n"


@pytest.mark.anyio
async def test_a_chatty_pipe_is_handed_to_the_reader_thread_with_nothing_lost(
    tmp_path: Path,
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    sent = [f"line {number:05d}" for number in range(4000)]  # 44 KB: more than one read
    lines: list[str] = []
    try:
        with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
            os.write(write_fd, "".join(f"{line}\n" for line in sent[:3000]).encode())
            with anyio.fail_after(10):
                assert not await read_on_loop(read_fd, sink)  # a full read: hand over
                assert len(lines) < 3000
                os.write(write_fd, "".join(f"{line}\n" for line in sent[3000:]).encode())
                os.close(write_fd)
                write_fd = -1
                await pump(read_fd, sink)
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    assert lines == sent
