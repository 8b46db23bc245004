"""Template parameters + job values (or a spec file) → :class:`RunSpec`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from agent.spec._analysis import build_run_spec
from agent.spec._checks import (
    NO_ITEMS,
    NO_OBJECT,
    Issues,
    check_url_safe,
    decode_json,
    encodable,
    fail,
    items,
    obj,
    optional_obj,
    relative_path,
    string,
    variable_text,
)
from agent.spec._model import OutputSpec, RunSpec, SpecError

RESERVED = ("analysis", "outputs")
MAX_OUTPUT_NAME = 200
"""The real server's ``JobOutput.name`` is a ``CharField(max_length=200)``."""
MAX_OUTPUT_TYPE = 200
"""``JobOutput.type`` is a ``TextField`` there (no limit), but name and type are both URL
path segments of every output call: the type gets the name's bound."""


def resolve_job_spec(
    template_parameters: Mapping[str, Any],
    parameter_values: Mapping[str, Any],
    input_values: Mapping[str, Any],
    *,
    queues: Sequence[str] = (),
) -> RunSpec:
    """A job's run spec from its template's parameters and its own values.

    ``template_parameters`` is ``{name: {types, help, default, default_type, const}}``;
    ``parameter_values`` and ``input_values`` are ``{name: {"value", "type"}}`` (a bare
    value is taken as is). Job values override template defaults, except for ``const``
    parameters, which keep the template's default. ``analysis`` is required; ``outputs``
    defaults to none. Raises :class:`SpecError` and nothing else.
    """
    parameters = _parameters(template_parameters, parameter_values)
    if parameters.get("analysis") is None:
        fail("analysis", "is required (no value and no template default)")
    inputs = obj(input_values, "input_values")
    issues = Issues()
    variables = _variables(parameters, inputs, issues)
    return _run_spec(parameters["analysis"], parameters.get("outputs"), variables, queues, issues)


def load_spec_document(doc: Any, *, queues: Sequence[str] = ()) -> RunSpec:
    """A spec file for ``agent run-once --spec``: a bare analysis in any dialect, or
    ``{"analysis", "outputs", "parameters"}`` with ``parameters`` as ``{name: value}``
    (plain values, no ``{"value", "type"}`` wrapper) and an optional ``description``."""
    data = obj(doc, "spec")
    issues = Issues()
    if "analysis" not in data:
        return _run_spec(data, None, {}, queues, issues)
    issues.keys(data, "spec", "document")
    parameters = dict(
        issues.attempt(lambda: optional_obj(data.get("parameters"), "parameters"), NO_OBJECT)
    )
    for name in RESERVED:
        if name in parameters:
            issues.add(
                SpecError(f"parameters.{name}", "is not a variable: give it at the top level")
            )
    variables = _variables(parameters, {}, issues)
    return _run_spec(data["analysis"], data.get("outputs"), variables, queues, issues)


def _run_spec(
    analysis: Any,
    outputs: Any,
    variables: Mapping[str, str],
    queues: Sequence[str],
    issues: Issues,
) -> RunSpec:
    """The analysis, then the outputs; every error of both in one :class:`SpecError`."""
    spec = build_run_spec(analysis, variables, tuple(queues), issues)
    declared = parse_outputs(outputs, issues)
    issues.raise_any()
    if spec is None:  # pragma: no cover - build_run_spec records why it has none
        fail("analysis", "could not be read")
    return replace(spec, outputs=declared)


def parse_outputs(value: Any, issues: Issues) -> tuple[OutputSpec, ...]:
    """``[{name, type, path}]``: URL-safe name and type within the server's lengths,
    relative path, no duplicates."""
    result: list[OutputSpec] = []
    seen: set[tuple[str, str]] = set()
    listed = issues.attempt(lambda: items(decode_json(value, "outputs"), "outputs"), NO_ITEMS)
    for index, item in enumerate(listed):
        field = f"outputs[{index}]"
        data = issues.attempt(partial(obj, item, field), None)
        if data is None:
            continue
        issues.keys(data, field, "output")
        name = issues.attempt(
            partial(_output_id, data.get("name"), f"{field}.name", MAX_OUTPUT_NAME), None
        )
        type_ = issues.attempt(
            partial(_output_id, data.get("type"), f"{field}.type", MAX_OUTPUT_TYPE), None
        )
        path = issues.attempt(partial(_output_path, data.get("path"), f"{field}.path"), None)
        if name is None or type_ is None or path is None:
            continue
        if (name, type_) in seen:
            issues.add(SpecError(field, f"declares output {name}/{type_} a second time"))
        seen.add((name, type_))
        result.append(OutputSpec(name, type_, path))
    return tuple(result)


def _output_id(value: Any, field: str, limit: int) -> str:
    """An output's name or type: URL-safe, at most ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        fail(
            field, f"must be at most {limit} characters (the job server's limit), got {len(value)}"
        )
    return check_url_safe(value, field)


def _output_path(value: Any, field: str) -> str:
    path = string(value, field)
    relative_path(path, field, allow_dot=True)
    return path


def _parameters(
    template_parameters: Mapping[str, Any], parameter_values: Mapping[str, Any]
) -> dict[str, Any]:
    """name → value; JSON-typed text is decoded (kept as text if it is not JSON, except
    for ``analysis`` and ``outputs``, which are decoded strictly later)."""
    merged: dict[str, tuple[Any, str | None]] = {}
    const: set[str] = set()
    for name, declared in obj(template_parameters, "parameters").items():
        declaration = obj(declared, f"parameters.{name}")
        merged[name] = (declaration.get("default"), _declared_type(declaration))
        if declaration.get("const") is True:
            const.add(name)
    for name, entry in obj(parameter_values, "parameter_values").items():
        if name not in const:
            value, kind = _unwrap(entry)
            merged[name] = (value, kind or merged.get(name, (None, None))[1])
    return {name: _decoded(name, value, kind) for name, (value, kind) in merged.items()}


def _declared_type(declaration: Mapping[str, Any]) -> str | None:
    """``default_type``, else the only entry of ``types``."""
    default_type, types = declaration.get("default_type"), declaration.get("types")
    if isinstance(default_type, str):
        return default_type
    if isinstance(types, list) and len(types) == 1 and isinstance(types[0], str):
        return types[0]
    return None


def _unwrap(entry: Any) -> tuple[Any, str | None]:
    """``{"value", "type"?}`` → (value, type); anything else is a bare value."""
    if isinstance(entry, Mapping) and "value" in entry and set(entry) <= {"value", "type"}:
        kind = entry.get("type")
        return entry["value"], kind if isinstance(kind, str) else None
    return entry, None


def _decoded(name: Any, value: Any, kind: str | None) -> Any:
    if name in RESERVED or kind != "JSON" or not isinstance(value, str):
        return value
    try:
        return decode_json(value, str(name))
    except ValueError:
        return value


def _variables(
    parameters: Mapping[str, Any], inputs: Mapping[str, Any], issues: Issues
) -> dict[str, str]:
    """Inputs, then parameters (which win on a clash), as text; null values are skipped."""
    variables: dict[str, str] = {}
    for source, values in (("input_values", inputs), ("parameters", parameters)):
        for name, entry in values.items():
            value = _unwrap(entry)[0] if source == "input_values" else entry
            if name in RESERVED or value is None:
                continue
            text = issues.attempt(partial(_variable, name, value, f"{source}.{name}"), None)
            if text is not None:
                variables[name] = text
    return variables


def _variable(name: Any, value: Any, field: str) -> str:
    if not isinstance(name, str):
        fail(field, "must have a string name")
    return encodable(variable_text(value), field)
