"""``agent run-once`` on a terminal: a live progress bar and the log tail.

Off a terminal it draws nothing: the structured log lines say what happens.
"""

from __future__ import annotations

import shutil
import threading
from typing import TextIO

from agent.execution import Execution
from agent.jobrun import JobReport

TAIL_LINES = 5
REFRESH_SECONDS = 0.25


class ProgressConsole:
    """A :class:`~agent.jobrun.JobObserver` that redraws from a small thread."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0

    @classmethod
    def for_stream(cls, stream: TextIO) -> ProgressConsole:
        return cls(stream, stream.isatty())

    def started(self, job: int, execution: Execution) -> None:
        if not self._enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(job, execution), daemon=True)
        self._thread.start()

    def ended(self, report: JobReport) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def _loop(self, job: int, execution: Execution) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self._draw(job, execution)
        self._draw(job, execution)
        self._stream.write("\n")

    def _draw(self, job: int, execution: Execution) -> None:
        width = max(20, shutil.get_terminal_size((80, 20)).columns - 1)
        tracker = execution.tracker
        bar_width = max(10, width - 30)
        filled = int(tracker.value * bar_width)
        head = f"job {job} [{'#' * filled}{'.' * (bar_width - filled)}] {tracker.value:6.1%}"
        tail = tracker.log_tail().splitlines()[-TAIL_LINES:]
        lines = [head[:width]] + [f"  {line}"[:width] for line in tail]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)
