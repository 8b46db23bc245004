"""Request bodies: lazy JSON parsing and the validation of each endpoint's fields.

Bodies are parsed when a view first needs them (like DRF's `request.data`), so permission
errors come before body errors. An empty body reads as `{}`; invalid JSON is a 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.devserver.errors import ApiError, ServerCrash

_MISSING = "This field is required."


class JsonBody:
    """A request body, parsed on first use."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed: object = None
        self._done = False

    def value(self) -> object:
        """The parsed JSON value (`{}` for an empty body); 400 when it is not JSON."""
        if not self._done:
            if not self.raw.strip():
                self._parsed = {}
            else:
                try:
                    self._parsed = json.loads(self.raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise ApiError(400, f"JSON parse error - {exc}") from None
            self._done = True
        return self._parsed

    def object(self) -> dict[str, Any]:
        """The body as a JSON object; 400 otherwise."""
        value = self.value()
        if not isinstance(value, dict):
            raise ApiError(400, "Invalid data. Expected a dictionary.")
        return value

    def object_or_crash(self) -> dict[str, Any]:
        """The body as a JSON object; a non-object is an HTML 500.

        Reproduces the progress view's `dict(request.data)` blowing up on non-object JSON.
        """
        value = self.value()
        if not isinstance(value, dict):
            raise ServerCrash(f"TypeError: cannot convert {type(value).__name__} to dict")
        return value


def require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """`body[key]`, which must be present and of `kind` (bools are not ints); else 400."""
    if key not in body:
        raise ApiError(400, f"{key}: {_MISSING}", field=key)
    return check_type(key, body[key], kind)


def optional(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """`body[key]` of `kind` when present, else `default`; 400 on a wrong type."""
    if key not in body:
        return default
    return check_type(key, body[key], kind)


def check_type(key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """`value` if it is a `kind` (bools only pass as bool); else 400 naming `key`."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ApiError(400, f"{key}: wrong type {type(value).__name__}", field=key)
    if not isinstance(value, kinds):
        raise ApiError(400, f"{key}: wrong type {type(value).__name__}", field=key)
    return value


@dataclass(frozen=True)
class NodeFields:
    """The writable fields of a node."""

    ip: str
    index: int
    cpu_mem: int
    gpu_mem: int
    driver_version: str | None
    hardware_generation: str | None


_NODE_OPTIONAL: dict[str, tuple[type | tuple[type, ...], object]] = {
    "cpu_mem": (int, 0),
    "gpu_mem": (int, 0),
    "driver_version": ((str, type(None)), None),
    "hardware_generation": ((str, type(None)), None),
}


def node_fields(body: Mapping[str, Any], current: NodeFields | None = None) -> NodeFields:
    """Node fields from a create body (`current` None) or a PATCH body over `current`."""
    if current is None:
        ip = require(body, "ip", str)
        index = require(body, "index", int)
        values: dict[str, Any] = {
            k: optional(body, k, t, d) for k, (t, d) in _NODE_OPTIONAL.items()
        }
    else:
        ip = optional(body, "ip", str, current.ip)
        index = optional(body, "index", int, current.index)
        values = {
            k: optional(body, k, t, getattr(current, k)) for k, (t, _) in _NODE_OPTIONAL.items()
        }
    fields = NodeFields(ip=ip, index=index, **values)
    for key in ("index", "cpu_mem", "gpu_mem"):
        if getattr(fields, key) < 0:
            raise ApiError(400, f"{key}: must be >= 0", field=key)
    if not fields.ip:
        raise ApiError(400, "ip: may not be blank", field="ip")
    return fields


@dataclass(frozen=True)
class TemplateSpec:
    """A validated `job-templates/import` body."""

    name: str
    scope: str | None
    licence: str | None
    description: str
    job_type: str
    executor_class: str
    required_packages: str
    parameters: dict[str, dict[str, Any]]


def _parameter(name: str, spec: object) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ApiError(400, f"parameters.{name}: must be an object")
    types = spec.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ApiError(400, f"parameters.{name}.types: must be a non-empty list of strings")
    help_text = optional(spec, "help", str, "")
    const = optional(spec, "const", bool, False)
    has_default = "default" in spec
    default_type = optional(spec, "default_type", (str, type(None)), None)
    if has_default and default_type is None:
        default_type = types[0]
    if default_type is not None and default_type not in types:
        raise ApiError(400, f"parameters.{name}.default_type: not one of {types}")
    return {
        "types": list(types),
        "help": help_text,
        "default": spec.get("default"),
        "default_type": default_type if has_default else None,
        "const": const,
    }


def template_spec(body: Mapping[str, Any]) -> TemplateSpec:
    """Validate an import body: `{"name", "scope", "licence", "specific": {...}}`."""
    name = require(body, "name", str)
    if not name:
        raise ApiError(400, "name: may not be blank", field="name")
    specific = require(body, "specific", dict)
    parameters = optional(specific, "parameters", dict, {})
    return TemplateSpec(
        name=name,
        scope=optional(body, "scope", (str, type(None)), None),
        licence=optional(body, "licence", (str, type(None)), None),
        description=optional(body, "description", str, ""),
        job_type=require(specific, "job_type", str),
        executor_class=require(specific, "executor_class", str),
        required_packages=optional(specific, "required_packages", str, ""),
        parameters={str(k): _parameter(str(k), v) for k, v in parameters.items()},
    )


@dataclass(frozen=True)
class JobSpec:
    """A validated `create-job` body."""

    input_values: dict[str, Any]
    parameter_values: dict[str, Any]
    description: str


def job_spec(body: Mapping[str, Any], parameters: Mapping[str, Mapping[str, Any]]) -> JobSpec:
    """Validate a create-job body against the template's `parameters`.

    A missing `parameter_values` is an HTML 500, as on the real server.
    """
    if "parameter_values" not in body:
        raise ServerCrash("KeyError: 'parameter_values'")
    values = check_type("parameter_values", body["parameter_values"], dict)
    for name, entry in values.items():
        if name not in parameters:
            raise ApiError(400, f"parameter_values: unknown parameter {name!r}")
        if not isinstance(entry, dict) or "value" not in entry:
            raise ApiError(400, f"parameter_values.{name}: must be {{'value', 'type'}}")
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in parameters[name]["types"]:
            raise ApiError(400, f"parameter_values.{name}.type: {kind!r} is not allowed")
        if parameters[name].get("const"):
            raise ApiError(400, f"parameter_values.{name}: parameter is const")
    return JobSpec(
        input_values=optional(body, "input_values", dict, {}),
        parameter_values=values,
        description=optional(body, "description", str, ""),
    )
