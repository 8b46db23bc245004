"""The two ways a request can fail in the reference server.

`ApiError` is a regular DRF-style error: a JSON body `{"detail": ...}` with a status code.
`ServerCrash` reproduces the real server's bare `assert`s and unhandled exceptions: Django
answers those with an HTML 500 page, never JSON, and clients must survive that.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as JSON `{"detail": ...}` (plus any `extra` keys)."""

    def __init__(self, status: int, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, object]:
        """The JSON body of the error reply."""
        return {"detail": self.detail, **self.extra}


class ServerCrash(Exception):
    """A failure the real server answers with an HTML 500 page (bare assert, FieldError...)."""


def not_found() -> ApiError:
    """DRF's 404 for an unknown object."""
    return ApiError(404, "Not found.")


def forbidden() -> ApiError:
    """DRF's 403 when a permission class refuses."""
    return ApiError(403, "You do not have permission to perform this action.")


def html_500_page(message: str) -> bytes:
    """A small Django-like 'Server Error (500)' HTML page."""
    safe = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<!doctype html>\n<html lang="en">\n<head><title>Server Error (500)</title></head>\n'
        f"<body><h1>Server Error (500)</h1><p>{safe}</p></body>\n</html>\n"
    ).encode()
