"""The ways a request can fail in the reference server.

`ApiError` is a regular DRF-style error: a JSON body `{"detail": ...}` with a status code.
`FieldErrors` is a DRF serializer's 400: `{"field": ["message", ...], ...}`.
`ServerCrash` reproduces the real server's bare `assert`s and unhandled exceptions: Django
answers those with an HTML 500 page, never JSON, and clients must survive that.
`PageNotFound` is Django's HTML 404 for a URL no route matches (the real server runs with
DEBUG on, so it is a page, not JSON).
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


class FieldErrors(ApiError):
    """A serializer's validation errors: 400 `{"field": ["message"], ...}`."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(400, "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors

    def body(self) -> dict[str, object]:
        return dict(self.errors)


class ServerCrash(Exception):
    """A failure the real server answers with an HTML 500 page (bare assert, FieldError...)."""


class PageNotFound(Exception):
    """No route matches the URL: Django's HTML 404 page."""


def not_found() -> ApiError:
    """DRF's 404 for an unknown object."""
    return ApiError(404, "Not found.")


def forbidden() -> ApiError:
    """DRF's 403 when a permission class refuses."""
    return ApiError(403, "You do not have permission to perform this action.")


def unauthenticated() -> ApiError:
    """DRF's 401 when a permission class refuses an anonymous caller."""
    return ApiError(401, "Authentication credentials were not provided.")


def _escape(message: str) -> str:
    return message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_500_page(message: str) -> bytes:
    """A small Django-like 'Server Error (500)' HTML page."""
    return (
        '<!doctype html>\n<html lang="en">\n<head><title>Server Error (500)</title></head>\n'
        f"<body><h1>Server Error (500)</h1><p>{_escape(message)}</p></body>\n</html>\n"
    ).encode()


def html_404_page(path: str) -> bytes:
    """A small Django-like 'Page not found' HTML page."""
    return (
        '<!doctype html>\n<html lang="en">\n<head><title>Page not found</title></head>\n'
        f"<body><h1>Page not found</h1><p>{_escape(path)}</p></body>\n</html>\n"
    ).encode()
