"""The node serializer: a `nodes/create` or `PATCH /v1/nodes/{pk}` body → node fields.

Mirrors the real server's DRF `ModelSerializer` over its `Node` model: every field is
checked and all errors come back at once as `{"field": ["message"], ...}` (400).
- `ip`: text (numbers are taken as text), at most 39 characters, not blank; required.
- `index`: an integer (`"2"` and `2.0` are taken); required. A negative index passes
  validation and then breaks the table's CHECK constraint (see `store.py`).
- `cpu_mem`: an integer (bytes); required, not null. `gpu_mem`: an integer or null.
- `driver_version`: text of at most 16 characters, or null; not blank.
- `hardware_generation`: the pk of a hardware row (`6`, `"6"`, `6.0`), or null; text that
  is not a number is "Incorrect type", an unknown pk "object does not exist".
Unknown and read-only keys (`pk`, `last_seen`, `current_job`) are ignored. A PATCH only
checks the keys it carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.devserver.errors import FieldErrors

_REQUIRED = "This field is required."
_NULL = "This field may not be null."
_DECIMAL_TAIL = re.compile(r"\.0*\s*$")
_MAX_NUMBER_TEXT = 1000


@dataclass(frozen=True)
class NodeFields:
    """The writable fields of a node."""

    ip: str
    index: int
    cpu_mem: int
    gpu_mem: int | None
    driver_version: str | None
    hardware_generation: int | None


class _Invalid(Exception):
    pass


def _text(max_length: int) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Invalid("Not a valid string.")
        text = str(value).strip()
        if not text:
            raise _Invalid("This field may not be blank.")
        if len(text) > max_length:
            raise _Invalid(f"Ensure this field has no more than {max_length} characters.")
        if "\x00" in text:
            raise _Invalid("Null characters are not allowed.")
        return text

    return parse


def _integer(message: str) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
            raise _Invalid("String value too large.")
        try:
            return int(_DECIMAL_TAIL.sub("", str(value)))
        except ValueError:
            raise _Invalid(message) from None

    return parse


def _primary_key(pks: Container[int]) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _Invalid(f"Incorrect type. Expected pk value, received {type(value).__name__}.")
        try:
            pk = int(value)
        except ValueError:
            raise _Invalid(
                f"Incorrect type. Expected pk value, received {type(value).__name__}."
            ) from None
        if pk not in pks:
            raise _Invalid(f'Invalid pk "{value}" - object does not exist.')
        return pk

    return parse


def node_fields(
    body: object, hardware_pks: Container[int], current: NodeFields | None = None
) -> NodeFields:
    """Validated fields from a create body (`current` None) or a PATCH body over `current`."""
    if not isinstance(body, Mapping):
        kind = type(body).__name__ if body is not None else "null"
        raise FieldErrors(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    fields: dict[str, tuple[Callable[[object], Any], bool]] = {
        # name: (parser, nullable)
        "ip": (_text(39), False),
        "index": (_integer("A valid integer is required."), False),
        "driver_version": (_text(16), True),
        "hardware_generation": (_primary_key(hardware_pks), True),
        "gpu_mem": (_integer("A valid biginteger is required."), True),
        "cpu_mem": (_integer("A valid biginteger is required."), False),
    }
    required = {"ip", "index", "cpu_mem"} if current is None else set()
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, (parse, nullable) in fields.items():
        if name not in body:
            if name in required:
                errors[name] = [_REQUIRED]
            continue
        value = body[name]
        if value is None:
            if nullable:
                values[name] = None
            else:
                errors[name] = [_NULL]
            continue
        try:
            values[name] = parse(value)
        except _Invalid as exc:
            errors[name] = [str(exc)]
    if errors:
        raise FieldErrors(errors)
    if current is not None:
        return replace(current, **values)
    values.setdefault("gpu_mem", None)
    values.setdefault("driver_version", None)
    values.setdefault("hardware_generation", None)
    return NodeFields(**values)
