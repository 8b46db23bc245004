"""UFDL filter specs → SQL, through a field allowlist.

The grammar is the real server's `FilterSpec`, checked as strictly (unknown keys, wrong
types or a short `sub_expressions` list are a 400, like its JSON-schema validation):
`{"expressions"?: [...], "order_by"?: [{"field", "ascending"?, "nulls_first"?}],
"include_inactive"?: bool}`; top-level expressions are AND-ed. Expressions, each with an
optional `invert`: `and` {sub_expressions: ≥2 field expressions}, `or` {sub_expressions: ≥2
field or `and` expressions}, `exact` {field, value: str|number|bool, case_insensitive?},
`contains` {field, sub_string (non-empty), case_insensitive?}, `isnull` {field} and
`compare` {field, operator: `<` `<=` `>` `>=`, value: str|number}.

How the real server (Django on SQLite) evaluates them, reproduced here:
- an unknown field (in an expression or in `order_by`) is a `FieldError`: HTML 500;
- a value the field cannot take (`"abc"` for a pk, a bad timestamp) is an HTML 500 too;
- `contains` is SQLite `LIKE`: case-insensitive (ASCII) whether or not it is asked for;
- `invert` behaves like Django's `exclude()`: rows where the field is NULL are kept;
- without `nulls_first: true`, NULLs sort as SQLite does: first ascending, last descending
  (Django 4.2 takes `nulls_first: false` as not given).

No user text ever reaches the SQL: field names select SQL from the allowlist and every
value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agent.devserver.errors import ApiError, ServerCrash
from agent.devserver.timestamps import normalise

FieldKind = Literal["int", "float", "text", "time"]

_OPERATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_KEYS: dict[str, frozenset[str]] = {
    "and": frozenset({"type", "sub_expressions", "invert"}),
    "or": frozenset({"type", "sub_expressions", "invert"}),
    "exact": frozenset({"type", "field", "value", "case_insensitive", "invert"}),
    "contains": frozenset({"type", "field", "sub_string", "case_insensitive", "invert"}),
    "isnull": frozenset({"type", "field", "invert"}),
    "compare": frozenset({"type", "field", "operator", "value", "invert"}),
}
_REQUIRED: dict[str, frozenset[str]] = {
    "and": frozenset({"type", "sub_expressions"}),
    "or": frozenset({"type", "sub_expressions"}),
    "exact": frozenset({"type", "field", "value"}),
    "contains": frozenset({"type", "field", "sub_string"}),
    "isnull": frozenset({"type", "field"}),
    "compare": frozenset({"type", "field", "operator", "value"}),
}
_FIELD_TYPES = frozenset({"exact", "contains", "isnull", "compare"})


@dataclass(frozen=True)
class Field:
    """One filterable field: trusted SQL for it and how values compared with it convert."""

    sql: str
    kind: FieldKind


@dataclass(frozen=True)
class Query:
    """The compiled spec: a WHERE condition, an ORDER BY list and the bound parameters."""

    where: str
    order_by: str
    params: list[object]


def _bad(message: str) -> ApiError:
    return ApiError(400, f"Unable to parse JSON: {message}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flag(expression: Mapping[str, object], key: str) -> bool:
    value = expression.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{key!r} must be a boolean")
    return value


def _check_shape(expression: object, allowed: frozenset[str]) -> tuple[str, Mapping[str, object]]:
    """The expression's type, once its keys and value types are valid; else 400."""
    if not isinstance(expression, dict):
        raise _bad("each filter expression must be an object")
    kind = expression.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise _bad(f"unknown or misplaced filter expression type {kind!r}")
    keys = set(expression)
    if not keys <= _KEYS[kind] or not _REQUIRED[kind] <= keys:
        raise _bad(f"expression of type {kind!r} has keys {sorted(keys)}")
    _flag(expression, "invert")
    if kind in _FIELD_TYPES:
        field = expression["field"]
        if not isinstance(field, str) or not field:
            raise _bad("'field' must be a non-empty string")
    if kind in ("exact", "contains"):
        _flag(expression, "case_insensitive")
    if kind == "exact" and not isinstance(expression["value"], str | int | float):
        raise _bad("an 'exact' value must be a string, number or boolean")
    if kind == "compare":
        value = expression["value"]
        if not isinstance(value, str) and not _is_number(value):
            raise _bad("a 'compare' value must be a string or number")
        if expression["operator"] not in _OPERATORS:
            raise _bad(f"unknown comparison operator {expression['operator']!r}")
    if kind == "contains":
        sub_string = expression["sub_string"]
        if not isinstance(sub_string, str) or not sub_string:
            raise _bad("'sub_string' must be a non-empty string")
    return kind, expression


def _field(fields: Mapping[str, Field], name: object) -> Field:
    try:
        return fields[str(name)]
    except KeyError:
        raise ServerCrash(f"FieldError: Cannot resolve keyword {name!r} into field.") from None


def _convert(field: Field, value: object) -> object:
    """A filter value as Django would prepare it for `field`; HTML 500 when it cannot be."""
    if field.kind == "text":
        return str(value)
    if field.kind == "time" and not isinstance(value, str):
        raise ServerCrash(f"ValidationError: {value!r} is not a timestamp")
    try:
        if field.kind == "int":
            return int(value)  # type: ignore[call-overload]
        if field.kind == "float":
            return float(value)  # type: ignore[arg-type]
        return normalise(str(value))
    except (TypeError, ValueError) as exc:
        raise ServerCrash(f"{type(exc).__name__}: {exc}") from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Compiler:
    def __init__(self, fields: Mapping[str, Field]) -> None:
        self.fields = fields
        self.params: list[object] = []

    def expression(self, expression: object, allowed: frozenset[str]) -> str:
        kind, checked = _check_shape(expression, allowed)
        if kind in ("and", "or"):
            sql = self._logical(kind, checked)
        else:
            sql = f"COALESCE(({self._leaf(kind, checked)}), 0)"
        return f"(NOT {sql})" if checked.get("invert", False) else sql

    def _logical(self, kind: str, expression: Mapping[str, object]) -> str:
        subs = expression["sub_expressions"]
        if not isinstance(subs, list) or len(subs) < 2:
            raise _bad(f"{kind!r} needs a list of at least 2 'sub_expressions'")
        allowed = _FIELD_TYPES if kind == "and" else _FIELD_TYPES | {"and"}
        joiner = " AND " if kind == "and" else " OR "
        return "(" + joiner.join(self.expression(sub, allowed) for sub in subs) + ")"

    def _leaf(self, kind: str, expression: Mapping[str, object]) -> str:
        field = _field(self.fields, expression["field"])
        if kind == "isnull":
            return f"{field.sql} IS NULL"
        if kind == "contains":
            self.params.append(f"%{_escape_like(str(expression['sub_string']))}%")
            return f"CAST({field.sql} AS TEXT) LIKE ? ESCAPE '\\'"
        value = _convert(field, expression["value"])
        self.params.append(value)
        if kind == "exact":
            if expression.get("case_insensitive", False):
                self.params[-1] = _escape_like(str(value))
                return f"CAST({field.sql} AS TEXT) LIKE ? ESCAPE '\\'"
            return f"{field.sql} = ?"
        return f"{field.sql} {_OPERATORS[str(expression['operator'])]} ?"


def _check_order_by(spec: object) -> list[dict[str, object]]:
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise _bad("'order_by' must be a list")
    for item in spec:
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise _bad("each 'order_by' entry must be an object with a string 'field'")
        if not set(item) <= {"field", "ascending", "nulls_first"}:
            raise _bad(f"'order_by' entry has keys {sorted(item)}")
        _flag(item, "nulls_first")
        if not isinstance(item.get("ascending", True), bool):
            raise _bad("'ascending' must be a boolean")
    return spec


def _order_by(fields: Mapping[str, Field], items: list[dict[str, object]], pk_sql: str) -> str:
    terms: list[str] = []
    for item in items:
        field = _field(fields, item["field"])
        ascending = bool(item.get("ascending", True))
        # Django 4.2 reads `nulls_first: false` as "not given": SQLite's own order.
        nulls_first = bool(item.get("nulls_first", False)) or ascending
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
    says `include_inactive: true`. Results always end ordered by `pk_sql`.
    """
    if not isinstance(spec, dict):
        raise _bad("the filter spec must be a JSON object")
    if not set(spec) <= {"expressions", "order_by", "include_inactive"}:
        raise _bad(f"the filter spec has keys {sorted(spec)}")
    expressions = spec.get("expressions", [])
    if not isinstance(expressions, list):
        raise _bad("'expressions' must be a list")
    include_inactive = _flag(spec, "include_inactive")
    compiler = _Compiler(fields)
    top = _FIELD_TYPES | {"and", "or"}
    # Checked in full before any field is resolved: a malformed spec is a 400 even when it
    # also names an unknown field.
    for expression in expressions:
        _check_tree(expression, top)
    order_items = _check_order_by(spec.get("order_by"))
    conditions = [compiler.expression(expression, top) for expression in expressions]
    if deleted_sql is not None and not include_inactive:
        conditions.append(f"{deleted_sql} IS NULL")
    where = " AND ".join(conditions) if conditions else "1"
    order_by = _order_by(fields, order_items, pk_sql)
    return Query(where=where, order_by=order_by, params=compiler.params)


def _check_tree(expression: object, allowed: frozenset[str]) -> None:
    kind, checked = _check_shape(expression, allowed)
    if kind in ("and", "or"):
        subs = checked["sub_expressions"]
        if not isinstance(subs, list) or len(subs) < 2:
            raise _bad(f"{kind!r} needs a list of at least 2 'sub_expressions'")
        for sub in subs:
            _check_tree(sub, _FIELD_TYPES if kind == "and" else _FIELD_TYPES | {"and"})
