"""Masking of secrets in text the agent sends or prints.

Two kinds of secret: literal values the agent knows (its password, its tokens) and
``run.redact`` patterns. A pattern with a named group ``secret`` masks only that
group (``password=****``); without one it masks the whole match.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

MASK = "****"
MIN_LITERAL_LENGTH = 4
"""Shorter literal values are not masked: masking every "a" would wreck the text."""


class Redactor:
    """Masks literal secrets and pattern matches; safe to share between threads."""

    def __init__(self, patterns: Sequence[str] = (), secrets: Iterable[str] = ()) -> None:
        self._patterns = [re.compile(pattern) for pattern in patterns]
        self._lock = threading.Lock()
        self._literals: frozenset[str] = frozenset()
        self._literal_re: re.Pattern[str] | None = None
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, value: str) -> None:
        """Mask ``value`` from now on (e.g. a token just obtained)."""
        if len(value) < MIN_LITERAL_LENGTH or value in self._literals:
            return
        with self._lock:
            literals = self._literals | {value}
            # Longest first, so a secret containing another is masked whole.
            ordered = sorted(literals, key=len, reverse=True)
            self._literal_re = re.compile("|".join(re.escape(item) for item in ordered))
            self._literals = literals

    def redact(self, text: str) -> str:
        literal_re = self._literal_re
        if literal_re is not None:
            text = literal_re.sub(MASK, text)
        for pattern in self._patterns:
            text = pattern.sub(_mask_match, text)
        return text


def _mask_match(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return MASK
    start, end = match.span("secret")
    whole_start = match.start()
    text = match.group(0)
    return text[: start - whole_start] + MASK + text[end - whole_start :]
