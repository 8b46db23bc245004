"""Filter specs for the server's ``list`` calls (docs/protocol.md: ``isnull``, not ``is_null``)."""

from __future__ import annotations

from typing import Any


def isnull(field: str, *, invert: bool = False) -> dict[str, Any]:
    expression: dict[str, Any] = {"type": "isnull", "field": field}
    if invert:
        expression["invert"] = True
    return expression


def exact(field: str, value: Any) -> dict[str, Any]:
    return {"type": "exact", "field": field, "value": value}


def all_of(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "and", "sub_expressions": list(expressions)}


def spec(
    *expressions: dict[str, Any], order_by: str | None = None, ascending: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {"expressions": list(expressions)}
    if order_by:
        body["order_by"] = [{"field": order_by, "ascending": ascending}]
    return body


PENDING_JOBS = spec(
    all_of(
        isnull("start_time"),
        isnull("error_reason"),
        isnull("node"),
        isnull("template.workabletemplate", invert=True),
    ),
    order_by="creation_time",
)
"""Jobs not started, not failed, not held by any node, with a workable template."""


def node_by_address(ip: str, index: int) -> dict[str, Any]:
    return spec(all_of(exact("ip", ip), exact("index", index)))


STARTED_JOBS = spec(
    all_of(isnull("start_time", invert=True), isnull("end_time"), isnull("error_reason")),
    order_by="start_time",
)
"""Jobs started and not ended: running on some node (or held by a lost one)."""

ALL_NODES = spec(order_by="pk")


def any_of(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "or", "sub_expressions": list(expressions)}


def compare(field: str, operator: str, value: float | str) -> dict[str, Any]:
    """``field <operator> value``; operator one of ``<``, ``<=``, ``>``, ``>=``."""
    return {"type": "compare", "field": field, "operator": operator, "value": value}


def templates_named(name: str) -> dict[str, Any]:
    """Every live version of the templates called ``name``, newest first."""
    return spec(exact("name", name), order_by="version", ascending=False)
