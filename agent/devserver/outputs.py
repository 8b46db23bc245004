"""Job outputs: upload rules per phase, soft-deleted duplicates, download and `/info`."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.devserver.db import Database
from agent.devserver.errors import ApiError
from agent.devserver.phases import Phase
from agent.devserver.rows import job_phase, job_row, require_owner
from agent.devserver.serialize import output_info_json
from agent.devserver.timestamps import now_iso


class Outputs:
    """Outputs attached to jobs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_output(
        self,
        pk: int,
        name: str,
        kind: str,
        *,
        node: int | None,
        staff: bool,
        creator: int,
        filename: str,
        data: bytes,
    ) -> dict[str, Any]:
        """Attach an output to a STARTED, ERRORED or CANCELLED job.

        403 unless staff or the holding node; 417 not started; 406 FINISHED; 400 when an
        output with this name/type exists, soft-deleted or not. (The filename is checked
        before, when the body is read.)
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            if not staff:
                require_owner(job, node)
            state = job_phase(job)
            if state is Phase.CREATED:
                raise ApiError(417, "Job not started")
            if state is Phase.FINISHED:
                raise ApiError(406, "Job already finished")
            clash = conn.execute(
                "SELECT 1 FROM outputs WHERE job = ? AND name = ? AND type = ?", (pk, name, kind)
            ).fetchone()
            if clash is not None:
                raise ApiError(400, f"Job already has an output by this name/type ({name}/{kind})")
            cursor = conn.execute(
                "INSERT INTO outputs (job, name, type, filename, data, size, creator, "
                "creation_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pk, name, kind, filename, data, len(data), creator, now_iso()),
            )
            row = conn.execute("SELECT * FROM outputs WHERE pk = ?", (cursor.lastrowid,))
            return output_info_json(row.fetchone())

    def _output(self, conn: sqlite3.Connection, pk: int, name: str, kind: str) -> sqlite3.Row:
        job_row(conn, pk)
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM outputs WHERE job = ? AND name = ? AND type = ? ORDER BY pk DESC",
            (pk, name, kind),
        ).fetchone()
        if row is None:
            raise ApiError(400, f"Job {pk} has no output {name!r} of type {kind!r}")
        return row

    def output_info(self, pk: int, name: str, kind: str) -> dict[str, Any]:
        """An output's metadata (soft-deleted ones too, with their `deletion_time`)."""
        with self._db.transaction() as conn:
            return output_info_json(self._output(conn, pk, name, kind))

    def output_data(self, pk: int, name: str, kind: str) -> tuple[str, bytes]:
        """An output's filename and bytes."""
        with self._db.transaction() as conn:
            row = self._output(conn, pk, name, kind)
            return str(row["filename"]), bytes(row["data"])
