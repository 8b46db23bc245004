"""The needle screen in front of redaction: when it says a text holds no secret, the
patterns and literals would indeed change nothing in it, line by line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.config import DEFAULT_REDACT
from agent.needles import pattern_needles, screen_for
from agent.progress import ProgressTracker
from agent.redact import Redactor
from executors.logsink import LogSink, lines_within

LITERAL = "Zq9-v4lu3-Zq9-Kp"

PIECES = [
    "x",
    " ",
    "\n",
    "\r",
    "=",
    ":",
    "é",
    "\u0131",  # dotless i: (?i)api matches "AP\u0131"
    "\u017f",  # long s: (?i)secret matches "\u017fecret"
    "\u0130",  # dotted capital I
    "\u212a",  # Kelvin sign: (?i)token matches "to\u212aen"
    "PassWord",
    "passwd",
    "SECRET",
    "tok",
    "en",
    "ToKeN",
    "api_key",
    "Api-Key",
    "AP",
    "bearer ",
    "Bearer",
    "abcdefgh123",
    "Zq9-v4lu3",
    "-Zq9-Kp",
    LITERAL,
    "##agent progress 0.5",
]

texts = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        (DEFAULT_REDACT[0], {"password", "passwd", "secret", "token", "api"}),
        (DEFAULT_REDACT[1], {"bearer"}),
        (r"AKIA[0-9A-Z]{16}", {"AKIA"}),
        (r"(?i)foo(bar|baz)", {"foo"}),
        (r"\d+", None),  # no literal in every match
        (r"x*", None),  # matches nothing too
        (r"(?i)caf\u00e9=\S+", None),  # ignoring case beyond ASCII: not folded
        (r"(?:ab|c)\S+", {"ab", "c"}),  # short, but still exact
    ],
)
def test_pattern_needles(pattern: str, needles: set[str] | None) -> None:
    found = pattern_needles(re.compile(pattern))
    assert found == (frozenset(needles) if needles is not None else None)


def test_a_pattern_without_needles_makes_the_screen_say_maybe() -> None:
    screen = screen_for([re.compile(r"\d{6,}")], [])
    assert not screen.complete
    assert screen.may_hold(b"nothing here")


@settings(max_examples=400, deadline=None)
@given(text=texts)
@example(text="AP\u0131_KEY=abcdefgh123")
@example(text="\u017fecret: abcdefgh123")
@example(text="to\u212aen=abcdefgh123")
def test_a_text_the_screen_passes_has_nothing_to_mask(text: str) -> None:
    redactor = Redactor(DEFAULT_REDACT, secrets=[LITERAL]).with_secrets(["job-secret-1"])
    for data in (text.encode(), text.encode() + b"\xff"):
        if redactor.may_hold_secret(data):
            continue
        decoded = data.decode("utf-8", errors="replace")
        assert redactor.spans(decoded) == []
        for line in decoded.split("\n"):
            assert redactor.redact(line) == line


class Unscreened:
    """The redactor as a finder whose screen always says "maybe": the sink then filters
    every line, as it did before the screen."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self._redactor.spans(text)

    @property
    def reach(self) -> int:
        return self._redactor.reach

    def may_hold_secret(self, data: bytes) -> bool:
        return True


def feed(path: Path, data: bytes, size: int, redactor: Redactor, fast: bool) -> list[str]:
    """The sink's lines; ``fast``: with the redactor's screen, else without."""
    lines: list[str] = []
    with LogSink(
        path,
        1 << 30,
        on_line=lines.append,
        line_filter=redactor.redact,
        max_line=64,
        secret_finder=redactor if fast else Unscreened(redactor),
    ) as sink:
        for at in range(0, len(data), size):
            sink.feed(data[at : at + size])
        sink.finish()
    return lines


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(texts, max_size=30),
    size=st.integers(min_value=1, max_value=300),
    ending=st.sampled_from(["", "\n"]),
)
def test_blocks_give_what_lines_give(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], size: int, ending: str
) -> None:
    """Screened blocks and the plain line-by-line filter write the same log and hand on
    the same lines, for any chunking (secrets, bad bytes, long lines included)."""
    redactor = Redactor(DEFAULT_REDACT, secrets=[LITERAL])
    data = ("\n".join(lines) + ending).encode() + (b"\xfe\n" if size % 3 == 0 else b"")
    folder = tmp_path_factory.mktemp("sink")
    slow = feed(folder / "slow.log", data, size, redactor, fast=False)
    fast = feed(folder / "fast.log", data, size, redactor, fast=True)
    slow_bytes = (folder / "slow.log").read_bytes()
    fast_bytes = (folder / "fast.log").read_bytes()
    assert fast_bytes == slow_bytes
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(texts, max_size=60), regex=st.sampled_from([None, r"step (\d+)%"]))
def test_a_block_of_lines_tracks_like_the_lines(lines: list[str], regex: str | None) -> None:
    one, block = ProgressTracker(1.0, regex), ProgressTracker(1.0, regex)
    text = "\n".join(line.replace("\n", " ") for line in lines)
    for line in text.split("\n"):
        one.feed_line(line.removesuffix("\r"))
    block.feed_lines(text.encode())
    assert (block.value, block.message, block.log_tail()) == (
        one.value,
        one.message,
        one.log_tail(),
    )


@pytest.mark.parametrize(
    ("data", "limit", "expected"),
    [
        (b"", 4, True),
        (b"abcd\nabcd", 4, True),
        (b"abcde\nab", 4, False),
        (b"ab\nabcde", 4, False),
        (b"ab\nab\nab\nab\nabcd", 4, True),
        (b"abcd\n\nabcdx", 4, False),
    ],
)
def test_lines_within(data: bytes, limit: int, expected: bool) -> None:
    assert lines_within(data, limit) is expected
    assert expected is all(len(line) <= limit for line in data.split(b"\n"))
