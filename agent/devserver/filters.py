"""UFDL filter specs → SQL, through a field allowlist.

A spec is `{"expressions": [...], "order_by": [{"field", "ascending", "nulls_first"?}],
"include_soft_deleted": bool}`; top-level expressions are AND-ed. Expression types:
`and`/`or` {sub_expressions}, `exact` {field, value, case_insensitive}, `contains`
{field, sub_string, case_insensitive}, `isnull` {field} and `compare` {field, operator,
value} with operators `<`, `<=`, `>`, `>=`, `=`; each takes an optional `invert`.

Quirks reproduced from the real server:
- an unknown expression type (e.g. `is_null`) or a malformed expression is a 400;
- an unknown field is a Django `FieldError`, i.e. an HTML 500 (`ServerCrash`);
- `invert` behaves like Django's `exclude()`: rows where the field is NULL are kept.

No user text ever reaches the SQL: field names select SQL from the allowlist and every
value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agent.devserver.errors import ApiError, ServerCrash
from agent.devserver.timestamps import normalise

FieldKind = Literal["int", "text", "time", "bool"]

_MAX_DEPTH = 32
_OPERATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "="}
_LEAF_TYPES = ("exact", "contains", "isnull", "compare")


@dataclass(frozen=True)
class Field:
    """One filterable field: trusted SQL for it and how to coerce values compared with it."""

    sql: str
    kind: FieldKind


@dataclass(frozen=True)
class Query:
    """The compiled spec: a WHERE condition, an ORDER BY list and the bound parameters."""

    where: str
    order_by: str
    params: list[object]


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _field(fields: Mapping[str, Field], expression: Mapping[str, object]) -> Field:
    name = expression.get("field")
    if not isinstance(name, str):
        raise _bad(f"expression of type {expression.get('type')!r} needs a string 'field'")
    try:
        return fields[name]
    except KeyError:
        raise ServerCrash(f"FieldError: Cannot resolve keyword {name!r} into field.") from None


def _coerce(field: Field, value: object) -> object:
    """A filter value as a bound parameter for `field`; 400 when it cannot be one."""
    if field.kind == "bool":
        if isinstance(value, bool):
            return int(value)
    elif field.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif field.kind == "time":
        if isinstance(value, str):
            try:
                return normalise(value)
            except ValueError:
                pass
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(f"value {value!r} is not valid for a {field.kind} field")


class _Compiler:
    def __init__(self, fields: Mapping[str, Field]) -> None:
        self.fields = fields
        self.params: list[object] = []

    def expression(self, expression: object, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise _bad("filter expressions nested too deeply")
        if not isinstance(expression, dict):
            raise _bad("each filter expression must be an object")
        kind = expression.get("type")
        invert = expression.get("invert", False)
        if not isinstance(invert, bool):
            raise _bad("'invert' must be a boolean")
        if kind in ("and", "or"):
            sql = self._logical(str(kind), expression, depth)
        elif kind in _LEAF_TYPES:
            sql = f"COALESCE(({self._leaf(str(kind), expression)}), 0)"
        else:
            raise _bad(f"unknown filter expression type {kind!r}")
        return f"(NOT {sql})" if invert else sql

    def _logical(self, kind: str, expression: Mapping[str, object], depth: int) -> str:
        subs = expression.get("sub_expressions")
        if not isinstance(subs, list):
            raise _bad(f"expression of type {kind!r} needs a list 'sub_expressions'")
        if not subs:
            return "1" if kind == "and" else "0"
        joiner = " AND " if kind == "and" else " OR "
        return "(" + joiner.join(self.expression(sub, depth + 1) for sub in subs) + ")"

    def _leaf(self, kind: str, expression: Mapping[str, object]) -> str:
        field = _field(self.fields, expression)
        if kind == "isnull":
            return f"{field.sql} IS NULL"
        if kind == "exact":
            return self._exact(field, expression)
        if kind == "contains":
            return self._contains(field, expression)
        return self._compare(field, expression)

    def _case_insensitive(self, expression: Mapping[str, object]) -> bool:
        flag = expression.get("case_insensitive", False)
        if not isinstance(flag, bool):
            raise _bad("'case_insensitive' must be a boolean")
        return flag

    def _exact(self, field: Field, expression: Mapping[str, object]) -> str:
        if "value" not in expression:
            raise _bad("expression of type 'exact' needs a 'value'")
        value = expression["value"]
        insensitive = self._case_insensitive(expression)
        if value is None:
            return f"{field.sql} IS NULL"
        self.params.append(_coerce(field, value))
        if insensitive and field.kind == "text":
            return f"lower({field.sql}) = lower(?)"
        return f"{field.sql} = ?"

    def _contains(self, field: Field, expression: Mapping[str, object]) -> str:
        sub_string = expression.get("sub_string")
        if not isinstance(sub_string, str):
            raise _bad("expression of type 'contains' needs a string 'sub_string'")
        self.params.append(sub_string)
        column = f"CAST({field.sql} AS TEXT)"
        if self._case_insensitive(expression):
            return f"instr(lower({column}), lower(?)) > 0"
        return f"instr({column}, ?) > 0"

    def _compare(self, field: Field, expression: Mapping[str, object]) -> str:
        operator = expression.get("operator")
        if not isinstance(operator, str) or operator not in _OPERATORS:
            raise _bad(f"unknown comparison operator {operator!r}")
        value = expression.get("value")
        if value is None:
            raise _bad("expression of type 'compare' needs a non-null 'value'")
        if field.kind == "bool" or (field.kind == "int" and isinstance(value, float)):
            raise _bad(f"cannot compare a {field.kind} field with {value!r}")
        self.params.append(_coerce(field, value))
        return f"{field.sql} {_OPERATORS[operator]} ?"


def _order_by(fields: Mapping[str, Field], spec: object, pk_sql: str) -> str:
    if spec is None:
        spec = []
    if not isinstance(spec, list):
        raise _bad("'order_by' must be a list")
    terms: list[str] = []
    for item in spec:
        if not isinstance(item, dict):
            raise _bad("each 'order_by' entry must be an object")
        field = _field(fields, item)
        ascending = item.get("ascending", True)
        nulls_first = item.get("nulls_first", not ascending)
        if not isinstance(ascending, bool) or not isinstance(nulls_first, bool):
            raise _bad("'ascending' and 'nulls_first' must be booleans")
        terms.append(f"({field.sql} IS NULL) {'DESC' if nulls_first else 'ASC'}")
        terms.append(f"{field.sql} {'ASC' if ascending else 'DESC'}")
    terms.append(f"{pk_sql} ASC")
    return ", ".join(terms)


def compile_spec(
    spec: object,
    fields: Mapping[str, Field],
    *,
    pk_sql: str,
    deleted_sql: str | None = None,
) -> Query:
    """Compile a filter spec against `fields`.

    `deleted_sql` is the soft-delete column: rows with it set are left out unless the spec
    says `include_soft_deleted: true`. Results always end ordered by `pk_sql`.
    """
    if not isinstance(spec, dict):
        raise _bad("the filter spec must be a JSON object")
    expressions = spec.get("expressions", [])
    if not isinstance(expressions, list):
        raise _bad("'expressions' must be a list")
    include_deleted = spec.get("include_soft_deleted", False)
    if not isinstance(include_deleted, bool):
        raise _bad("'include_soft_deleted' must be a boolean")
    compiler = _Compiler(fields)
    conditions = [compiler.expression(expression, 1) for expression in expressions]
    if deleted_sql is not None and not include_deleted:
        conditions.append(f"{deleted_sql} IS NULL")
    where = " AND ".join(conditions) if conditions else "1"
    order_by = _order_by(fields, spec.get("order_by"), pk_sql)
    return Query(where=where, order_by=order_by, params=compiler.params)
