"""Progress of a running job: parsed from its output and its progress file.

Sources, in the order they win: ``##agent progress 0.42`` / ``##agent progress 42%``
lines, an analysis ``progressRegex`` (first group, or the group named ``progress``;
a number ≤ 1 is a fraction, with ``%`` or above 1 a percent), and a number written to
``$AGENT_PROGRESS_FILE`` (same reading). Values are clamped to 0..1 and never go
backwards: a job that restarts a phase does not make the server's bar jump back.

:class:`ProgressTracker` is fed lines by the executor's log reader (a thread of its
own; a block of lines at a time when nothing in them is a progress line) and answers
:meth:`ProgressTracker.due` with what to post, if anything; the job runner does the
posting, so the coalescing rule is plain code with ``now`` as an argument.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executors.safefiles import read_regular

AGENT_LINE = re.compile(
    r"^\s*##agent\s+progress\s+(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?\s*$"
)
NUMBER = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?\s*$")
KEEPALIVE_SECONDS = 30.0
"""With no change, one post this often (or every progress interval, if that is longer)."""
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 4000
MESSAGE_CHARS = 500
PROGRESS_FILE_BYTES = 64
"""How much of ``$AGENT_PROGRESS_FILE`` is read: a number fits."""


def read_fraction(text: str, percent: bool = False) -> float | None:
    """``0.42`` → 0.42, ``42`` or ``42%`` → 0.42; None when not a finite number."""
    match = NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group("value"))
    if not math.isfinite(value):
        return None
    if percent or match.group("pct") or value > 1:
        value /= 100
    return min(max(value, 0.0), 1.0)


def parse_agent_line(line: str) -> float | None:
    """The value of a ``##agent progress`` line, or None if ``line`` is not one."""
    match = AGENT_LINE.match(line)
    if match is None:
        return None
    return read_fraction(match.group("value"), percent=bool(match.group("pct")))


def compile_progress_regex(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def parse_regex_line(line: str, pattern: re.Pattern[str]) -> float | None:
    match = pattern.search(line)
    if match is None:
        return None
    group = "progress" if "progress" in pattern.groupindex else (1 if pattern.groups else 0)
    captured = match.group(group)
    if captured is None:
        return None
    percent = line[match.end(group) : match.end(group) + 1] == "%"
    return read_fraction(captured, percent=percent)


def read_progress_file(path: Path) -> float | None:
    """The number in the job's progress file, if it holds one.

    The job controls that path: only a regular file is read, without blocking (a FIFO
    there must not stall the agent), without following a symlink (``/dev/zero``,
    another user's file) and only its first bytes; anything else counts as no number.
    """
    try:
        text = read_regular(path, PROGRESS_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:  # missing, unreadable, or no regular file (UnsafeFile)
        return None
    return read_fraction(text.strip()) if text.strip() else None


def _line_head(data: bytes, start: int, end: int) -> str:
    """The line ``data[start:end]`` as the tail keeps it: decoded, without its ``\r``,
    at most :data:`MESSAGE_CHARS` characters (only that many bytes are decoded)."""
    limit = 4 * MESSAGE_CHARS + 1  # bytes holding that many characters, and one more
    if end - start > limit:
        return data[start : start + limit].decode("utf-8", errors="replace")[:MESSAGE_CHARS]
    line = data[start:end].decode("utf-8", errors="replace")
    return line.removesuffix("\r")[:MESSAGE_CHARS]


@dataclass(frozen=True)
class ProgressPost:
    value: float
    body: dict[str, Any]


class ProgressTracker:
    """Holds the latest progress, message and log tail; decides when to post."""

    def __init__(
        self, interval: float, regex: str | None = None, keepalive: float = KEEPALIVE_SECONDS
    ) -> None:
        self.interval = interval
        self.keepalive = max(keepalive, interval)
        self._regex = compile_progress_regex(regex)
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.value = 0.0
        self.message = "started"
        self._changed = True
        self._last_post: float | None = None
        self.posts = 0
        self._lock = threading.RLock()
        """The log reader's thread feeds lines while the event loop asks :meth:`due`."""

    def feed_lines(self, data: bytes) -> None:
        """Called with several lines the job printed (UTF-8), joined by ``\n``.

        Without a progress regex, only a block with ``##agent`` in it can hold a
        progress line: any other block only refreshes the log tail with its last lines
        (and only those are decoded).
        """
        if self._regex is not None or (b"#" in data and b"##agent" in data):
            with self._lock:
                for line in data.decode("utf-8", errors="replace").split("\n"):
                    self._feed_line(line.removesuffix("\r"))
            return
        last: list[str] = []
        end = len(data)
        while len(last) < LOG_TAIL_LINES:  # not rsplit: it would copy all the rest too
            start = data.rfind(b"\n", 0, end) + 1
            last.append(_line_head(data, start, end))
            if start == 0:
                break
            end = start - 1
        with self._lock:
            self._tail.extend(reversed(last))

    def feed_line(self, line: str) -> None:
        """Called for every line the job prints."""
        with self._lock:
            self._feed_line(line)

    def _feed_line(self, line: str) -> None:
        value = parse_agent_line(line)
        if value is None and self._regex is not None:
            value = parse_regex_line(line, self._regex)
        if value is not None:
            self._update(value, line.strip()[:MESSAGE_CHARS])
        else:
            self._tail.append(line[:MESSAGE_CHARS])

    def update(self, value: float, message: str | None = None) -> None:
        with self._lock:
            self._update(value, message)

    def _update(self, value: float, message: str | None) -> None:
        if value > self.value:
            self.value = value
            self._changed = True
        if message is not None and message != self.message:
            self.message = message
            self._changed = True

    def log_tail(self) -> str:
        with self._lock:
            text = "\n".join(self._tail)
        return text[-LOG_TAIL_CHARS:]

    def due(self, now: float) -> ProgressPost | None:
        """What to post at ``now``: a change at most once per interval, else a keep-alive."""
        with self._lock:
            return self._due(now)

    def _due(self, now: float) -> ProgressPost | None:
        since = None if self._last_post is None else now - self._last_post
        if since is not None:
            if since < self.interval:
                return None
            if not self._changed and since < self.keepalive:
                return None
        self._last_post = now
        self._changed = False
        self.posts += 1
        return ProgressPost(self.value, {"message": self.message, "log_tail": self.log_tail()})

    def next_due(self, now: float) -> float:
        """Seconds until :meth:`due` may have something (for the poster's sleep)."""
        if self._last_post is None:
            return 0.0
        wait = self.interval if self._changed else self.keepalive
        return max(0.0, self._last_post + wait - now)
