"""`agent run-once` on a terminal: the progress bar and log tail, drawn from a thread."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

from agent.commands.console import ProgressConsole
from agent.progress import ProgressTracker


class Terminal(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.drawn = threading.Event()

    def flush(self) -> None:
        self.drawn.set()


def test_bar_and_tail_are_drawn_and_the_thread_ends() -> None:
    terminal = Terminal()
    console = ProgressConsole(terminal, enabled=True)
    tracker = ProgressTracker(interval=1.0)
    tracker.feed_line("compiling")
    tracker.feed_line("##agent progress 42%")
    console.started(7, SimpleNamespace(tracker=tracker))  # type: ignore[arg-type]
    assert terminal.drawn.wait(5)
    console.close()
    text = terminal.getvalue()
    assert "job 7 [" in text and "42.0%" in text
    assert "compiling" in text


def test_nothing_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    console = ProgressConsole.for_stream(stream)
    console.started(1, SimpleNamespace(tracker=ProgressTracker(1.0)))  # type: ignore[arg-type]
    console.close()
    assert stream.getvalue() == ""
