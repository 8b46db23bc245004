"""The sqlite database behind the reference server: one connection, one lock (`schema.py`).

A single connection guarded by a lock is both simple and fast enough (every operation is a
few indexed statements), and it makes each store operation — acquire included — atomic.
File databases use WAL with `synchronous=NORMAL`; `None` means a private in-memory database.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.devserver import schema


class Database:
    """One sqlite connection, its lock, and transactions over it."""

    def __init__(self, path: str | Path | None) -> None:
        target = ":memory:" if path is None else str(path)
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._closed = False
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        schema.create(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run one write transaction; rolled back on any exception."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the devserver database is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def secret(self) -> bytes:
        """The token-signing secret, created once and kept in the database."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row is not None:
                return bytes.fromhex(str(row["value"]))
            value = secrets.token_bytes(32)
            conn.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (value.hex(),))
            return value

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
