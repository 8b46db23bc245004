"""The reference server's sqlite schema, its seeded rows, and upgrades of older files.

A database file written by an older devserver (nodes with a text `hardware_generation` and a
non-null `gpu_mem`) is upgraded in place on open: a generation that is not the pk of a
seeded hardware row becomes null.
"""

from __future__ import annotations

import sqlite3

from agent.devserver.seeds import HARDWARE

_NODE_COLUMNS = """(
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    ip TEXT NOT NULL,
    idx INTEGER NOT NULL,
    cpu_mem INTEGER NOT NULL,
    gpu_mem INTEGER,
    driver_version TEXT,
    hardware_generation INTEGER REFERENCES hardware (pk),
    current_job INTEGER,
    last_seen TEXT,
    UNIQUE (ip, idx)
);
"""
"""The nodes table's columns: the schema and the upgrade of older files both use them."""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    staff INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS hardware (
    pk INTEGER PRIMARY KEY,
    generation TEXT NOT NULL UNIQUE,
    min_compute_capability REAL NOT NULL,
    max_compute_capability REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes """
    + _NODE_COLUMNS
    + """CREATE TABLE IF NOT EXISTS templates (
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
)

_NODES_V1_TO_V2 = (
    """
ALTER TABLE nodes RENAME TO nodes_v1;
CREATE TABLE nodes """
    + _NODE_COLUMNS
    + """INSERT INTO nodes (pk, ip, idx, cpu_mem, gpu_mem, driver_version, hardware_generation,
                   current_job, last_seen)
SELECT n.pk, n.ip, n.idx, n.cpu_mem, n.gpu_mem, n.driver_version, h.pk, n.current_job, n.last_seen
FROM nodes_v1 n LEFT JOIN hardware h ON CAST(h.pk AS TEXT) = n.hardware_generation;
DROP TABLE nodes_v1;
"""
)


def create(conn: sqlite3.Connection) -> None:
    """Create (or upgrade) the schema and seed the hardware generations."""
    old_nodes = {row[1]: str(row[2]).upper() for row in conn.execute("PRAGMA table_info(nodes)")}
    conn.executescript(SCHEMA)
    conn.executemany(
        "INSERT OR IGNORE INTO hardware (pk, generation, min_compute_capability, "
        "max_compute_capability) VALUES (?, ?, ?, ?)",
        HARDWARE,
    )
    if old_nodes.get("hardware_generation") == "TEXT":
        conn.executescript(f"BEGIN; {_NODES_V1_TO_V2} COMMIT;")
