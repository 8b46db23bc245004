"""The sqlite database behind the reference server: schema, one connection, one lock.

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    staff INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS nodes (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    ip TEXT NOT NULL,
    idx INTEGER NOT NULL,
    cpu_mem INTEGER NOT NULL DEFAULT 0,
    gpu_mem INTEGER NOT NULL DEFAULT 0,
    driver_version TEXT,
    hardware_generation TEXT,
    current_job INTEGER,
    last_seen TEXT,
    UNIQUE (ip, idx)
);
CREATE TABLE IF NOT EXISTS templates (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    scope TEXT,
    licence TEXT,
    description TEXT NOT NULL DEFAULT '',
    job_type TEXT NOT NULL,
    executor_class TEXT NOT NULL,
    required_packages TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL,
    creator INTEGER,
    creation_time TEXT NOT NULL,
    deletion_time TEXT,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS jobs (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    template INTEGER NOT NULL REFERENCES templates (pk),
    parent INTEGER,
    description TEXT NOT NULL DEFAULT '',
    input_values TEXT NOT NULL,
    parameter_values TEXT NOT NULL,
    node INTEGER,
    start_time TEXT,
    end_time TEXT,
    error_reason TEXT,
    progress REAL NOT NULL DEFAULT 0.0,
    progress_data TEXT,
    creator INTEGER,
    creation_time TEXT NOT NULL,
    deletion_time TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_node ON jobs (node);
CREATE TABLE IF NOT EXISTS outputs (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    job INTEGER NOT NULL REFERENCES jobs (pk),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    filename TEXT NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    creator INTEGER,
    creation_time TEXT NOT NULL,
    deletion_time TEXT
);
CREATE INDEX IF NOT EXISTS outputs_by_job ON outputs (job, name, type);
"""


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
        self._conn.executescript(SCHEMA)

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
