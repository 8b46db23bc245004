"""The log sink: lines, pieces, filter, cap; the pump over a real pipe."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import DEFAULT_REDACT
from agent.redact import MASK, Redactor
from executors.base import JobTampered, PreparedRun
from executors.logsink import MAX_LINE, LogSink, pump, truncation_notice, utf8_cut


def sink_lines(tmp_path: Path, chunks: list[bytes], **options: object) -> tuple[list[str], bytes]:
    """Feed chunks to a sink; return the callback's lines and the file's bytes."""
    lines: list[str] = []
    log = tmp_path / "log"
    with LogSink(log, on_line=lines.append, **options) as sink:  # type: ignore[arg-type]
        for chunk in chunks:
            sink.feed(chunk)
        sink.finish()
    return lines, log.read_bytes()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"a", b"b\nc", b"\n"], ["ab", "c"]),
        ([b"no newline"], ["no newline"]),
        ([b"\n\n"], ["", ""]),
        ([b"crlf\r\n"], ["crlf"]),
        ([b"caf\xc3", b"\xa9\n"], ["café"]),
        ([b"bad \xff\n"], ["bad \ufffd"]),
        ([], []),
    ],
)
def test_lines(tmp_path: Path, chunks: list[bytes], expected: list[str]) -> None:
    lines, _ = sink_lines(tmp_path, chunks, max_log_bytes=1 << 20)
    assert lines == expected


def test_file_gets_raw_lines(tmp_path: Path) -> None:
    _, content = sink_lines(tmp_path, [b"one\ntwo"], max_log_bytes=1 << 20)
    assert content == b"one\ntwo\n"


def test_long_line_is_cut_in_pieces(tmp_path: Path) -> None:
    chunks = [b"x" * 10] * 5 + [b"\nend\n"]
    lines, content = sink_lines(tmp_path, chunks, max_log_bytes=1 << 20, max_line=16)
    assert lines == ["x" * 16, "x" * 16, "x" * 16, "xx", "end"]
    assert all(len(line) <= 16 for line in content.splitlines())


def test_long_line_in_one_chunk_is_cut(tmp_path: Path) -> None:
    lines, _ = sink_lines(tmp_path, [b"y" * 40 + b"\n"], max_log_bytes=1 << 20, max_line=16)
    assert lines == ["y" * 16, "y" * 16, "y" * 8]


def test_pieces_do_not_split_characters(tmp_path: Path) -> None:
    text = "é" * 20  # two bytes each
    lines, _ = sink_lines(tmp_path, [text.encode()], max_log_bytes=1 << 20, max_line=7)
    assert "".join(lines) == text
    assert "\ufffd" not in "".join(lines)


@pytest.mark.parametrize(
    ("data", "limit", "cut"),
    [
        (b"abcdef", 3, 3),
        (b"ab", 3, 2),
        ("aé".encode(), 2, 1),
        ("€€".encode(), 4, 3),
        (b"\x80" * 8, 4, 4),
    ],
)
def test_utf8_cut(data: bytes, limit: int, cut: int) -> None:
    assert utf8_cut(data, limit) == cut


def test_filter_applies_to_file_and_callback(tmp_path: Path) -> None:
    def redact(line: str) -> str:
        return line.replace("hunter2", "***")

    lines, content = sink_lines(
        tmp_path, [b"pw=hunter2\n"], max_log_bytes=1 << 20, line_filter=redact
    )
    assert lines == ["pw=***"]
    assert content == b"pw=***\n"


def test_cap_writes_one_marker_and_keeps_counting(tmp_path: Path) -> None:
    chunks = [b"0123456789\n"] * 10
    log = tmp_path / "log"
    lines: list[str] = []
    with LogSink(log, 35, on_line=lines.append) as sink:
        for chunk in chunks:
            sink.feed(chunk)
        sink.finish()
    assert sink.truncated
    assert sink.bytes_seen == 110
    assert len(lines) == 10
    assert log.read_bytes() == b"0123456789\n" * 3 + truncation_notice(35).encode() + b"\n"


def test_cap_counts_what_the_file_held(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"pre-process\n")
    with LogSink(log, 20) as sink:
        sink.feed(b"abcdefghij\n")
        sink.finish()
    assert sink.truncated
    assert log.read_bytes().startswith(b"pre-process\n[agent: log truncated")


def test_notice(tmp_path: Path) -> None:
    lines: list[str] = []
    with LogSink(tmp_path / "log", 100, on_line=lines.append) as sink:
        sink.notice("[agent: hello]")
    assert lines == ["[agent: hello]"]
    assert (tmp_path / "log").read_bytes() == b"[agent: hello]\n"


@pytest.mark.anyio
async def test_pump_reads_a_pipe_to_eof(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    lines: list[str] = []
    payload = b"".join(f"line {i}\n".encode() for i in range(20000)) + b"tail"

    async def write() -> None:
        view = memoryview(payload)
        while view:
            await anyio.wait_writable(write_fd)
            try:
                written = os.write(write_fd, view[:4096])
            except BlockingIOError:
                continue
            view = view[written:]
        os.close(write_fd)

    os.set_blocking(write_fd, False)
    with LogSink(tmp_path / "log", 1 << 30, on_line=lines.append) as sink:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                await pump(read_fd, sink)
    os.close(read_fd)
    assert len(lines) == 20001
    assert lines[-1] == "tail"
    assert sink.bytes_seen == len(payload)


SECRET = "Zq9-s3cr3t-Zq9"


def cut_into_chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in chunks of the sizes ``cuts`` gives, the rest in a last one."""
    chunks, rest = [], data
    for cut in cuts:
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    return chunks


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        st.text(alphabet="abcdefghij", min_size=1, max_size=12), min_size=1, max_size=60
    ),
    where=st.integers(min_value=0, max_value=60),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_a_secret_is_masked_across_chunk_edges_and_line_splits(
    tmp_path_factory: pytest.TempPathFactory, words: list[str], where: int, cuts: list[int]
) -> None:
    """Pipe chunks cut anywhere, long lines split in pieces: the secret never gets out."""
    words.insert(min(where, len(words)), SECRET)
    data = (" ".join(words) + "\n").encode()
    chunks = cut_into_chunks(data, cuts)
    redactor = Redactor(DEFAULT_REDACT, secrets=[SECRET])
    tmp_path = tmp_path_factory.mktemp("sink")
    lines, content = sink_lines(
        tmp_path, chunks, max_log_bytes=1 << 20, max_line=48, line_filter=redactor.redact
    )
    # Pieces of a split line are separate lines: look at them joined again too.
    assert SECRET.encode() not in content.replace(b"\n", b"")
    assert SECRET not in "".join(lines)
    assert all(len(line.encode()) <= 48 + len(MASK) for line in lines)


@pytest.mark.parametrize("kind", ["fifo", "zero", "passwd", "dir"])
def test_a_log_the_job_replaced_is_its_fault(tmp_path: Path, kind: str) -> None:
    """Nothing is opened through a symlink, and a FIFO without a reader does not block."""
    log = tmp_path / "log"
    make = {
        "fifo": lambda: os.mkfifo(log),
        "zero": lambda: os.symlink("/dev/zero", log),
        "passwd": lambda: os.symlink("/etc/passwd", log),
        "dir": log.mkdir,
    }
    make[kind]()
    with pytest.raises(JobTampered, match="the job replaced its log file: it is a"):
        LogSink(log, 100).__enter__()


def test_entering_twice_opens_the_log_once(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "log", 100)
    with sink, sink:
        sink.notice("once")
    assert (tmp_path / "log").read_bytes() == b"once\n"


def test_a_run_gives_the_sink_its_secret_finder(tmp_path: Path) -> None:
    """``'x' * 65530 + 'API_TOKEN=…'`` was cut into ``…API_TO`` + ``KEN=…``: with the
    run's finder the cut moves before the keyword, and the value is masked."""
    redactor = Redactor(DEFAULT_REDACT)
    lines: list[str] = []
    run = PreparedRun(
        "true",
        tmp_path,
        tmp_path / "log",
        "marker",
        max_log_bytes=1 << 20,
        on_line=lines.append,
        line_filter=redactor.redact,
        secret_finder=redactor,
    )
    with LogSink.for_run(run) as sink:
        sink.feed(b"x" * (MAX_LINE - 6) + b"API_TOKEN=abcdefgh123\n")
        sink.finish()
    assert lines == ["x" * (MAX_LINE - 6) + "API_", f"TOKEN={MASK}"]


def long_line_pieces(
    tmp_path: Path, chunks: list[bytes], redactor: Redactor, max_line: int
) -> tuple[list[bytes], bytes]:
    """Feed ``chunks`` to a sink with ``redactor`` as filter and finder; the blocks its
    ``on_lines`` saw, split into lines, and the file's bytes."""
    seen: list[bytes] = []
    log = tmp_path / "log"
    with LogSink(
        log,
        1 << 30,
        line_filter=redactor.redact,
        secret_finder=redactor,
        on_lines=lambda block: seen.extend(bytes(block).split(b"\n")),
        max_line=max_line,
    ) as sink:
        for chunk in chunks:
            sink.feed(chunk)
        sink.finish()
    content = log.read_bytes()
    log.unlink()
    return seen, content


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(
        st.one_of(
            st.text(alphabet="abcdefghij", min_size=1, max_size=30),
            st.sampled_from(["é", "\t", "password=" + SECRET, SECRET, "x" * 90]),
        ),
        min_size=1,
        max_size=80,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=20),
)
def test_pieces_of_a_long_line_do_not_depend_on_how_it_arrives(
    tmp_path_factory: pytest.TempPathFactory, words: list[str], cuts: list[int]
) -> None:
    """A line without a newline, fed whole or in pipe-sized bits: the same pieces reach
    the callback and the file (clean pieces are handed on together, the rest one by
    one), each within the limit plus the mask, and the secret never shows."""
    # Longer than the limit plus the finder's reach (4 KiB): the sink must cut as it goes.
    data = ("lead " * 900 + " ".join(words)).encode()
    chunks = cut_into_chunks(data, cuts)
    redactor = Redactor(DEFAULT_REDACT, secrets=[SECRET])
    tmp_path = tmp_path_factory.mktemp("pieces")
    whole = long_line_pieces(tmp_path, [data], redactor, max_line=64)
    in_bits = long_line_pieces(tmp_path, chunks, redactor, max_line=64)
    assert in_bits == whole
    pieces, content = whole
    assert content == b"".join(piece + b"\n" for piece in pieces)
    assert all(len(piece) <= 64 + len(MASK) for piece in pieces)
    assert SECRET.encode() not in content.replace(b"\n", b"")
    if SECRET not in data.decode() and "password" not in data.decode():
        assert b"".join(pieces) == data  # nothing masked: the pieces are the line


def test_a_clean_long_line_is_cut_where_it_was(tmp_path: Path) -> None:
    """Pieces handed on together are cut exactly as one by one: at the last blank
    within the window before the limit, else at the limit."""
    redactor = Redactor(DEFAULT_REDACT)
    tail = b"d" * 63 + b" "  # past the finder's reach: the sink cuts before the end
    data = b"a" * 50 + b" " + b"b" * 100 + b" " + tail * 80
    pieces, content = long_line_pieces(tmp_path, [data], redactor, max_line=64)
    assert pieces == [b"a" * 50 + b" ", b"b" * 64, b"b" * 36 + b" ", *[tail] * 80]
    assert content == b"".join(piece + b"\n" for piece in pieces)
