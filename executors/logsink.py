"""From a job's output pipe to its log file and line callback, in flat memory.

:func:`pump` reads the pipe in bounded chunks as it becomes readable; :class:`LogSink`
splits the bytes into lines, passes each through the run's line filter (redaction) and
line callback (progress scanning), and appends it to the log file until the file reaches
its cap. Past the cap one marker line is written; the rest is still counted and still
scanned, never stored. A line longer than :data:`MAX_LINE` is handed on in pieces (cut
between words where it can, and never inside a secret the run's
:class:`~executors.base.SecretFinder` sees, so the filter can mask it whole), so neither
a chatty job nor one enormous line without a newline grows the agent: a partial line
is held back up to :data:`MAX_LINE` plus the finder's reach.

Output is taken a block at a time: the complete lines of a read go to the file in one
write, and the filter only runs over a block when the finder says it may hold a secret
(:meth:`~executors.base.SecretFinder.may_hold_secret`, a memory-speed search for the
literal secrets and the patterns' keywords); a block that may, or that has a line longer
than :data:`MAX_LINE`, goes line by line as described above. :func:`pump` does the
reading and writing in a worker thread of its own, so a chatty job costs the event loop
nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import anyio
import anyio.to_thread

from executors.base import (
    JobTampered,
    LineCallback,
    LineFilter,
    LinesCallback,
    PreparedRun,
    SecretFinder,
)
from executors.safefiles import NotRegularFile, open_regular

#: Errors that mean the disk is full: the log stops, the run goes on.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

#: Bytes read from the pipe at once by default (a pipe's default capacity).
CHUNK = 64 * 1024

#: Longest line handed on whole; longer ones are cut into pieces of at most this size.
MAX_LINE = 64 * 1024

#: How far back from :data:`MAX_LINE` a long line is cut at a space or tab instead.
SPLIT_WINDOW = 4 * 1024

#: Niceness of a reader thread (Linux sets it per thread): a job printing without
#: pause has its log taken in when the CPU is not wanted by its neighbours.
READER_NICE = 10

#: Share of the time a reader thread may spend taking in output without pause while the
#: agent has other work in hand: after a block it sleeps (without the GIL) in proportion
#: to the CPU time the block took. A job that prints flat out then waits on its pipe,
#: instead of the agent's event loop and its other jobs waiting on the GIL (a job
#: printing little does not notice). A job alone on the agent is read at full speed.
#: A twentieth: with a tenth, 100 `true` jobs next to `yes` took 1.14 times their time
#: next to `sleep` (mean of nine noisy-bench runs), with a twentieth 1.07 times; a
#: chatty job beside other work is still read at about 110 MiB/s.
READER_DUTY = 0.05

#: Shorter pauses are not worth a sleep.
MIN_PAUSE = 0.0002

#: Write buffer of the log file.
_FILE_BUFFER = 64 * 1024

#: Reads of a run's output done on the event loop before its reader thread starts: a
#: job that prints nothing or a few lines never needs a thread of its own.
LOOP_READS = 8

#: The most read at once on the event loop; a read this big (a chatty job) hands the
#: rest of the output to the reader thread at once.
LOOP_READ_SIZE = 16 * 1024


def reader_pause(busy: float, crowded: bool) -> float:
    """How long a reader thread sleeps after a block that took ``busy`` seconds of its
    CPU: none when the run is alone on the agent (``crowded`` False) or the pause would
    be too short to matter, else what keeps it busy :data:`READER_DUTY` of the time."""
    if not crowded:
        return 0.0
    pause = busy * (1 - READER_DUTY) / READER_DUTY
    return pause if pause >= MIN_PAUSE else 0.0


def truncation_notice(max_log_bytes: int) -> str:
    """The line written once when the log file reaches its cap."""
    return f"[agent: log truncated at {max_log_bytes} bytes]"


def utf8_cut(data: bytes, limit: int, start: int = 0) -> int:
    """Where to cut ``data[start:]`` to at most ``limit`` bytes without splitting a UTF-8
    sequence (counted from ``start``).

    Backs off over at most three continuation bytes; data that is not UTF-8 is cut at
    ``limit``.
    """
    if len(data) - start <= limit:
        return len(data) - start
    for cut in range(limit, max(limit - 3, 1) - 1, -1):
        if data[start + cut] & 0xC0 != 0x80:  # not a continuation byte: a character starts
            return cut
    return limit


def lines_within(data: bytes, limit: int) -> bool:
    """Whether no line of ``data`` (split at ``\n``) is longer than ``limit`` bytes.

    Looks for the last newline within each ``limit + 1`` bytes, so it takes about
    ``len(data) / limit`` searches, not one per line.
    """
    pos, size = 0, len(data)
    while size - pos > limit:
        newline = data.rfind(b"\n", pos, pos + limit + 1)
        if newline < 0:
            return False
        pos = newline + 1
    return True


def split_point(data: bytes, limit: int, window: int = SPLIT_WINDOW, start: int = 0) -> int:
    """Where to cut a line longer than ``limit`` (``data[start:]``, the cut counted from
    ``start``): after the last space or tab within ``window`` bytes before the limit,
    else at a UTF-8 boundary (:func:`utf8_cut`).

    Cutting between words keeps a secret (a token, ``password=...``) whole in one
    piece, so the line filter can still mask it.
    """
    if len(data) - start <= limit:
        return len(data) - start
    low, high = start + max(0, limit - window), start + limit
    blank = max(data.rfind(b" ", low, high), data.rfind(b"\t", low, high))
    if blank > start:
        return blank + 1 - start
    return utf8_cut(data, limit, start)


def secret_safe_cut(data: bytes, cut: int, finder: SecretFinder) -> int:
    """Move ``cut`` (a character boundary of ``data``) so that no secret straddles it.

    The finder looks at ``data`` up to ``finder.reach`` bytes past the cut. A secret
    straddling the cut moves the cut back to where the secret starts. One that starts
    at 0 (the piece would be empty) moves it forward to where the secret ends instead:
    that piece is longer than the limit, by at most the reach. A secret reaching past
    the reach from 0 (longer than the limit plus the reach) is cut there: the filter
    masks what it still recognises in each piece, the rest may show.
    """
    region = data[: cut + finder.reach]
    text = region.decode("utf-8", errors="surrogateescape")
    at = len(data[:cut].decode("utf-8", errors="surrogateescape"))
    if len(text[:at].encode("utf-8", errors="surrogateescape")) != cut:
        return cut  # not on a character boundary (bytes that are no UTF-8): keep it
    spans = finder.spans(text)
    floor = 0
    while True:
        across = [(start, end) for start, end in spans if start < at < end]
        if not across:
            break
        start = min(start for start, _ in across)
        if start > floor:
            at = start
        else:  # a secret from the piece's start: keep it whole in this piece
            at = floor = max(end for _, end in across)
    if at == 0:
        return cut
    return len(text[:at].encode("utf-8", errors="surrogateescape"))


class LogSink:
    """Line splitting, filtering, callback and capped writing of one run's output.

    Use as a context manager (the log file is opened in binary append mode on entry and
    closed on exit), :meth:`feed` it bytes, and call :meth:`finish` at end of output.
    The cap counts what the file already held: pre- and post-process share it.
    """

    def __init__(
        self,
        log_path: Path,
        max_log_bytes: int,
        on_line: LineCallback | None = None,
        line_filter: LineFilter | None = None,
        *,
        max_line: int = MAX_LINE,
        secret_finder: SecretFinder | None = None,
        on_lines: LinesCallback | None = None,
    ) -> None:
        self._path = log_path
        self._max_log_bytes = max_log_bytes
        self._on_line = on_line
        self._on_lines = on_lines
        self._filter = line_filter
        self._max_line = max_line
        self._finder = secret_finder
        self._file: BinaryIO | None = None
        self._budget = 0
        self._pending = b""
        self.bytes_seen = 0
        """Bytes the job printed, written or not."""
        self.bytes_written = 0
        """Bytes this sink appended to the file (marker line included)."""
        self.truncated = False
        """Whether output went past the cap (or the disk filled up)."""
        self.disk_full = False
        """Whether writing the log failed for want of space (ENOSPC, EDQUOT)."""

    @classmethod
    def for_run(cls, run: PreparedRun) -> LogSink:
        """A sink configured from a :class:`PreparedRun`."""
        return cls(
            run.log_path,
            run.max_log_bytes,
            run.on_line,
            run.line_filter,
            secret_finder=run.secret_finder,
            on_lines=run.on_lines,
        )

    def __enter__(self) -> LogSink:
        """Open the log for appending (created 0600 if missing). Raises
        :class:`~executors.base.JobTampered` when the job has put something else than a
        regular file there (a FIFO would block, a symlink would write elsewhere), and
        :class:`OSError` when it cannot be opened. Entering twice opens it once."""
        if self._file is not None:
            return self
        try:
            fd = open_regular(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode=0o600)
        except NotRegularFile as exc:
            raise JobTampered(f"the job replaced its log file: it {exc.reason} now") from exc
        self._file = os.fdopen(fd, "ab", buffering=_FILE_BUFFER)
        existing = os.fstat(fd).st_size
        self._budget = max(0, self._max_log_bytes - existing)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._disk_safe(lambda file: file.close())
        self._file = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes of output; complete lines are handed on at once."""
        self.bytes_seen += len(data)
        if self.truncated and self._on_line is None and self._on_lines is None:
            return  # nothing will look at these bytes any more
        end = data.rfind(b"\n")
        if end >= 0:  # one copy: the lines before the last newline, the rest after it
            self._block(b"".join((self._pending, memoryview(data)[:end])))
            self._pending = b""
            data = data[end + 1 :]
        data = self._pending + data if self._pending else data
        # Hold back the finder's reach: a secret at the cut may not have arrived whole.
        reach = self._finder.reach if self._finder is not None else 0
        hold = self._max_line + reach
        if len(data) <= hold:
            self._pending = data
            return
        # ASCII with nothing to mask anywhere: no window can hold a secret either.
        all_clean = data.isascii() and self._clean(data)
        pieces: list[memoryview] = []  # clean pieces, handed on together
        view = memoryview(data)
        pos = 0
        while len(data) - pos > hold:
            if all_clean:
                clean, cut = True, split_point(data, self._max_line, start=pos)
            else:
                window = data[pos : pos + hold + 1]  # the byte at the cut decides it too
                clean = self._clean(window)
                cut = split_point(window, self._max_line) if clean else self._cut(window)
            if clean:
                pieces.append(view[pos : pos + cut])
            else:
                self._pieces(pieces)
                pieces = []
                self._emit(window[:cut])
            pos += cut
        self._pieces(pieces)
        self._pending = data[pos:]

    def finish(self) -> None:
        """End of output: a final line without a newline still counts; flush the file."""
        if self._pending:
            self._line(self._pending)
            self._pending = b""
        self._disk_safe(lambda file: file.flush())

    def notice(self, text: str) -> None:
        """Add a line of the agent's own (a spawn failure, say) to the log and callback."""
        self._emit(text.encode())

    def _clean(self, data: bytes) -> bool:
        """Whether the filter would leave every line of ``data`` as it is (and no
        secret is in it to cut around)."""
        if self._filter is None and self._finder is None:
            return True
        return self._finder is not None and not self._finder.may_hold_secret(data)

    def _block(self, block: bytes) -> None:
        """Complete lines (joined by ``\n``, without the last one's): at once when no
        line is too long and no secret can be in them, else line by line."""
        if not (lines_within(block, self._max_line) and self._clean(block)):
            for line in block.split(b"\n"):
                self._line(line)
            return
        self._pass(block)

    def _pieces(self, pieces: list[memoryview]) -> None:
        """Clean pieces of a long line, each handed on as a line of its own, at once."""
        if pieces:
            self._pass(b"\n".join(pieces))

    def _pass(self, block: bytes) -> None:
        """Lines known to be within the limit with nothing to mask: to the callback and
        the file as one block (what :meth:`_emit` does to each, done once)."""
        valid = block
        if not block.isascii():  # what a decode and encode do to bytes that are no UTF-8
            valid = block.decode("utf-8", errors="replace").encode("utf-8", errors="replace")
            if self._filter is not None:  # the filter's own round trip
                block = valid
        if self._on_lines is not None:
            self._on_lines(valid)
        elif self._on_line is not None:
            text = block.decode("utf-8", errors="replace")
            for item in text.split("\n"):
                self._on_line(item.removesuffix("\r"))
        self._write_block(block)

    def _line(self, line: bytes) -> None:
        while len(line) > self._max_line:
            cut = self._cut(line)
            self._emit(line[:cut])
            line = line[cut:]
        self._emit(line)

    def _cut(self, data: bytes) -> int:
        cut = split_point(data, self._max_line)
        if self._finder is None:
            return cut
        return secret_safe_cut(data, cut, self._finder)

    def _emit(self, raw: bytes, *, clean: bool = False) -> None:
        """One line (or piece): filtered unless ``clean`` (nothing to mask in it)."""
        text = raw.decode("utf-8", errors="replace")
        if self._filter is not None and not clean:
            text = self._filter(text)
            raw = text.encode("utf-8", errors="replace")
        elif self._filter is not None and not raw.isascii():
            raw = text.encode("utf-8", errors="replace")
        if self._on_lines is not None:
            ascii_or_valid = self._filter is not None or raw.isascii()
            self._on_lines(raw if ascii_or_valid else text.encode("utf-8", errors="replace"))
        elif self._on_line is not None:
            self._on_line(text.removesuffix("\r"))
        self._write(raw)

    def _write_block(self, block: bytes) -> None:
        """Lines joined by ``\n``: in one write while they fit under the cap."""
        if self.truncated or self._file is None:
            return
        size = len(block) + 1
        if self.bytes_written + size > self._budget:  # line by line up to the cap
            for line in block.split(b"\n"):
                self._write(line)
            return
        self._disk_safe(lambda file: file.writelines((block, b"\n")))
        self.bytes_written += size

    def _write(self, raw: bytes) -> None:
        if self.truncated or self._file is None:
            return
        size = len(raw) + 1
        if self.bytes_written + size > self._budget:
            self.truncated = True
            notice = truncation_notice(self._max_log_bytes).encode() + b"\n"
            self._disk_safe(lambda file: file.write(notice))
            self.bytes_written += len(notice)
            return
        self._disk_safe(lambda file: file.writelines((raw, b"\n")))
        self.bytes_written += size

    def _disk_safe(self, action: Callable[[BinaryIO], object]) -> None:
        """Do ``action`` on the log file; a full disk (ENOSPC, EDQUOT) ends the writing
        for good (:attr:`disk_full`), the output is still scanned, never an error."""
        if self._file is None:
            return
        try:
            action(self._file)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            self.disk_full = True
            self.truncated = True
            file, self._file = self._file, None
            with contextlib.suppress(OSError):  # the buffer cannot be flushed either
                file.close()


class PipeReader:
    """Reads a non-blocking pipe into a sink in a thread of its own until end of file
    or :meth:`stop`; the event loop never sees the bytes."""

    def __init__(
        self,
        fd: int,
        sink: LogSink,
        chunk: int = CHUNK,
        crowded: Callable[[], bool] | None = None,
    ) -> None:
        self._fd = fd
        self._sink = sink
        self._chunk = chunk
        self._crowded = crowded
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._wake: int | None = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.done = threading.Event()
        """Set when :meth:`run` has returned (the sink is the caller's again)."""
        self.error: BaseException | None = None
        """What ended :meth:`run` other than end of file or a stop."""

    def start(self) -> None:
        """Run :meth:`run` in a new daemon thread."""
        threading.Thread(target=self.run, name="agent-log-reader", daemon=True).start()

    def run(self) -> None:
        """Read and feed until end of file (then :meth:`LogSink.finish`) or a stop."""
        try:
            assert self._wake is not None
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            poller.register(self._wake, select.POLLIN)
            while not self._stop.is_set():
                try:
                    data = os.read(self._fd, self._chunk)
                except BlockingIOError:
                    poller.poll()
                    continue
                if not data:
                    self._sink.finish()
                    return
                began = time.thread_time()
                self._sink.feed(data)
                crowded = self._crowded is None or self._crowded()
                pause = reader_pause(time.thread_time() - began, crowded)
                if pause:  # a big block: let the others in before the next
                    time.sleep(pause)
        except BaseException as exc:  # handed to the awaiting task by pump()
            self.error = exc
        finally:
            with self._lock:
                if self._wake is not None:
                    os.close(self._wake)
                    self._wake = None
            self.done.set()

    def stop(self) -> None:
        """Make :meth:`run` return after the block it is in (harmless once it has)."""
        self._stop.set()
        with self._lock:
            if self._wake is not None:
                os.eventfd_write(self._wake, 1)


async def pump(
    fd: int, sink: LogSink, chunk: int = CHUNK, crowded: Callable[[], bool] | None = None
) -> None:
    """Read the non-blocking pipe ``fd`` into ``sink`` until end of file.

    The reading, filtering and writing run in a thread of their own
    (:class:`PipeReader`), so a job printing without pause cannot starve the event
    loop, and it yields the CPU while ``crowded()`` (:func:`reader_pause`). The first
    few small reads happen on the event loop (:func:`read_on_loop`): a job that ends
    with little or no output needs no thread. Cancelled, it stops the thread and waits
    for it (the sink is then the caller's alone). Does not close ``fd``; calls
    :meth:`LogSink.finish` at end of file.
    """
    if await read_on_loop(fd, sink):
        return
    reader = PipeReader(fd, sink, chunk, crowded)
    limiter = anyio.CapacityLimiter(1)  # not the shared pool: one per running job
    reader.start()
    try:
        await anyio.to_thread.run_sync(reader.done.wait, abandon_on_cancel=True, limiter=limiter)
    finally:
        if not reader.done.is_set():
            reader.stop()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(reader.done.wait, limiter=limiter)
    if reader.error is not None:
        raise reader.error


async def read_on_loop(fd: int, sink: LogSink) -> bool:
    """Read the non-blocking pipe ``fd`` into ``sink`` on the event loop for at most
    :data:`LOOP_READS` reads of at most :data:`LOOP_READ_SIZE` bytes; True when it
    reached end of file (and called :meth:`LogSink.finish`), False when the output goes
    on or came in a full read (the reader thread takes over)."""
    for _ in range(LOOP_READS):
        await anyio.wait_readable(fd)
        try:
            data = os.read(fd, LOOP_READ_SIZE)
        except BlockingIOError:
            continue
        if not data:
            sink.finish()
            return True
        sink.feed(data)
        if len(data) == LOOP_READ_SIZE:
            return False
    return False
