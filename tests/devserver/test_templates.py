"""Templates: import (staff), read, and create-job."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .helpers import TEMPLATE, World


def test_import_and_read_a_template(world: World) -> None:
    pk = world.template()
    reply = world.node.get(f"/v1/job-templates/{pk}")
    assert reply.status_code == 200
    template = reply.json()
    assert set(template) == {
        "pk",
        "name",
        "version",
        "description",
        "scope",
        "domain",
        "licence",
        "creator",
        "creation_time",
        "deletion_time",
        "type",
        "executor_class",
        "required_packages",
        "parameters",
    }
    # The licence is named on import and shown by pk; an imported template has no creator.
    assert (template["licence"], template["domain"], template["creator"]) == (2, None, None)
    assert (template["name"], template["version"], template["type"]) == ("analysis", 1, "Export")
    assert template["executor_class"] == "agent.analysis"
    analysis = template["parameters"]["analysis"]
    assert analysis == {
        "types": ["JSON"],
        "help": "the run",
        "default": {"command": "true"},
        "default_type": "JSON",
        "const": False,
    }
    assert template["parameters"]["threads"]["default_type"] == "int"


def test_a_parameter_without_default_shows_only_types_and_help(world: World) -> None:
    body = copy.deepcopy(TEMPLATE)
    body["specific"]["parameters"] = {"needed": {"types": ["int"], "help": "no default"}}
    template = world.admin.post("/v1/job-templates/import", json=body).json()
    assert template["parameters"] == {"needed": {"types": ["int"], "help": "no default"}}


def test_reimport_gets_next_version(world: World) -> None:
    first = world.admin.post("/v1/job-templates/import", json=TEMPLATE).json()
    second = world.admin.post("/v1/job-templates/import", json=TEMPLATE).json()
    assert second["pk"] != first["pk"]
    assert second["version"] == first["version"] + 1


def test_import_is_staff_only(world: World) -> None:
    assert world.node.post("/v1/job-templates/import", json=TEMPLATE).status_code == 403


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(TEMPLATE)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        _broken(["name"], KeyError),
        _broken(["specific"], KeyError),
        _broken(["specific", "executor_class"], KeyError),
        _broken(["specific", "parameters", "analysis", "types"], []),
        _broken(["specific", "parameters"], ["not", "a", "dict"]),
        _broken(["specific", "required_packages"], KeyError),
        _broken(["specific", "parameters", "analysis", "help"], KeyError),
        _broken(["specific", "parameters", "analysis", "colour"], "blue"),
        _broken(["licence"], KeyError),
        _broken(["licence"], "Beerware"),
        _broken(["scope"], ""),
        _broken(["colour"], "blue"),
    ],
)
def test_import_validates(world: World, body: dict[str, Any]) -> None:
    reply = world.admin.post("/v1/job-templates/import", json=body)
    assert reply.status_code == 400
    assert "detail" in reply.json()


def test_unknown_template_is_404(world: World) -> None:
    assert world.node.get("/v1/job-templates/999").status_code == 404
    body = {"input_values": {}, "parameter_values": {}, "description": ""}
    assert world.admin.post("/v1/job-templates/999/create-job", json=body).status_code == 404


def test_create_job_records_creator_and_values(world: World) -> None:
    values = {
        "analysis": {"value": {"command": "echo ${x}"}, "type": "JSON"},
        "threads": {"value": 4, "type": "int"},
    }
    body = {
        "input_values": {"x": {"value": "1", "type": "str"}},
        "parameter_values": values,
        "description": "d",
    }
    reply = world.node.post(f"/v1/job-templates/{world.template()}/create-job", json=body)
    assert reply.status_code == 200
    job = reply.json()
    assert job["parameter_values"] == values
    # The template declares no inputs: the real server drops undeclared ones.
    assert job["input_values"] == {}
    assert job["creator"] == 2  # the `node` user
    assert world.job(job["pk"]) == job


def test_create_job_without_parameter_values_is_html_500(world: World) -> None:
    body = {"input_values": {}, "description": "x"}
    reply = world.admin.post(f"/v1/job-templates/{world.template()}/create-job", json=body)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "values",
    [{"threads": 4}, {"threads": {"value": 4}}, {"threads": {"value": 4, "type": 5}}, []],
)
def test_create_job_malformed_parameter_values_is_400(world: World, values: Any) -> None:
    body = {"input_values": {}, "parameter_values": values, "description": ""}
    reply = world.admin.post(f"/v1/job-templates/{world.template()}/create-job", json=body)
    assert reply.status_code == 400


@pytest.mark.parametrize(
    "values",
    [{"nope": {"value": 1, "type": "int"}}, {"threads": {"value": 1, "type": "str"}}],
)
def test_create_job_unknown_parameter_or_type_is_406(world: World, values: Any) -> None:
    body = {"input_values": {}, "parameter_values": values, "description": ""}
    reply = world.admin.post(f"/v1/job-templates/{world.template()}/create-job", json=body)
    assert reply.status_code == 406


def test_create_job_needs_input_values_and_no_unknown_keys(world: World) -> None:
    url = f"/v1/job-templates/{world.template()}/create-job"
    assert world.admin.post(url, json={"parameter_values": {}}).status_code == 400
    body = {"input_values": {}, "parameter_values": {}, "colour": "blue"}
    assert world.admin.post(url, json=body).status_code == 400


def test_const_and_required_parameters(world: World) -> None:
    template = copy.deepcopy(TEMPLATE)
    template["specific"]["parameters"] = {
        "fixed": {"types": ["str"], "default": "x", "const": True, "help": ""},
        "needed": {"types": ["int"], "help": "no default"},
    }
    pk = world.admin.post("/v1/job-templates/import", json=template).json()["pk"]
    url = f"/v1/job-templates/{pk}/create-job"
    needed = {"needed": {"value": 1, "type": "int"}}
    # A required parameter is checked before `parameter_values` is missed: 400, not 500.
    assert world.admin.post(url, json={"input_values": {}}).status_code == 400
    assert (
        world.admin.post(url, json={"input_values": {}, "parameter_values": {}}).status_code == 400
    )
    fixed = {**needed, "fixed": {"value": "y", "type": "str"}}
    assert (
        world.admin.post(url, json={"input_values": {}, "parameter_values": fixed}).status_code
        == 406
    )
    reply = world.admin.post(url, json={"input_values": {}, "parameter_values": needed})
    assert reply.status_code == 200
    assert reply.json()["parameter_values"] == needed


def test_list_templates(world: World) -> None:
    pk = world.template()
    spec = {
        "expressions": [{"type": "exact", "field": "executor_class", "value": "agent.analysis"}]
    }
    reply = world.node.post("/v1/job-templates/list", json=spec)
    assert [t["pk"] for t in reply.json()] == [pk]
