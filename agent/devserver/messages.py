"""HTTP request and response values passed between the HTTP layer and the API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agent.devserver.errors import html_404_page, html_500_page


@dataclass(frozen=True)
class Request:
    """A parsed HTTP request; `headers` has lower-case keys, `path` is percent-encoded."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    """A reply: status, body, its content type, and any extra headers."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: object, headers: dict[str, str] | None = None) -> Response:
        """A JSON reply."""
        return cls(status, json.dumps(value).encode(), "application/json", dict(headers or {}))

    @classmethod
    def html_500(cls, message: str) -> Response:
        """The HTML 500 page the real server shows for a bare assert or crash."""
        return cls(500, html_500_page(message), "text/html; charset=utf-8")

    @classmethod
    def html_404(cls, path: str) -> Response:
        """Django's page for a URL that no route matches."""
        return cls(404, html_404_page(path), "text/html; charset=utf-8")
