"""The job lifecycle: acquire, start, progress, finish, reset, release, cancel, abort.

Each method is one transaction under the database lock, so every transition — acquire
included, unlike the real server's read-then-save — is atomic. Checks run in the real
server's order: object lookup (404), permission (403), body (400), then the lifecycle rules
(406), with its bare asserts reproduced as `ServerCrash` (HTML 500).

Permissions mirror the real view-set: acquire needs a node; start, progress and reset
need the node that holds the job (`job.node`); finish and release accept that node or the
node whose `current_job` is the job; cancel and abort need staff (checked by the route).
"""

from __future__ import annotations

import json
from typing import Any

from agent.devserver.db import Database
from agent.devserver.errors import ApiError, ServerCrash
from agent.devserver.phases import FINALISED, Phase
from agent.devserver.rows import (
    job_dict,
    job_phase,
    job_row,
    node_row,
    require_owner,
    require_owner_or_worker,
    set_current_job,
    soft_delete_outputs,
    update_job,
)
from agent.devserver.timestamps import now_iso
from agent.devserver.validate import JsonBody, finish_spec, start_spec


class Lifecycle:
    """The rules that move jobs between phases."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire(self, pk: int, node: int | None) -> dict[str, Any]:
        """Reserve a job for a node.

        The holding node again: 200 no-op; another node holds it, or it is finalised
        (FINISHED/CANCELLED): 406. Any other phase with no node is acquirable, as on the
        real server. The route guarantees a node.
        """
        if node is None:
            raise ServerCrash("AssertionError: acquire without a node")
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            if job["node"] == node:
                return job_dict(conn, pk)
            if job["node"] is not None:
                raise ApiError(406, f"Job {pk} is already acquired by another node")
            if job_phase(job) in FINALISED:
                raise ApiError(406, f"Job {pk} has already been finalised")
            update_job(conn, pk, node=node)
            return job_dict(conn, pk)

    def start(self, pk: int, node: int | None, body: JsonBody) -> dict[str, Any]:
        """Start an acquired job: sets `start_time` and the node's `current_job`.

        403 not the holding node; 400 without a string `send_notification` (HTML 500 for a
        body `dict()` cannot take); 406 when the node's `current_job` is set ("another
        already in progress" — also after an abort, until the node finishes the aborted job)
        or the job is not CREATED.
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            node = require_owner(job, node)
            start_spec(body.as_dict())
            current = node_row(conn, node)["current_job"]
            if current is not None:
                raise ApiError(406, "Attempted to start a job with another already in progress")
            if job_phase(job) is not Phase.CREATED:
                raise ApiError(406, "Job already started")
            update_job(conn, pk, start_time=now_iso())
            set_current_job(conn, node, pk)
            return job_dict(conn, pk)

    def progress(self, pk: int, node: int | None, amount: str, body: JsonBody) -> dict[str, Any]:
        """Record progress of a STARTED job.

        403 not the holding node; HTML 500 when the amount does not parse as a float (the
        route regex lets `0x5` through), the body is not an object, or the job is not the
        node's current job (not started yet, or finished); 406 when not STARTED (cancelled).
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            node = require_owner(job, node)
            try:
                value = float(amount)
            except ValueError:
                raise ServerCrash(f"ValueError: could not convert {amount!r} to float") from None
            data = body.as_dict()
            if node_row(conn, node)["current_job"] != pk:
                raise ServerCrash("AssertionError: _progress_workable called by incorrect node")
            if job_phase(job) is not Phase.STARTED:
                raise ApiError(406, "Can only progress from the STARTED phase")
            update_job(conn, pk, progress=value, progress_data=json.dumps(data))
            return job_dict(conn, pk)

    def finish(self, pk: int, node: int | None, body: JsonBody) -> dict[str, Any]:
        """End a job: FINISHED, or ERRORED (`error_reason`) when the body has `error`.

        `success` is required but, as on the real server, only `error` decides the phase.
        HTML 500 unless the job is the node's `current_job` (before start, second finish).
        Otherwise the node's `current_job` is cleared first; then a job taken from the node
        (aborted) or CANCELLED is left as is: the 200 no-op that frees the node.
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            node = require_owner_or_worker(conn, job, node)
            error = finish_spec(body.as_dict())
            if node_row(conn, node)["current_job"] != pk:
                raise ServerCrash("AssertionError: _finish_workable called with incorrect node")
            set_current_job(conn, node, None)
            state = job_phase(job)
            if job["node"] != node or state is Phase.CANCELLED:
                return job_dict(conn, pk)
            if state is not Phase.STARTED:
                raise ApiError(406, "Job not in the Started phase")
            update_job(conn, pk, end_time=now_iso(), error_reason=error)
            return job_dict(conn, pk)

    def reset(self, pk: int, node: int | None) -> dict[str, Any]:
        """ERRORED → CREATED, keeping the node; 406 unless ERRORED; 403 not the holder.

        Outputs are only soft-deleted: they stay listed on the job, their `/info` gets a
        `deletion_time`, and they still block a new upload of the same name/type.
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            require_owner(job, node)
            if job_phase(job) is not Phase.ERRORED:
                raise ApiError(406, "Job is not in the ERRORED phase")
            soft_delete_outputs(conn, pk)
            update_job(conn, pk, start_time=None, end_time=None, error_reason=None)
            return job_dict(conn, pk)

    def release(self, pk: int, node: int | None) -> dict[str, Any]:
        """Give a CREATED or ERRORED job back: clears `job.node`.

        403 unless the holder (or working) node; HTML 500 when it is the node's current
        job (STARTED: a bare assert on the real server); a 200 no-op for a node that works
        the job without holding it (aborted); 406 for any other phase.
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            node = require_owner_or_worker(conn, job, node)
            if node_row(conn, node)["current_job"] == pk:
                raise ServerCrash("AssertionError: _release_workable called on job in progress")
            if job["node"] != node:
                return job_dict(conn, pk)
            if job_phase(job) not in (Phase.CREATED, Phase.ERRORED):
                raise ApiError(406, "Can't release a started or finalised job")
            update_job(conn, pk, node=None)
            return job_dict(conn, pk)

    def cancel(self, pk: int) -> dict[str, Any]:
        """Cancel a job (the route is staff only): `error_reason = "Cancelled"`, no `end_time`.

        A finalised job is left alone (200). A started job becomes CANCELLED
        (`is_cancelled` true): its progress answers 406 and its finish is a no-op. A job not
        started yet keeps its node and stays CREATED with `is_cancelled` false, but the
        error reason takes it out of the work queue (agents list `error_reason` isnull); if
        its node starts it anyway it is CANCELLED from that moment.
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            if job_phase(job) not in FINALISED:
                update_job(conn, pk, end_time=None, error_reason="Cancelled")
            return job_dict(conn, pk)

    def abort(self, pk: int) -> dict[str, Any]:
        """Take a job away from its node (the route is staff only); 406 when finalised.

        The job goes back to CREATED (start and end times and error reason cleared), loses
        its node, and its outputs are soft-deleted — but a node that had started it keeps it
        as `current_job` (the real server's quirk): that node's next `start` answers 406
        until it `finish`es the aborted job (a 200 no-op).
        """
        with self._db.transaction() as conn:
            job = job_row(conn, pk)
            if job_phase(job) in FINALISED:
                raise ApiError(406, "Can't abort a finalised job")
            soft_delete_outputs(conn, pk)
            update_job(conn, pk, node=None, start_time=None, end_time=None, error_reason=None)
            return job_dict(conn, pk)
