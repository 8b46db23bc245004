"""Masking of secrets in text the agent sends or prints.

Two kinds of secret: literal values (the agent's password and tokens, the values of a
job's secret variables) and ``run.redact`` patterns. A pattern with a named group
``secret`` masks only that group (``password=****``); without one it masks the whole
match. A literal shorter than :data:`MIN_LITERAL_LENGTH` is not masked as a bare
substring (it would blank every such word); the patterns still mask it after a keyword.

One :class:`Redactor` serves the whole agent; :meth:`Redactor.with_secrets` gives a job
its own, which sees the agent's literals (also ones added later) plus the job's, so a
job's secrets never pile up in the agent-wide one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence

from agent.needles import Screen, screen_for
from executors.env import is_credential

MASK = "****"
MIN_LITERAL_LENGTH = 8
"""Shorter literal values are not masked as bare substrings: masking every "node" would
wreck the text. A ``run.redact`` pattern still masks them after a keyword."""

PATTERN_REACH = 4 * 1024
"""Bytes past a cut in which a pattern match that straddles it is looked for."""


class Redactor:
    """Masks literal secrets and pattern matches; safe to share between threads."""

    def __init__(self, patterns: Sequence[str] = (), secrets: Iterable[str] = ()) -> None:
        self._patterns = [re.compile(pattern) for pattern in patterns]
        self._parent: Redactor | None = None
        self._lock = threading.Lock()
        self._literals: frozenset[str] = frozenset()
        """This redactor's own literals (a child's parent holds the agent's)."""
        self._cache: tuple[object, object, re.Pattern[str] | None, int] = (None, None, None, 0)
        """(parent's literals, own literals) it was built from, their regex, longest."""
        self._screen: tuple[object, object, Screen | None] = (None, None, None)
        """(parent's literals, own literals) the screen was built from, the screen."""
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str) -> None:
        """Mask ``value`` from now on (e.g. a token just obtained)."""
        if len(value) < MIN_LITERAL_LENGTH or value in self._literals:
            return
        with self._lock:
            self._literals = self._literals | {value}

    def with_secrets(self, values: Iterable[str]) -> Redactor:
        """A redactor for one job: the same patterns, the agent's literals (looked up on
        each use, so a token refreshed later is masked too) and ``values``."""
        root = self._parent or self
        child = Redactor()
        child._patterns = root._patterns
        child._parent = root
        inherited = self._literals if self._parent is not None else frozenset()
        for value in (*inherited, *values):
            child.add_secret(value)
        return child

    def for_job(self, env: Mapping[str, str]) -> Redactor:
        """:meth:`with_secrets` for a job whose variables are ``env``: the values of its
        secret variables (:func:`job_secrets`, judged by this redactor's patterns)."""
        return self.with_secrets(job_secrets(env, (self._parent or self)._patterns))

    def _literal_re(self) -> tuple[re.Pattern[str] | None, int]:
        """The regex of every literal in force and the longest one's UTF-8 length."""
        if self._parent is not None and not self._literals:  # a job with no secret of its own
            return self._parent._literal_re()
        base = self._parent._literals if self._parent is not None else None
        own = self._literals
        cache = self._cache
        if cache[0] is base and cache[1] is own:
            return cache[2], cache[3]
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(own | base if base else own, key=len, reverse=True)
        regex = re.compile("|".join(re.escape(item) for item in ordered)) if ordered else None
        longest = max((len(item.encode()) for item in ordered), default=0)
        self._cache = (base, own, regex, longest)
        return regex, longest

    def _current_screen(self) -> Screen:
        if self._parent is not None and not self._literals:  # the agent's screen serves
            return self._parent._current_screen()
        base = self._parent._literals if self._parent is not None else None
        own = self._literals
        cached = self._screen
        if cached[0] is base and cached[1] is own and cached[2] is not None:
            return cached[2]
        screen = screen_for(self._patterns, own | base if base else own)
        self._screen = (base, own, screen)
        return screen

    def may_hold_secret(self, data: bytes) -> bool:
        """False only when :meth:`redact` would leave ``data`` (decoded as UTF-8, bad
        bytes replaced) as it is, and :meth:`spans` would find nothing in it, line by
        line or as a whole: no literal and no needle of a pattern is in it
        (:mod:`agent.needles`). Runs at memory speed; True is only a "maybe"."""
        return self._current_screen().may_hold(data)

    def redact(self, text: str) -> str:
        literal_re, _ = self._literal_re()
        if literal_re is not None:
            text = literal_re.sub(MASK, text)
        for pattern in self._patterns:
            text = pattern.sub(_mask_match, text)
        return text

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets are in ``text`` (character offsets): each literal, and each
        pattern's whole match (keyword and value, which must stay together)."""
        literal_re, _ = self._literal_re()
        found = [m.span() for m in literal_re.finditer(text)] if literal_re else []
        for pattern in self._patterns:
            found.extend(m.span() for m in pattern.finditer(text) if m.end() > m.start())
        return found

    @property
    def reach(self) -> int:
        """How many bytes past a cut a secret may reach: the longest literal's length,
        at least :data:`PATTERN_REACH`."""
        return max(PATTERN_REACH, self._literal_re()[1])


def _mask_match(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return MASK
    start, end = match.span("secret")
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + MASK + text[end - whole_start :]


def is_secret_variable(name: str, value: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether a job variable holds a secret: its name looks like a credential
    (:func:`executors.env.is_credential`), or a pattern matches ``NAME=VALUE``."""
    return is_credential(name) or any(p.search(f"{name}={value}") for p in patterns)


def job_secrets(env: Mapping[str, str], patterns: Sequence[str | re.Pattern[str]]) -> list[str]:
    """The values of a job's secret variables (:func:`is_secret_variable`), to mask as
    literals. A value of several lines also gives each line: output is masked line by
    line. Values shorter than :data:`MIN_LITERAL_LENGTH` are left to the patterns."""
    compiled = [re.compile(pattern) for pattern in patterns]
    secrets: list[str] = []
    for name, value in env.items():
        if not value or not is_secret_variable(name, value, compiled):
            continue
        for item in (value, *value.splitlines()):
            if len(item.strip()) >= MIN_LITERAL_LENGTH and item not in secrets:
                secrets.append(item)
    return secrets
