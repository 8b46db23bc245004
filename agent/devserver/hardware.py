"""GPU hardware generations: the list, one row, and the generation for a compute capability."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.devserver.db import Database
from agent.devserver.errors import ApiError, not_found
from agent.devserver.fields import HARDWARE_FIELDS
from agent.devserver.filters import compile_spec
from agent.devserver.seeds import HARDWARE
from agent.devserver.validate import JsonBody

_LOWEST = min(generation.minimum for generation in HARDWARE)
_HIGHEST = max(generation.maximum for generation in HARDWARE)


def hardware_json(row: sqlite3.Row) -> dict[str, Any]:
    """A hardware generation as the real server shows it."""
    return {
        "pk": row["pk"],
        "generation": row["generation"],
        "min_compute_capability": row["min_compute_capability"],
        "max_compute_capability": row["max_compute_capability"],
    }


class Hardware:
    """The seeded GPU generations (read-only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self, body: JsonBody) -> list[dict[str, Any]]:
        """Generations matching a filter spec."""
        query = compile_spec(body.as_dict(), HARDWARE_FIELDS, pk_sql="h.pk")
        sql = f"SELECT h.* FROM hardware h WHERE {query.where} ORDER BY {query.order_by}"  # noqa: S608
        with self._db.transaction() as conn:
            return [hardware_json(row) for row in conn.execute(sql, query.params)]

    def get(self, pk: int) -> dict[str, Any]:
        """One generation; 404 when unknown."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM hardware WHERE pk = ?", (pk,)).fetchone()
            if row is None:
                raise not_found()
            return hardware_json(row)

    @staticmethod
    def for_capability(compute: str) -> dict[str, Any]:
        """The generation whose `[min, max)` covers `compute`; 400 when none does or it is not
        a number (`float()` rules, as on the real server: `7` and ` 7.5` are numbers)."""
        try:
            capability = float(compute)
        except ValueError:
            capability = float("nan")
        for generation in HARDWARE:
            if generation.minimum <= capability < generation.maximum:
                return {
                    "pk": generation.pk,
                    "generation": generation.generation,
                    "min_compute_capability": generation.minimum,
                    "max_compute_capability": generation.maximum,
                }
        raise ApiError(
            400,
            f"Bad value for get_hardware_generation parameter 'compute': {compute}, "
            f"options: [{_LOWEST}, {_HIGHEST})",
        )
