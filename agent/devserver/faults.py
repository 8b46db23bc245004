"""Fault injection for tests: answer the next matching requests with a canned error."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from agent.devserver.messages import Response


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    status: int
    remaining: int
    body: bytes
    headers: dict[str, str]


class FaultInjector:
    """Queued rules; each matching request consumes one use of the first matching rule."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def add(
        self,
        path_regex: str,
        status: int,
        times: int,
        body: bytes,
        headers: dict[str, str] | None,
    ) -> None:
        """Answer the next `times` requests whose path matches `path_regex` (re.search)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        rule = _Rule(re.compile(path_regex), status, times, body, dict(headers or {}))
        with self._lock:
            self._rules.append(rule)

    def take(self, path: str) -> Response | None:
        """The injected reply for this path, if a rule matches (consuming one use)."""
        with self._lock:
            if not self._rules:
                return None
            for rule in self._rules:
                if rule.pattern.search(path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    break
            else:
                return None
        headers = {k: v for k, v in rule.headers.items() if k.lower() != "content-type"}
        content_type = next(
            (v for k, v in rule.headers.items() if k.lower() == "content-type"),
            "text/html; charset=utf-8",
        )
        return Response(rule.status, rule.body, content_type, headers)
