"""The pump: a quiet pipe read on the event loop to its end, a chatty one handed to the
reader thread with nothing lost; the thread stopped by a cancel while a writer keeps
the pipe open, and its errors reach the awaiting task."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from executors.logsink import LogSink, pump, read_on_loop


class Pipe:
    """A pipe with a non-blocking read end, as a run's output pipe is."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self._open = {self.read_fd, self.write_fd}

    def write(self, data: bytes) -> None:
        os.write(self.write_fd, data)

    def close_writer(self) -> None:
        self._close(self.write_fd)

    def close(self) -> None:
        for fd in list(self._open):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    opened = Pipe()
    yield opened
    opened.close()


@pytest.mark.anyio
@pytest.mark.parametrize("count", [1, 3000], ids=["read-on-the-loop", "read-by-its-thread"])
async def test_a_cancelled_pump_stops_its_thread(tmp_path: Path, pipe: Pipe, count: int) -> None:
    lines: list[str] = []
    with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
        pipe.write(b"before\n" * count)  # 3000 lines: more than a read on the loop takes
        with anyio.fail_after(10):
            with anyio.move_on_after(0.2):  # the writer never closes: only a cancel ends it
                await pump(pipe.read_fd, sink)
        # The thread is gone: the sink is ours again, and nothing more is read.
        pipe.write(b"after\n")
        sink.finish()
    assert lines == ["before"] * count


@pytest.mark.anyio
async def test_an_error_in_the_reader_reaches_the_task(tmp_path: Path, pipe: Pipe) -> None:
    def refuse(line: str) -> None:
        raise ValueError(f"refused {line}")

    with LogSink(tmp_path / "log", 1 << 20, on_line=refuse) as sink:
        pipe.write(b"one\n")
        with anyio.fail_after(10), pytest.raises(ValueError, match="refused one"):
            await pump(pipe.read_fd, sink)


@pytest.mark.anyio
async def test_a_quiet_pipe_is_read_on_the_loop_to_its_end(tmp_path: Path, pipe: Pipe) -> None:
    lines: list[str] = []
    with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
        pipe.write(b"one\ntwo\n")
        pipe.close_writer()
        with anyio.fail_after(10):
            assert await read_on_loop(pipe.read_fd, sink)  # end of file, no thread
    assert lines == ["one", "two"]
    assert (tmp_path / "log").read_bytes() == b"one\ntwo\n"


@pytest.mark.anyio
async def test_a_chatty_pipe_is_handed_to_the_reader_thread_with_nothing_lost(
    tmp_path: Path, pipe: Pipe
) -> None:
    sent = [f"line {number:05d}" for number in range(4000)]  # 44 KB: more than one read
    lines: list[str] = []
    with LogSink(tmp_path / "log", 1 << 20, on_line=lines.append) as sink:
        pipe.write("".join(f"{line}\n" for line in sent[:3000]).encode())
        with anyio.fail_after(10):
            assert not await read_on_loop(pipe.read_fd, sink)  # a full read: hand over
            assert len(lines) < 3000
            pipe.write("".join(f"{line}\n" for line in sent[3000:]).encode())
            pipe.close_writer()
            await pump(pipe.read_fd, sink)
    assert lines == sent
