"""Literal needles of redaction patterns: a cheap, exact test that text holds no secret.

Running the redaction regexes over every line of a chatty job costs about a core for
15 MiB/s: Python's regex engine scans case-insensitive alternations slowly. But every
match of a pattern like ``(?i)(?:password|token|...)\\s*[:=]...`` contains one of a few
literal strings (``password``, ``token``, ...), and looking for those with ``in`` runs
at memory speed. :func:`pattern_needles` finds such strings in a compiled pattern's
parse tree; :class:`Screen` looks for them (and for the literal secrets) in a block of
output. Text without any needle cannot hold a match, line by line or as a whole, so
the redaction of that text would change nothing and can be skipped. A pattern whose
needles are not known (a back-reference, a leading character class, an empty match)
makes the screen answer "maybe" for every text: the regexes then run as before.

Case-insensitive needles are compared folded (:func:`fold`): lower case, with the few
characters Python's regex engine also takes as ASCII letters under ``IGNORECASE``
(dotless i U+0131, long s U+017F, the dotted capital I U+0130 and the Kelvin sign)
folded to them. Only ASCII needles are folded; a pattern ignoring case with other
characters in its needles has none (the screen says "maybe").
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

# The parser behind ``re.compile``: the public ``sre_parse`` alias warns since 3.11.
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT))
_FOLD_TABLE = str.maketrans({"\u0131": "i", "\u017f": "s", "\u0307": None})


def fold(text: str) -> str:
    """``text`` in lower case, with U+0131 and U+017F as ``i`` and ``s`` and combining
    dots gone (U+0130 lowers to ``i`` + U+0307): what a case-insensitive ASCII needle is
    sought in."""
    lowered = text.lower()
    return lowered.translate(_FOLD_TABLE) if not lowered.isascii() else lowered


def _best(candidates: list[frozenset[str]]) -> frozenset[str] | None:
    """The candidate set whose shortest needle is longest (fewer false alarms)."""
    usable = [c for c in candidates if c and "" not in c]
    if not usable:
        return None
    return max(usable, key=lambda c: (min(len(n) for n in c), -len(c)))


def _sequence(items: Sequence[tuple[Any, Any]]) -> frozenset[str] | None:
    """Strings one of which every match of the item sequence contains, or None."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            candidates.append(frozenset(["".join(run)]))
            run = []
        found = _item(op, av)
        if found is not None:
            candidates.append(found)
    if run:
        candidates.append(frozenset(["".join(run)]))
    return _best(candidates)


def _item(op: Any, av: Any) -> frozenset[str] | None:
    """Needles of one item that consumes text (None: none known, or it may match
    nothing: an optional part, a look-around, a class, a back-reference)."""
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:  # scoped flags (case): not known here
            return None
        return _sequence(sub.data)
    if op is _c.BRANCH:
        alternatives = [_sequence(branch.data) for branch in av[1]]
        if any(found is None for found in alternatives):
            return None
        return frozenset().union(*(found for found in alternatives if found is not None))
    if op in _REPEATS:
        low, _high, sub = av
        return _sequence(sub.data) if low >= 1 else None
    if op is getattr(_c, "ATOMIC_GROUP", None):
        return _sequence(av.data)
    return None


def pattern_needles(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Strings one of which every non-empty match of ``pattern`` contains (folded when
    it ignores case, see :func:`fold`), or None when that is not known."""
    try:
        tree = _parser.parse(pattern.pattern, pattern.flags)
    except (re.error, RecursionError):
        return None
    found = _sequence(tree.data)
    if found is None:
        return None
    if pattern.flags & re.IGNORECASE:
        if not all(needle.isascii() for needle in found):
            return None
        return frozenset(fold(needle) for needle in found)
    return found


#: Letters from the most to the least frequent in English text: a needle is first looked
#: for by its rarest byte (``memchr``, far faster than a substring search).
_FREQUENCY = "etaoinsrhldcumfpgwybvkxjqz"


def _key(needle: str) -> str:
    """The character of ``needle`` least likely in text (non-letters count as rare)."""
    return max(needle, key=lambda c: _FREQUENCY.find(c.lower()) % (len(_FREQUENCY) + 1))


def _probe(needle: str, folded: bool) -> tuple[bytes, tuple[bytes, ...]]:
    """``needle`` as bytes and the bytes of which ASCII text holding it has one."""
    key = _key(needle)
    keys = {key, key.upper()} if folded else {key}
    return needle.encode(), tuple(sorted(k.encode() for k in keys))


def _minimal(needles: Iterable[str]) -> tuple[str, ...]:
    """The needles without those that contain another (finding that one suffices)."""
    unique = sorted(set(needles), key=len)
    kept: list[str] = []
    for needle in unique:
        if not any(other in needle for other in kept):
            kept.append(needle)
    return tuple(kept)


class Screen:
    """Whether a block of output may hold a secret: any needle of the patterns, or any
    literal secret, in it. ``complete`` is False when some pattern has no needles."""

    def __init__(
        self, exact: Iterable[str], folded: Iterable[str], *, complete: bool = True
    ) -> None:
        self.complete = complete
        self._exact = _minimal(exact)
        self._folded = _minimal(folded)
        self._exact_ascii = tuple(_probe(n, False) for n in self._exact if n.isascii())
        self._folded_ascii = tuple(_probe(n, True) for n in self._folded)

    def may_hold(self, data: bytes) -> bool:
        """False only when no needle is in ``data`` (as the sink decodes it)."""
        if not self.complete:
            return True
        if data.isascii():  # the common case: bytes are the text, lower() is exact
            return self._ascii_may_hold(data)
        text = data.decode("utf-8", errors="replace")
        if any(needle in text for needle in self._exact):
            return True
        if not self._folded:
            return False
        folded = fold(text)
        return any(needle in folded for needle in self._folded)

    def _ascii_may_hold(self, data: bytes) -> bool:
        for needle, keys in self._exact_ascii:
            if any(key in data for key in keys) and needle in data:
                return True
        lowered: bytes | None = None
        for needle, keys in self._folded_ascii:
            if not any(key in data for key in keys):
                continue  # its rarest letter is nowhere, in either case
            if lowered is None:
                lowered = data.lower()
            if needle in lowered:
                return True
        return False


def screen_for(patterns: Sequence[re.Pattern[str]], literals: Iterable[str]) -> Screen:
    """The :class:`Screen` of ``patterns`` and the literal secrets ``literals``."""
    exact = list(literals)
    folded: list[str] = []
    complete = True
    for pattern in patterns:
        found = pattern_needles(pattern)
        if found is None:
            complete = False
        elif pattern.flags & re.IGNORECASE:
            folded.extend(found)
        else:
            exact.extend(found)
    return Screen(exact, folded, complete=complete)
