"""Template parameters + job values (or a spec file) → :class:`RunSpec`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.spec._analysis import build_run_spec
from agent.spec._checks import (
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
from agent.spec._model import OutputSpec, RunSpec

RESERVED = ("analysis", "outputs")


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
    variables = _variables(parameters, obj(input_values, "input_values"))
    return build_run_spec(
        parameters["analysis"], parse_outputs(parameters.get("outputs")), variables, tuple(queues)
    )


def load_spec_document(doc: Any, *, queues: Sequence[str] = ()) -> RunSpec:
    """A spec file for ``agent run-once --spec``: a bare analysis in any dialect, or
    ``{"analysis", "outputs", "parameters"}`` with ``parameters`` as ``{name: value}``
    (plain values, no ``{"value", "type"}`` wrapper). Other top-level keys are ignored."""
    data = obj(doc, "spec")
    if "analysis" not in data:
        return build_run_spec(data, (), {}, tuple(queues))
    parameters = dict(optional_obj(data.get("parameters"), "parameters"))
    for name in RESERVED:
        if name in parameters:
            fail(f"parameters.{name}", "is not a variable: give it at the top level")
    return build_run_spec(
        data["analysis"],
        parse_outputs(data.get("outputs")),
        _variables(parameters, {}),
        tuple(queues),
    )


def parse_outputs(value: Any) -> tuple[OutputSpec, ...]:
    """``[{name, type, path}]``: URL-safe name and type, relative path, no duplicates."""
    result: list[OutputSpec] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items(decode_json(value, "outputs"), "outputs")):
        field = f"outputs[{index}]"
        data = obj(item, field)
        name = check_url_safe(data.get("name"), f"{field}.name")
        kind = check_url_safe(data.get("type"), f"{field}.type")
        path = string(data.get("path"), f"{field}.path")
        relative_path(path, f"{field}.path", allow_dot=True)
        if (name, kind) in seen:
            fail(field, f"declares output {name}/{kind} a second time")
        seen.add((name, kind))
        result.append(OutputSpec(name, kind, path))
    return tuple(result)


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


def _variables(parameters: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, str]:
    """Inputs, then parameters (which win on a clash), as text; null values are skipped."""
    variables: dict[str, str] = {}
    for source, values in (("input_values", inputs), ("parameters", parameters)):
        for name, entry in values.items():
            value = _unwrap(entry)[0] if source == "input_values" else entry
            if name in RESERVED or value is None:
                continue
            field = f"{source}.{name}"
            if not isinstance(name, str):
                fail(field, "must have a string name")
            variables[name] = encodable(variable_text(value), field)
    return variables
