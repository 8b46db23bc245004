"""Row-level helpers shared by the store, the lifecycle rules and the outputs.

All take an open connection inside a `Database.transaction()`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.devserver.errors import forbidden, not_found
from agent.devserver.phases import Phase, phase_of
from agent.devserver.serialize import JOB_SELECT, jobs_json
from agent.devserver.timestamps import now_iso

_UPDATABLE = frozenset(
    {"node", "start_time", "end_time", "error_reason", "progress", "progress_data"}
)


def job_phase(job: sqlite3.Row) -> Phase:
    """The phase of a job row."""
    return phase_of(job["start_time"], job["end_time"], job["error_reason"])


def job_row(conn: sqlite3.Connection, pk: int) -> sqlite3.Row:
    """A job row joined with its template (`JOB_SELECT`); 404 when missing."""
    row: sqlite3.Row | None = conn.execute(f"{JOB_SELECT} WHERE j.pk = ?", (pk,)).fetchone()
    if row is None:
        raise not_found()
    return row


def node_row(conn: sqlite3.Connection, pk: int) -> sqlite3.Row:
    """A node row; 404 when missing."""
    row: sqlite3.Row | None = conn.execute("SELECT * FROM nodes WHERE pk = ?", (pk,)).fetchone()
    if row is None:
        raise not_found()
    return row


def job_dict(conn: sqlite3.Connection, pk: int) -> dict[str, Any]:
    """A job's JSON."""
    return jobs_json(conn, [job_row(conn, pk)])[0]


def update_job(conn: sqlite3.Connection, pk: int, **values: object) -> None:
    """Set columns of a job (names from `_UPDATABLE` only: no user text reaches the SQL)."""
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable job columns: {sorted(unknown)}")
    columns = ", ".join(f"{column} = ?" for column in values)
    conn.execute(f"UPDATE jobs SET {columns} WHERE pk = ?", (*values.values(), pk))  # noqa: S608


def set_current_job(conn: sqlite3.Connection, node: int, job: int | None) -> None:
    """Set (or clear) a node's `current_job`."""
    conn.execute("UPDATE nodes SET current_job = ? WHERE pk = ?", (job, node))


def soft_delete_outputs(conn: sqlite3.Connection, job: int) -> None:
    """The real server's `outputs.all().delete()` on a soft-delete query-set: rows stay."""
    conn.execute(
        "UPDATE outputs SET deletion_time = ? WHERE job = ? AND deletion_time IS NULL",
        (now_iso(), job),
    )


def require_owner(job: sqlite3.Row, node: int | None) -> int:
    """NodeOwnsJob: the caller is the node holding the job."""
    if node is None or job["node"] != node:
        raise forbidden()
    return node


def require_owner_or_worker(conn: sqlite3.Connection, job: sqlite3.Row, node: int | None) -> int:
    """NodeOwnsJob | NodeWorkingJob: the holding node, or the node whose current job it is."""
    if node is None:
        raise forbidden()
    if job["node"] != node and node_row(conn, node)["current_job"] != job["pk"]:
        raise forbidden()
    return node
