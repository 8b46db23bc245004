"""Reading work: the job JSON and the filter-spec language of `POST /v1/jobs/list`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from .helpers import JOB_FIELDS, START, WORK_FILTER, World


def _list(world: World, spec: Any) -> list[int]:
    reply = world.node.post("/v1/jobs/list", json=spec)
    assert reply.status_code == 200, reply.text
    return [job["pk"] for job in reply.json()]


def _one(kind: str, **fields: Any) -> dict[str, Any]:
    return {"expressions": [{"type": kind, **fields}]}


def test_job_json_has_exactly_the_protocol_fields(world: World) -> None:
    values = {"analysis": {"value": {"command": ["echo", "hi"], "n": 1}, "type": "JSON"}}
    job = world.job(world.new_job("first", parameter_values=values))
    assert set(job) == JOB_FIELDS
    assert job["template"] == {"pk": world.template(), "name": "analysis", "version": 1}
    assert job["parameter_values"] == values
    assert job["input_values"] == {}
    assert job["description"] == "first"
    assert job["outputs"] == []
    assert job["is_cancelled"] is False
    assert job["parent"] is None
    assert job["creator"] == 1
    created = datetime.fromisoformat(job["creation_time"])
    assert created.utcoffset() is not None
    assert "+" in job["creation_time"] or job["creation_time"].endswith("Z")
    for key in ("start_time", "end_time", "error_reason", "node", "deletion_time"):
        assert job[key] is None


def test_unknown_job_is_404(world: World) -> None:
    reply = world.node.get("/v1/jobs/4242")
    assert reply.status_code == 404
    assert reply.json() == {"detail": "Not found."}


def test_protocol_work_filter_lists_only_free_jobs(world: World) -> None:
    node = world.new_node()
    free_1 = world.new_job()
    taken = world.acquired(node)
    started = world.started(world.new_node())
    free_2 = world.new_job()
    errored = world.errored(world.new_node())
    assert _list(world, WORK_FILTER) == [free_1, free_2]
    assert {taken, started, errored}.isdisjoint(_list(world, WORK_FILTER))


def test_empty_spec_lists_everything(world: World) -> None:
    jobs = [world.new_job() for _ in range(3)]
    assert _list(world, {}) == jobs
    assert (
        world.node.post("/v1/jobs/list").json() == world.node.post("/v1/jobs/list", json={}).json()
    )


def test_is_null_is_400(world: World) -> None:
    reply = world.node.post("/v1/jobs/list", json=_one("is_null", field="start_time"))
    assert reply.status_code == 400
    assert "detail" in reply.json()


@pytest.mark.parametrize(
    "spec",
    [
        _one("isnull", field="no_such_field"),
        _one("exact", field="template.nope", value=1),
        {"expressions": [], "order_by": [{"field": "bogus"}]},
        # A property of the job JSON, not a column of the real server's table.
        _one("exact", field="is_cancelled", value=True),
        # Values the field cannot take: Django fails building the query.
        _one("exact", field="pk", value="abc"),
        _one("compare", field="pk", operator=">", value="abc"),
        _one("exact", field="start_time", value="not a time"),
        # Bodies the view cannot turn into a dict.
        "x",
        [1],
    ],
)
def test_unknown_field_or_value_is_an_html_500(world: World, spec: Any) -> None:
    reply = world.node.post("/v1/jobs/list", json=spec)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "spec",
    [
        {"expressions": "x"},
        {"expressions": [{"type": "and"}]},
        _one("and", sub_expressions=[{"type": "isnull", "field": "node"}]),
        _one(
            "and",
            sub_expressions=[
                _one("isnull", field="node")["expressions"][0],
                {"type": "or", "sub_expressions": []},
            ],
        ),
        _one("exact", field="pk"),
        _one("exact", field="pk", value=None),
        _one("compare", field="pk", operator="!=", value=1),
        _one("compare", field="pk", operator="=", value=1),
        _one("compare", field="pk", operator="<", value=None),
        _one("contains", field="description"),
        _one("contains", field="description", sub_string=""),
        _one("isnull", field="node", invert="yes"),
        _one("isnull", field="node", value=1),
        {"include_soft_deleted": True},
        {"order_by": [{"field": "pk", "descending": True}]},
    ],
)
def test_malformed_specs_are_400(world: World, spec: Any) -> None:
    reply = world.node.post("/v1/jobs/list", json=spec)
    assert reply.status_code == 400, reply.text
    assert "detail" in reply.json()


def test_expressions(world: World) -> None:
    a = world.new_job("Alpha run")
    b = world.new_job("beta run")
    c = world.new_job("gamma")
    assert _list(world, _one("exact", field="description", value="alpha run")) == []
    spec = _one("exact", field="description", value="alpha run", case_insensitive=True)
    assert _list(world, spec) == [a]
    assert _list(world, _one("exact", field="pk", value=b)) == [b]
    assert _list(world, _one("exact", field="pk", value=b, invert=True)) == [a, c]
    assert _list(world, _one("contains", field="description", sub_string="run")) == [a, b]
    spec = _one("contains", field="description", sub_string="ALPHA", case_insensitive=True)
    assert _list(world, spec) == [a]
    # SQLite's LIKE: `contains` ignores (ASCII) case on the real server even when not asked.
    assert _list(world, _one("contains", field="description", sub_string="ALPHA")) == [a]
    assert _list(world, _one("contains", field="description", sub_string="%")) == []
    assert _list(world, _one("compare", field="pk", operator=">=", value=b)) == [b, c]
    assert _list(world, _one("compare", field="pk", operator="<", value=b)) == [a]
    assert _list(world, _one("exact", field="pk", value=str(c))) == [c]
    subs = [
        {"type": "exact", "field": "pk", "value": a},
        {"type": "exact", "field": "pk", "value": c},
    ]
    assert _list(world, _one("or", sub_expressions=subs)) == [a, c]
    assert _list(world, _one("or", sub_expressions=subs, invert=True)) == [b]
    assert _list(world, _one("and", sub_expressions=subs)) == []
    # An `or` may hold an `and`; an `and` holds field expressions only (see the 400s).
    both = {"type": "and", "sub_expressions": subs}
    assert _list(world, _one("or", sub_expressions=[both, subs[0]])) == [a]


def test_invert_keeps_null_rows_like_django_exclude(world: World) -> None:
    node = world.new_node()
    free = world.new_job()
    taken = world.acquired(node)
    assert _list(world, _one("exact", field="node", value=node, invert=True)) == [free]
    assert _list(world, _one("exact", field="node", value=node)) == [taken]
    assert _list(world, _one("isnull", field="node")) == [free]


def test_time_comparisons_and_ordering(world: World) -> None:
    first = world.new_job()
    cut = world.job(first)["creation_time"]
    second = world.new_job()
    spec = _one("compare", field="creation_time", operator=">", value=cut)
    assert _list(world, spec) == [second]
    zulu = cut.replace("+00:00", "Z")
    spec = _one("compare", field="creation_time", operator="<=", value=zulu)
    assert _list(world, spec) == [first]
    newest_first = {"order_by": [{"field": "creation_time", "ascending": False}]}
    assert _list(world, newest_first) == [second, first]


def test_template_fields(world: World) -> None:
    node = world.new_node()
    running = world.started(node)
    other = world.new_job()
    spec = _one("exact", field="template.workabletemplate.executor_class", value="agent.analysis")
    assert _list(world, spec) == [running, other]
    assert _list(world, _one("exact", field="template", value=world.template() + 1)) == []


def test_started_job_listing_shows_node_and_start(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    world.node.post(f"/v1/jobs/{job}/start", node=node, json=START)
    [listed] = world.node.post("/v1/jobs/list", json=_one("exact", field="pk", value=job)).json()
    assert listed["node"] == node
    assert listed["start_time"] is not None
