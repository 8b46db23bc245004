from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agent.progress import (
    ProgressTracker,
    parse_agent_line,
    parse_regex_line,
    read_fraction,
    read_progress_file,
)
from agent.server import format_progress


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("##agent progress 0.42", 0.42),
        ("##agent progress 42%", 0.42),
        ("  ##agent progress 42 %  ", 0.42),
        ("##agent progress 1", 1.0),
        ("##agent progress 1.0", 1.0),
        ("##agent progress 150%", 1.0),
        ("##agent progress 75", 0.75),
        ("##agent progress 1e-05", 1e-05),
        ("##agent progress abc", None),
        ("progress 0.5", None),
        ("##agent progress 0.5 extra", None),
    ],
)
def test_agent_lines(line: str, value: float | None) -> None:
    assert parse_agent_line(line) == (pytest.approx(value) if value is not None else None)


def test_regex_progress_group_and_percent() -> None:
    named = re.compile(r"step (?P<progress>\d+)/100")
    assert parse_regex_line("step 30/100", named) == pytest.approx(0.30)
    plain = re.compile(r"done: ([0-9.]+)")
    assert parse_regex_line("done: 0.25", plain) == pytest.approx(0.25)
    assert parse_regex_line("done: 25%", plain) == pytest.approx(0.25)
    assert parse_regex_line("nothing here", plain) is None


def test_progress_file(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    assert read_progress_file(path) is None
    path.write_text("0.6\n")
    assert read_progress_file(path) == pytest.approx(0.6)
    path.write_text("60%")
    assert read_progress_file(path) == pytest.approx(0.6)
    path.write_text("garbage")
    assert read_progress_file(path) is None


def test_fractions_are_clamped() -> None:
    assert read_fraction("-1") is None
    assert read_fraction("250") == 1.0
    assert read_fraction("nan") is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0.0000"),
        (1, "1.0"),
        (1e-05, "0.0000"),
        (0.42, "0.4200"),
        (0.99999, "1.0"),
        (float("nan"), "0.0000"),
        (-3, "0.0000"),
        (7, "1.0"),
    ],
)
def test_progress_values_the_server_accepts(value: float, text: str) -> None:
    formatted = format_progress(value)
    assert formatted == text
    assert re.fullmatch(r"(0.[0-9]+)|(1.(0)+)", formatted)


def test_posts_are_coalesced_with_keepalive() -> None:
    tracker = ProgressTracker(interval=5.0, keepalive=30.0)
    first = tracker.due(0.0)
    assert first is not None and first.value == 0.0
    tracker.feed_line("##agent progress 10%")
    tracker.feed_line("##agent progress 20%")
    assert tracker.due(1.0) is None  # within the interval: coalesced
    second = tracker.due(5.0)
    assert second is not None and second.value == pytest.approx(0.2)
    assert tracker.due(11.0) is None  # nothing changed: wait for the keep-alive
    keepalive = tracker.due(35.0)
    assert keepalive is not None and keepalive.value == pytest.approx(0.2)


def test_progress_never_goes_back_and_tail_is_bounded() -> None:
    tracker = ProgressTracker(interval=1.0)
    tracker.feed_line("##agent progress 0.5")
    tracker.feed_line("##agent progress 0.3")
    assert tracker.value == 0.5
    for index in range(100):
        tracker.feed_line(f"line {index} " + "x" * 1000)
    post = tracker.due(0.0)
    assert post is not None
    assert post.body["log_tail"].endswith("x")
    assert len(post.body["log_tail"]) <= 4000
    assert "line 99" in post.body["log_tail"]


def test_a_fifo_as_progress_file_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "progress"
    os.mkfifo(path)
    assert read_progress_file(path) is None
    path.unlink()
    os.symlink("/dev/zero", path)
    assert read_progress_file(path) is None


def test_only_a_regular_progress_file_is_read(tmp_path: Path) -> None:
    """A symlink is not followed even to a number; a directory counts as nothing."""
    number = tmp_path / "number"
    number.write_text("0.7")
    path = tmp_path / "progress"
    os.symlink(number, path)
    assert read_progress_file(path) is None
    path.unlink()
    path.mkdir()
    assert read_progress_file(path) is None
