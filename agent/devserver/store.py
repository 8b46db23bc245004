"""Records of the reference server: users, nodes, templates, job creation and reads.

Each public method is one transaction under the database lock. Job state changes live in
`lifecycle.py`, outputs in `outputs.py`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from agent.devserver.db import Database
from agent.devserver.errors import ApiError, FieldErrors, ServerCrash, forbidden, not_found
from agent.devserver.fields import JOB_FIELDS, NODE_FIELDS, TEMPLATE_FIELDS
from agent.devserver.filters import compile_spec
from agent.devserver.models import User
from agent.devserver.nodefields import NodeFields, node_fields
from agent.devserver.rows import job_dict, node_row
from agent.devserver.seeds import HARDWARE
from agent.devserver.serialize import JOB_SELECT, jobs_json, node_json, template_json
from agent.devserver.timestamps import now_iso
from agent.devserver.validate import JsonBody, job_spec, template_spec

HARDWARE_PKS = frozenset(generation.pk for generation in HARDWARE)


class Store:
    """Users, nodes, templates and job records (creation and reads)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ---------------------------------------------------------------- users

    def sync_users(self, users: Sequence[User]) -> dict[str, int]:
        """Make sure every user has a row (pks are stable across restarts); name → pk."""
        with self._db.transaction() as conn:
            pks: dict[str, int] = {}
            for user in users:
                conn.execute(
                    "INSERT INTO users (name, staff) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET staff = excluded.staff",
                    (user.name, int(user.staff)),
                )
                row = conn.execute("SELECT pk FROM users WHERE name = ?", (user.name,)).fetchone()
                pks[user.name] = int(row["pk"])
            return pks

    # ---------------------------------------------------------------- nodes

    def node_exists(self, pk: int) -> bool:
        """Whether there is a node with this pk."""
        with self._db.transaction() as conn:
            return conn.execute("SELECT 1 FROM nodes WHERE pk = ?", (pk,)).fetchone() is not None

    def touch_node(self, pk: int) -> bool:
        """Bump a node's `last_seen`; False when there is no such node."""
        with self._db.transaction() as conn:
            cursor = conn.execute("UPDATE nodes SET last_seen = ? WHERE pk = ?", (now_iso(), pk))
            return cursor.rowcount > 0

    def list_nodes(self, body: JsonBody) -> list[dict[str, Any]]:
        """Nodes matching a filter spec."""
        query = compile_spec(body.as_dict(), NODE_FIELDS, pk_sql="n.pk")
        sql = f"SELECT n.* FROM nodes n WHERE {query.where} ORDER BY {query.order_by}"  # noqa: S608
        with self._db.transaction() as conn:
            return [node_json(row) for row in conn.execute(sql, query.params)]

    def _save_node(self, conn: sqlite3.Connection, pk: int | None, fields: NodeFields) -> int:
        clash = conn.execute(
            "SELECT pk FROM nodes WHERE ip = ? AND idx = ? AND pk IS NOT ?",
            (fields.ip, fields.index, pk),
        ).fetchone()
        if clash is not None:
            raise FieldErrors(
                {"non_field_errors": ["The fields ip, index must make a unique set."]}
            )
        if fields.index < 0:
            # The real server's PositiveSmallIntegerField is only a CHECK constraint there:
            # the IntegrityError is a 400 on create and an unhandled 500 on update.
            if pk is None:
                raise ApiError(400, "CHECK constraint failed: index")
            raise ServerCrash("IntegrityError: CHECK constraint failed: index")
        values = (
            fields.ip,
            fields.index,
            fields.cpu_mem,
            fields.gpu_mem,
            fields.driver_version,
            fields.hardware_generation,
        )
        if pk is None:
            cursor = conn.execute(
                "INSERT INTO nodes (ip, idx, cpu_mem, gpu_mem, driver_version, "
                "hardware_generation) VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cursor.lastrowid or 0)
        conn.execute(
            "UPDATE nodes SET ip = ?, idx = ?, cpu_mem = ?, gpu_mem = ?, driver_version = ?, "
            "hardware_generation = ? WHERE pk = ?",
            (*values, pk),
        )
        return pk

    def create_node(self, body: JsonBody) -> dict[str, Any]:
        """Register a node; 400 with the serializer's errors, or when `(ip, index)` is taken."""
        fields = node_fields(body.value(), HARDWARE_PKS)
        with self._db.transaction() as conn:
            pk = self._save_node(conn, None, fields)
            return node_json(node_row(conn, pk))

    def update_node(
        self, pk: int, caller: int | None, staff: bool, body: JsonBody
    ) -> dict[str, Any]:
        """PATCH a node: staff, or the node itself (`Node-Id: pk`); else 403."""
        with self._db.transaction() as conn:
            row = node_row(conn, pk)
            if not staff and caller != pk:
                raise forbidden()
            current = NodeFields(
                ip=row["ip"],
                index=row["idx"],
                cpu_mem=row["cpu_mem"],
                gpu_mem=row["gpu_mem"],
                driver_version=row["driver_version"],
                hardware_generation=row["hardware_generation"],
            )
            self._save_node(conn, pk, node_fields(body.value(), HARDWARE_PKS, current))
            return node_json(node_row(conn, pk))

    def get_node(self, pk: int) -> dict[str, Any]:
        """One node."""
        with self._db.transaction() as conn:
            return node_json(node_row(conn, pk))

    # ------------------------------------------------------------ templates

    def import_template(self, body: JsonBody, creator: int) -> dict[str, Any]:
        """Import a workable template (the route is staff only).

        A name imported again gets the next version and a new pk, so re-running a demo
        against a kept database works; a fresh name starts at version 1.
        """
        spec = template_spec(body.as_dict())
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) AS v FROM templates WHERE name = ?", (spec.name,)
            ).fetchone()
            cursor = conn.execute(
                "INSERT INTO templates (name, version, scope, licence, description, job_type, "
                "executor_class, required_packages, parameters, creator, creation_time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    int(row["v"]) + 1,
                    spec.scope,
                    spec.licence,
                    spec.description,
                    spec.job_type,
                    spec.executor_class,
                    spec.required_packages,
                    json.dumps(spec.parameters),
                    creator,
                    now_iso(),
                ),
            )
            return self._template(conn, int(cursor.lastrowid or 0))

    @staticmethod
    def _template(conn: sqlite3.Connection, pk: int) -> dict[str, Any]:
        row = conn.execute("SELECT * FROM templates WHERE pk = ?", (pk,)).fetchone()
        if row is None:
            raise not_found()
        return template_json(row)

    def get_template(self, pk: int) -> dict[str, Any]:
        """One template."""
        with self._db.transaction() as conn:
            return self._template(conn, pk)

    def list_templates(self, body: JsonBody) -> list[dict[str, Any]]:
        """Templates matching a filter spec."""
        query = compile_spec(
            body.as_dict(), TEMPLATE_FIELDS, pk_sql="t.pk", deleted_sql="t.deletion_time"
        )
        sql = f"SELECT t.* FROM templates t WHERE {query.where} ORDER BY {query.order_by}"  # noqa: S608
        with self._db.transaction() as conn:
            return [template_json(row) for row in conn.execute(sql, query.params)]

    def create_job(self, template: int, body: JsonBody, creator: int) -> dict[str, Any]:
        """A new CREATED job from a template; the caller is its creator."""
        with self._db.transaction() as conn:
            parameters = self._template(conn, template)["parameters"]
            spec = job_spec(body.as_dict(), parameters)
            cursor = conn.execute(
                "INSERT INTO jobs (template, description, input_values, parameter_values, "
                "creator, creation_time) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    template,
                    spec.description,
                    "{}",
                    json.dumps(spec.parameter_values),
                    creator,
                    now_iso(),
                ),
            )
            return job_dict(conn, int(cursor.lastrowid or 0))

    # ----------------------------------------------------------------- jobs

    def list_jobs(self, body: JsonBody) -> list[dict[str, Any]]:
        """Jobs matching a filter spec (no pagination)."""
        query = compile_spec(
            body.as_dict(), JOB_FIELDS, pk_sql="j.pk", deleted_sql="j.deletion_time"
        )
        sql = f"{JOB_SELECT} WHERE {query.where} ORDER BY {query.order_by}"
        with self._db.transaction() as conn:
            return jobs_json(conn, list(conn.execute(sql, query.params)))

    def get_job(self, pk: int) -> dict[str, Any]:
        """One job."""
        with self._db.transaction() as conn:
            return job_dict(conn, pk)
