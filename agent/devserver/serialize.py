"""Database rows → the JSON shapes the real server's serialisers produce."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from agent.devserver.phases import Phase, phase_of
from agent.devserver.seeds import LICENCES

_CHUNK = 500

JOB_SELECT = (
    "SELECT j.*, t.name AS t_name, t.version AS t_version "
    "FROM jobs j JOIN templates t ON t.pk = j.template"
)


def node_json(row: sqlite3.Row) -> dict[str, Any]:
    """A node: pk, ip, index, driver_version, hardware_generation (a hardware pk or null),
    gpu_mem (null without a GPU), cpu_mem, last_seen and current_job (pk or null)."""
    return {
        "pk": row["pk"],
        "ip": row["ip"],
        "index": row["idx"],
        "driver_version": row["driver_version"],
        "hardware_generation": row["hardware_generation"],
        "gpu_mem": row["gpu_mem"],
        "cpu_mem": row["cpu_mem"],
        "last_seen": row["last_seen"],
        "current_job": row["current_job"],
    }


def template_json(row: sqlite3.Row) -> dict[str, Any]:
    """A (workable) job template: `licence` is the licence's pk, `domain` null; a parameter
    without a default has only `types` and `help`."""
    return {
        "pk": row["pk"],
        "name": row["name"],
        "version": row["version"],
        "description": row["description"],
        "scope": row["scope"],
        "domain": None,
        "licence": LICENCES.get(row["licence"]),
        # The real server's import leaves a template's creator unset.
        "creator": None,
        "creation_time": row["creation_time"],
        "deletion_time": row["deletion_time"],
        "type": row["job_type"],
        "executor_class": row["executor_class"],
        "required_packages": row["required_packages"],
        "parameters": json.loads(row["parameters"]),
    }


def output_info_json(row: sqlite3.Row) -> dict[str, Any]:
    """An output's metadata (the `/info` reply and the upload reply); the real server shows
    neither its filename nor its size."""
    return {
        "pk": row["pk"],
        "job": row["job"],
        "name": row["name"],
        "type": row["type"],
        "creator": row["creator"],
        "creation_time": row["creation_time"],
        "deletion_time": row["deletion_time"],
    }


def job_json(row: sqlite3.Row, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A job, from a `JOB_SELECT` row and its outputs (soft-deleted ones included)."""
    phase = phase_of(row["start_time"], row["end_time"], row["error_reason"])
    return {
        "pk": row["pk"],
        "template": {"pk": row["template"], "name": row["t_name"], "version": row["t_version"]},
        "parent": row["parent"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "error_reason": row["error_reason"],
        "input_values": json.loads(row["input_values"]),
        "parameter_values": json.loads(row["parameter_values"]),
        "node": row["node"],
        "outputs": outputs,
        "description": row["description"],
        "is_cancelled": phase is Phase.CANCELLED,
        "creator": row["creator"],
        "creation_time": row["creation_time"],
        "deletion_time": row["deletion_time"],
    }


def jobs_json(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """Several jobs with their outputs, fetched a few hundred jobs per query."""
    pks = [row["pk"] for row in rows]
    outputs: dict[int, list[dict[str, Any]]] = {pk: [] for pk in pks}
    for start in range(0, len(pks), _CHUNK):
        chunk = pks[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT pk, job, name, type FROM outputs WHERE job IN ({marks}) ORDER BY pk"  # noqa: S608
        for out in conn.execute(query, chunk):
            outputs[out["job"]].append({"pk": out["pk"], "name": out["name"], "type": out["type"]})
    return [job_json(row, outputs[row["pk"]]) for row in rows]
