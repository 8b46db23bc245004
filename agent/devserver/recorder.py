"""The request log: every request the server answered, for tests and demos."""

from __future__ import annotations

import threading
import time
from collections import deque

from agent.devserver.messages import Request
from agent.devserver.models import RecordedRequest

BODY_LIMIT = 64 * 1024
MAX_ENTRIES = 100_000


class RequestRecorder:
    """Keeps the last `MAX_ENTRIES` requests (bodies cut to `BODY_LIMIT` bytes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[RecordedRequest] = deque(maxlen=MAX_ENTRIES)

    def record(self, request: Request, status: int, received: float | None = None) -> None:
        """Add one answered request."""
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            status=status,
            headers=dict(request.headers),
            body=request.body[:BODY_LIMIT],
            body_length=len(request.body),
            node_id=request.headers.get("node-id"),
            time=time.time() if received is None else received,
        )
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[RecordedRequest]:
        """A snapshot of the log, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
