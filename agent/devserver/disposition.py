"""`Content-Disposition` headers: the filename of an upload, and download headers."""

from __future__ import annotations

from urllib.parse import quote, unquote


def _params(header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in header.split(";")[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[key.strip().lower()] = value
    return params


def upload_filename(header: str | None) -> str | None:
    """The filename in `attachment; filename=<f>` (or RFC 5987 `filename*=`), else None."""
    if not header:
        return None
    params = _params(header)
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _, _, encoded = rest.partition("'")
        try:
            name = unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if name:
            return name
    return params.get("filename") or None


def attachment(filename: str) -> str:
    """A download `Content-Disposition` value that any filename survives."""
    plain = filename.isascii() and filename.isprintable() and not any(c in filename for c in '"\\')
    if plain:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
