"""Server timestamps: ISO 8601 with microseconds and an explicit offset.

All times are stored in UTC with a fixed format (`2026-11-23T13:00:00.123456+00:00`), so
stored strings sort and compare lexicographically in SQL exactly like the instants they name.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current time in the server's canonical format."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def normalise(value: str) -> str:
    """Any ISO 8601 timestamp in canonical UTC form; naive values are taken as UTC.

    Raises ValueError for text that is not an ISO 8601 timestamp.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="microseconds")
