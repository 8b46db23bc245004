"""Masking that holds: a job's own secrets, short literals, and secrets at the cut of a
long line or at a pipe chunk edge.

The sink tests feed real bytes through :class:`~executors.logsink.LogSink` with the
agent's real :class:`~agent.redact.Redactor`; the end-to-end test runs a real job
through the agent against both servers (``any_server``) and reads what they stored."""

from __future__ import annotations

import io
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.commands.check import Level, check_password
from agent.config import DEFAULT_REDACT, load_config
from agent.logs import bind_job_redactor, configure_logging
from agent.outcome import EndReason
from agent.redact import MASK, PATTERN_REACH, Redactor, job_secrets
from executors.logsink import CHUNK, MAX_LINE, LogSink, secret_safe_cut
from tests.agent_harness import Harness, harness
from tests.servers import ServerUnderTest

LITERAL = "Zq9-v4lu3-Zq9-Kp"
"""A job secret (an env value), masked as a literal."""
SPACED = "Zq9 v4lu3 Zq9 Kp"
"""A literal with blanks in it: a cut between words would split it."""
TOKEN_VALUE = "abcdefgh123"
PATTERN_FORM = f"API_TOKEN={TOKEN_VALUE} "
"""Masked by the default ``run.redact`` patterns alone (keyword and value)."""

FORMS = {
    "literal": (LITERAL, LITERAL, [LITERAL]),
    "spaced": (SPACED, SPACED, [SPACED]),
    "pattern": (PATTERN_FORM, TOKEN_VALUE, []),
}
"""form -> (text placed in the line, what must never show, literal secrets)."""


# ------------------------------------------------------------------ which secrets


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"API_TOKEN": "abcdefgh123"}, ["abcdefgh123"]),
        ({"db_password": "correct-horse"}, ["correct-horse"]),
        ({"MY_API_KEY": "k-12345678"}, ["k-12345678"]),
        (
            {"SSH_PRIVATE_KEY": "l1-abcdefgh\nl2-abcdefgh"},
            ["l1-abcdefgh\nl2-abcdefgh", "l1-abcdefgh", "l2-abcdefgh"],
        ),
        ({"AUTH": "Bearer abcdefghijkl"}, ["Bearer abcdefghijkl"]),  # a pattern matches
        ({"OPTS": "--password=hunter2-long"}, ["--password=hunter2-long"]),
        ({"API_TOKEN": "short"}, []),  # left to the patterns
        ({"GREETING": "hello world", "PATH": "/usr/bin:/bin"}, []),
        ({"SECRET": ""}, []),
    ],
)
def test_job_secrets(env: dict[str, str], expected: list[str]) -> None:
    assert job_secrets(env, DEFAULT_REDACT) == expected


def test_short_literals_are_not_masked_as_bare_words() -> None:
    redactor = Redactor(DEFAULT_REDACT, secrets=["node"])
    text = "node 3 is up; login node with password=node"
    assert redactor.redact(text) == f"node 3 is up; login node with password={MASK}"


def test_a_job_redactor_adds_its_secrets_and_follows_the_agents() -> None:
    agent = Redactor(DEFAULT_REDACT, secrets=["agent-password"])
    job = agent.with_secrets(["job-secret-1"])
    agent.add_secret("token-added-later")
    text = "agent-password job-secret-1 token-added-later"
    assert job.redact(text) == f"{MASK} {MASK} {MASK}"
    assert agent.redact(text) == f"{MASK} job-secret-1 {MASK}"  # nothing piles up in it
    other = job.with_secrets(["job-secret-2"])
    assert other.redact("job-secret-1 job-secret-2") == f"{MASK} {MASK}"
    # A job secret inside the agent's password does not leave parts of it around.
    inner = Redactor([], secrets=["super-agent-password"]).with_secrets(["agent-pa"])
    assert inner.redact("super-agent-password") == MASK


def test_a_job_redactor_without_secrets_of_its_own_masks_the_agents() -> None:
    agent = Redactor(DEFAULT_REDACT, secrets=["agent-password"])
    job = agent.for_job({"PATH": "/usr/bin"})  # no secret variable
    agent.add_secret("token-added-later")
    text = "agent-password token-added-later API_TOKEN=abcdefgh123"
    assert job.redact(text) == f"{MASK} {MASK} API_TOKEN={MASK}"
    assert job.may_hold_secret(b"... token-added-later ...")
    assert not job.may_hold_secret(b"nothing to see")
    assert job.reach == agent.reach
    # A secret given to the job later stays the job's.
    job.add_secret("job-secret-1")
    assert job.redact("job-secret-1 agent-password") == f"{MASK} {MASK}"
    assert agent.redact("job-secret-1") == "job-secret-1"


def test_spans_keep_keyword_and_value_together() -> None:
    redactor = Redactor(DEFAULT_REDACT, secrets=[LITERAL])
    text = f"a {LITERAL} b API_TOKEN={TOKEN_VALUE} c"
    start = text.index(LITERAL)
    assert (start, start + len(LITERAL)) in redactor.spans(text)
    assert (text.index("TOKEN="), text.index(" c")) in redactor.spans(text)
    assert redactor.reach == PATTERN_REACH
    assert Redactor([], secrets=["é" * 3000]).reach == 6000  # bytes


def test_check_warns_about_a_short_password(tmp_path: Path) -> None:
    weak = load_config(None, overrides={"server": {"password": "node"}})
    finding = check_password(weak)
    assert finding is not None and finding.level is Level.WARN
    assert "not masked" in finding.text and "node" not in finding.text
    strong = load_config(None, overrides={"server": {"password": "a-long-password"}})
    assert check_password(strong) is None


# ------------------------------------------------------------------ the cut


@pytest.mark.parametrize(
    ("data", "cut", "expected"),
    [
        (b"x" * 10 + LITERAL.encode() + b"y", 12, 10),  # moved back to the secret's start
        (LITERAL.encode() + b"yyyy", 4, len(LITERAL)),  # from 0: kept whole, piece longer
        (b"x" * 10 + b"API_TOKEN=abc ", 16, 14),  # keyword and value stay together
        (b"x" * 20, 12, 12),  # nothing there
    ],
)
def test_secret_safe_cut(data: bytes, cut: int, expected: int) -> None:
    assert secret_safe_cut(data, cut, Redactor(DEFAULT_REDACT, secrets=[LITERAL])) == expected


def feed_sink(
    tmp_path: Path, data: bytes, chunks: list[int], max_line: int, redactor: Redactor
) -> tuple[bytes, list[str]]:
    """``data`` fed in pieces of the sizes in ``chunks`` (then :data:`CHUNK`, as the pipe
    reads); the file's bytes and the callback's lines."""
    lines: list[str] = []
    log = tmp_path / "job.log"
    log.unlink(missing_ok=True)
    sizes = iter(chunks)
    with LogSink(
        log,
        1 << 30,
        on_line=lines.append,
        line_filter=redactor.redact,
        max_line=max_line,
        secret_finder=redactor,
    ) as sink:
        rest = data
        while rest:
            size = next(sizes, CHUNK)
            sink.feed(rest[:size])
            rest = rest[size:]
        sink.finish()
    return log.read_bytes(), lines


def filler(rng: random.Random, size: int, blanks: int) -> str:
    """``size`` characters of ``x``; with ``blanks`` > 0, a blank about every that many."""
    if blanks == 0:
        return "x" * size
    return "".join(" " if rng.randrange(blanks) == 0 else "x" for _ in range(size))


def check_never_shows(
    tmp_path: Path,
    max_line: int,
    form: str,
    boundary: int,
    shift: int,
    blanks: int,
    tail: int,
    chunking: str,
    seed: int,
    split: int = 1,
) -> None:
    """A secret starting ``shift`` characters before ``boundary`` (so it straddles it
    for 0 < shift < its length), in filler; fed in pipe reads (:data:`CHUNK`), in random
    pieces, or with the first read ending ``split`` characters into the secret."""
    placed, hidden, literals = FORMS[form]
    redactor = Redactor(DEFAULT_REDACT, secrets=literals)
    rng = random.Random(seed)
    start = max(0, boundary - shift)
    line = filler(rng, start, blanks) + placed + filler(rng, tail, blanks)
    data = (line + ("\n" if seed % 2 else "")).encode()
    if chunking == "at-secret":  # a pipe read ends inside the secret
        chunks = [start + 1 + split % (len(placed) - 1)]
    elif chunking == "random":
        chunks = [rng.randrange(1, 2 * max_line) for _ in range(40)]
    else:
        chunks = []
    content, lines = feed_sink(tmp_path, data, chunks, max_line, redactor)
    # Pieces of a cut line are consecutive lines: joined, a split secret would show.
    assert hidden.encode() not in content.replace(b"\n", b"")
    assert hidden not in "".join(lines)
    assert all(len(piece.encode()) <= max_line + redactor.reach for piece in lines)


SMALL = 64
T = TypeVar("T")


def at_cut(
    form: str,
    *,
    shift: int,
    tail: int,
    chunking: str = "pipe",
    blanks: int = 0,
    seed: int = 1,
    split: int = 1,
) -> Callable[[T], T]:
    """An explicit example of the real-cut test (odd seeds end the line with a newline)."""
    return example(
        form=form,
        boundary=MAX_LINE,
        shift=shift,
        blanks=blanks,
        tail=tail,
        chunking=chunking,
        seed=seed,
        split=split,
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    form=st.sampled_from(sorted(FORMS)),
    boundary=st.sampled_from([SMALL, 2 * SMALL, SMALL + PATTERN_REACH, 2 * SMALL + PATTERN_REACH]),
    shift=st.integers(min_value=-1, max_value=len(PATTERN_FORM) + 1),
    blanks=st.sampled_from([0, 3, 20]),
    tail=st.integers(min_value=0, max_value=SMALL + PATTERN_REACH + 100),
    chunking=st.sampled_from(["pipe", "at-secret", "random"]),
    seed=st.integers(min_value=0, max_value=1 << 16),
    split=st.integers(min_value=0, max_value=len(PATTERN_FORM)),
)
def test_a_secret_never_shows_small_lines(
    tmp_path: Path,
    form: str,
    boundary: int,
    shift: int,
    blanks: int,
    tail: int,
    chunking: str,
    seed: int,
    split: int,
) -> None:
    check_never_shows(tmp_path, SMALL, form, boundary, shift, blanks, tail, chunking, seed, split)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    form=st.sampled_from(sorted(FORMS)),
    boundary=st.sampled_from([MAX_LINE, CHUNK, MAX_LINE + PATTERN_REACH]),
    shift=st.integers(min_value=-1, max_value=len(PATTERN_FORM) + 1),
    blanks=st.sampled_from([0, 50]),
    tail=st.integers(min_value=0, max_value=MAX_LINE + PATTERN_REACH + 100),
    chunking=st.sampled_from(["pipe", "at-secret"]),
    seed=st.integers(min_value=0, max_value=1 << 16),
    split=st.integers(min_value=0, max_value=len(PATTERN_FORM)),
)
# The exact offsets around the cut (and the pipe read edge, also at 64 KiB): the secret
# just before, straddling by one, just after; ending the line there or going on; the
# first pipe read ending inside it, past the cut.
@at_cut("pattern", shift=6, tail=10)  # API_TO|KEN=..., the reported leak
@at_cut("pattern", shift=1, tail=10, seed=0)
@at_cut("pattern", shift=len(PATTERN_FORM) - 1, tail=0)
@at_cut("pattern", shift=6, tail=70000, chunking="at-secret", split=9)
@at_cut("literal", shift=1, tail=0)
@at_cut("literal", shift=0, tail=5)
@at_cut("literal", shift=-1, tail=5, seed=0)
@at_cut("literal", shift=len(LITERAL) - 1, tail=70000, seed=0)
@at_cut("literal", shift=len(LITERAL), tail=9)
@at_cut("literal", shift=len(LITERAL) + 1, tail=9)
@at_cut("literal", shift=3, tail=70000, chunking="at-secret", split=8)
@at_cut("spaced", shift=5, tail=70000, chunking="at-secret", blanks=50, seed=0)
def test_a_secret_never_shows_at_the_real_cut(
    tmp_path: Path,
    form: str,
    boundary: int,
    shift: int,
    blanks: int,
    tail: int,
    chunking: str,
    seed: int,
    split: int,
) -> None:
    check_never_shows(
        tmp_path, MAX_LINE, form, boundary, shift, blanks, tail, chunking, seed, split
    )


def test_the_reported_leak_is_closed(tmp_path: Path) -> None:
    """``'x' * 65530 + 'API_TOKEN=<value>'`` used to be cut into ``…API_TO`` + ``KEN=…``."""
    data = ("x" * 65530 + f"API_TOKEN={TOKEN_VALUE}").encode()
    for chunks in ([], [65536], [65535, 3]):
        content, lines = feed_sink(tmp_path, data, chunks, MAX_LINE, Redactor(DEFAULT_REDACT))
        assert TOKEN_VALUE not in "".join(lines)
        assert content.replace(b"\n", b"").endswith(f"API_TOKEN={MASK}".encode())


def test_memory_stays_flat_with_a_finder(tmp_path: Path) -> None:
    """A line without end is still handed on in pieces: held back at most the reach."""
    redactor = Redactor(DEFAULT_REDACT, secrets=[LITERAL])
    lines: list[str] = []
    with LogSink(
        tmp_path / "log",
        1 << 30,
        on_line=lines.append,
        line_filter=redactor.redact,
        secret_finder=redactor,
    ) as sink:
        for fed in range(1, 41):
            sink.feed(b"y" * CHUNK)
            held = fed * CHUNK - sum(len(line) for line in lines)
            assert held <= MAX_LINE + redactor.reach
        sink.finish()
    assert sum(len(line) for line in lines) == 40 * CHUNK


# ------------------------------------------------------------------ a real job


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


JOB_SECRET = "Tok3n-4bcdefgh"
SECRET_JOB = (
    'echo "token is $API_TOKEN"; '
    # the keyword+value form straddling the 64 KiB cut (API_TO|KEN), then the bare value
    "head -c 65530 /dev/zero | tr '\\0' x; echo \"API_TOKEN=$API_TOKEN end\"; "
    "head -c 65531 /dev/zero | tr '\\0' x; echo \"$API_TOKEN\"; "
    'echo "step progress 50% $API_TOKEN"; '
    "sleep 1"
)


@pytest.mark.anyio
async def test_a_jobs_secret_never_reaches_the_server(h: Harness) -> None:
    output_name = f"report-{JOB_SECRET}"  # its error text carries the secret
    job = await h.submit(
        {
            "command": SECRET_JOB,
            "envVars": {"API_TOKEN": JOB_SECRET},
            "progressRegex": "step progress (\\d+)%",
            "hardware": {"coresPerSlot": 1},
        },
        [{"name": output_name, "type": "txt", "path": "report.txt"}],
    )
    buffer = io.StringIO()
    settings_ = h.settings()
    configure_logging("json", "info", Redactor(settings_.run.redact, [settings_.password]), buffer)
    try:
        reports = await h.run_until_idle(settings_)
    finally:
        configure_logging("console", "warning")
    assert [r.outcome.reason for r in reports] == [EndReason.OUTPUT_MISSING]

    final = await h.job(job)
    assert final.phase == "ERRORED" and final.error_reason is not None
    assert JOB_SECRET not in final.error_reason and f"report-{MASK}" in final.error_reason
    log = await h.output(job, "log", "str")
    assert JOB_SECRET.encode() not in log.replace(b"\n", b"")
    assert f"token is {MASK}".encode() in log and f"TOKEN={MASK} end".encode() in log
    assert JOB_SECRET not in buffer.getvalue()
    ended = [json.loads(line) for line in buffer.getvalue().splitlines() if "job ended" in line]
    assert ended and f"report-{MASK}" in ended[-1]["error"]
    if h.server.devserver is not None:  # the request bodies only the reference server keeps
        sent = [r for r in h.devserver.request_log() if r.path.startswith(f"/v1/jobs/{job}/")]
        assert all(JOB_SECRET.encode() not in r.body for r in sent)
        progress = [json.loads(r.body) for r in sent if "/progress/" in r.path and r.body]
        assert any(MASK in body.get("message", "") for body in progress)
        assert any(f"token is {MASK}" in body.get("log_tail", "") for body in progress)


def test_log_lines_of_a_job_task_use_its_redactor() -> None:
    buffer = io.StringIO()
    agent = Redactor(DEFAULT_REDACT, secrets=["agent-password"])
    configure_logging("json", "info", agent, stream=buffer)
    try:
        bind_job_redactor(agent.with_secrets([JOB_SECRET]))
        structlog.get_logger("test").info("job ended", error=f"output 'x-{JOB_SECRET}' missing")
        bind_job_redactor(None)
        structlog.get_logger("test").info("other", detail="agent-password")
    finally:
        configure_logging("console", "warning")
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["error"] == f"output 'x-{MASK}' missing"
    assert second["detail"] == MASK
