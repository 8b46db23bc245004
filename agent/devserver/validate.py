"""Request bodies: parsing by content type, and the JSON documents the real server checks
strictly (its `wai.json` specs: unknown keys and wrong types are a 400 `{"detail"}`).

A body is parsed before any object is looked up, as DRF does when the real server logs each
request: malformed JSON is a 400 even on an unknown job. An empty body reads as `{}`; a
body that is not JSON (by its `Content-Type`, a missing one included) is a 415. Views that
call `dict(request.data)` on the real server crash (HTML 500) on most non-object bodies:
`JsonBody.as_dict` reproduces that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.devserver.errors import ApiError, ServerCrash
from agent.devserver.seeds import LICENCES

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


class JsonBody:
    """A request body, parsed."""

    def __init__(self, value: object) -> None:
        self._value = value

    @classmethod
    def parse(cls, raw: bytes, content_type: str | None) -> JsonBody:
        """Parse as DRF would: 400 for malformed JSON, 415 for an unsupported media type."""
        if not raw:
            return cls({})
        content_type = content_type or ""
        media = content_type.split(";", 1)[0].strip().lower()
        if media in _FORM_TYPES:
            return cls({})
        if media != "application/json":
            raise ApiError(415, f'Unsupported media type "{content_type}" in request.')
        try:
            return cls(json.loads(raw, parse_constant=_reject_constant))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"JSON parse error - {exc}") from None

    def value(self) -> object:
        """The parsed JSON value."""
        return self._value

    def as_dict(self) -> dict[Any, Any]:
        """`dict(request.data)`: objects as they are, most other values an HTML 500."""
        try:
            converted: dict[Any, Any] = dict(self._value)  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise ServerCrash(f"{type(exc).__name__}: {exc}") from None
        return converted


def _bad(message: str) -> ApiError:
    return ApiError(400, f"Unable to parse JSON: {message}")


def _strict(body: Mapping[str, Any], where: str, required: set[str], allowed: set[str]) -> None:
    keys = set(body)
    if not required <= keys:
        raise _bad(f"{where}: missing {sorted(required - keys)}")
    if not keys <= allowed:
        raise _bad(f"{where}: unknown keys {sorted(keys - allowed)}")


def _text(
    body: Mapping[str, Any], key: str, minimum: int = 0, maximum: int | None = None
) -> str | None:
    """A string property (None when absent); 400 on a wrong type or length."""
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str):
        raise _bad(f"{key!r} must be a string")
    if len(value) < minimum or (maximum is not None and len(value) > maximum):
        raise _bad(f"{key!r} must have {minimum} to {maximum} characters")
    return value


def _mapping(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, dict):
        raise _bad(f"{key!r} must be an object")
    return value


@dataclass(frozen=True)
class TemplateSpec:
    """A validated `job-templates/import` body."""

    name: str
    scope: str
    licence: str
    description: str
    job_type: str
    executor_class: str
    required_packages: str
    parameters: dict[str, dict[str, Any]]


def _parameter(name: str, spec: object) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _bad(f"parameter {name!r} must be an object")
    _strict(
        spec,
        f"parameter {name!r}",
        {"types", "help"},
        {"types", "help", "default", "default_type", "const"},
    )
    types = spec["types"]
    if (
        not isinstance(types, list)
        or not types
        or not all(isinstance(t, str) and 1 <= len(t) <= 256 for t in types)
    ):
        raise _bad(f"parameter {name!r}: 'types' must be a non-empty list of strings")
    help_text = _text(spec, "help") or ""
    const = spec.get("const", False)
    if not isinstance(const, bool):
        raise _bad(f"parameter {name!r}: 'const' must be a boolean")
    has_default = "default" in spec
    if const and not has_default:
        raise _bad(f"parameter {name!r}: must provide a default value for const parameters")
    default_type = _text(spec, "default_type")
    if has_default and default_type is None:
        default_type = types[0]
    if default_type is not None and default_type not in types:
        raise ApiError(400, f"Bad job template: default type {default_type!r} not in {types}")
    entry: dict[str, Any] = {"types": list(types), "help": help_text}
    if has_default:
        entry |= {"default": spec["default"], "default_type": default_type, "const": const}
    return entry


def template_spec(body: Mapping[str, Any]) -> TemplateSpec:
    """Validate an import body: `{"name", "scope", "licence", "specific": {...}}`.

    The licence must be one the real server seeds; `domain` and `version` are accepted and
    ignored. Job types are not parsed (this server does not know UFDL's type system).
    """
    _strict(
        body,
        "template",
        {"name", "scope", "licence", "specific"},
        {"name", "version", "description", "scope", "licence", "domain", "specific"},
    )
    specific = _mapping(body, "specific")
    if specific is None:
        raise _bad("'specific' must be an object")
    _strict(
        specific,
        "specific",
        {"job_type", "executor_class", "required_packages", "parameters"},
        {"job_type", "executor_class", "required_packages", "parameters"},
    )
    parameters = _mapping(specific, "parameters") or {}
    licence = _text(body, "licence", 1, 100) or ""
    if licence not in LICENCES:
        raise ApiError(400, f"Bad job template: unknown licence {licence!r}")
    return TemplateSpec(
        name=_text(body, "name", 1, 200) or "",
        scope=_text(body, "scope", 1, 16) or "",
        licence=licence,
        description=_text(body, "description") or "",
        job_type=_text(specific, "job_type", 1, 256) or "",
        executor_class=_text(specific, "executor_class", 0, 128) or "",
        required_packages=_text(specific, "required_packages") or "",
        parameters={str(k): _parameter(str(k), v) for k, v in parameters.items()},
    )


@dataclass(frozen=True)
class JobSpec:
    """A validated `create-job` body."""

    parameter_values: dict[str, Any]
    description: str


def _value_type_pairs(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    pairs = _mapping(body, key)
    for name, pair in (pairs or {}).items():
        if not isinstance(pair, dict):
            raise _bad(f"{key}.{name} must be an object")
        _strict(pair, f"{key}.{name}", {"value", "type"}, {"value", "type"})
        _text(pair, "type")
    return pairs


def job_spec(body: Mapping[str, Any], parameters: Mapping[str, Mapping[str, Any]]) -> JobSpec:
    """Validate a create-job body against the template's `parameters`, in the real
    server's order: the document (400), then each template parameter (a missing required
    one 400, a const one given or a type not allowed 406), then unknown names (406).
    Input values are dropped: templates here declare no inputs, and the real server drops
    undeclared ones.

    Without `parameter_values` (and no required parameter missing) the real server saves
    the job, then crashes serialising its null `parameter_values`, rolling it back: an
    HTML 500 and no job.
    """
    _strict(
        body,
        "create-job",
        {"input_values"},
        {
            "input_values",
            "parameter_values",
            "description",
            "notification_override",
            "child_notification_overrides",
        },
    )
    _value_type_pairs(body, "input_values")
    given = _value_type_pairs(body, "parameter_values")
    description = _text(body, "description") or ""
    if "child_notification_overrides" in body:
        raise ApiError(406, "Attempted an add child notification overrides to a non-meta-job")
    values = given or {}
    for name, parameter in parameters.items():
        if "default" not in parameter:
            if name not in values:
                _refuse(400, f"Required parameter '{name}' is missing")
        elif parameter.get("const") and name in values:
            _refuse(406, f"{name} is const")
        if name in values and values[name]["type"] not in parameter["types"]:
            _refuse(406, f"Parameter type {values[name]['type']} is invalid for '{name}'")
    unknown = sorted(set(values) - set(parameters))
    if unknown:
        _refuse(406, f"Unknown job parameters: {', '.join(unknown)}")
    if given is None:
        raise ServerCrash(
            "TypeError: the JSON object must be str, bytes or bytearray, not NoneType"
        )
    return JobSpec(parameter_values=given, description=description)


def _refuse(status: int, message: str) -> None:
    raise ApiError(status, message)


def start_spec(body: Mapping[str, Any]) -> None:
    """A start body: `{"send_notification": str}` (other keys allowed); else 400."""
    if not isinstance(body.get("send_notification"), str):
        raise _bad("'send_notification' must be a string")


def finish_spec(body: Mapping[str, Any]) -> str | None:
    """A finish body `{"success": bool, "send_notification": str, "error"?: str}` (other keys
    allowed): its `error`, or None; else 400."""
    if not isinstance(body.get("success"), bool):
        raise _bad("'success' must be a boolean")
    if not isinstance(body.get("send_notification"), str):
        raise _bad("'send_notification' must be a string")
    return _text(body, "error")
