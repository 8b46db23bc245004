"""Nodes: create (the real serializer's field rules), list by (ip, index), get, PATCH by
itself or staff, ping, Node-Id handling."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from .helpers import World


def _find(world: World, ip: str, index: int) -> list[dict[str, object]]:
    spec = {
        "expressions": [
            {
                "type": "and",
                "sub_expressions": [
                    {"type": "exact", "field": "ip", "value": ip},
                    {"type": "exact", "field": "index", "value": index},
                ],
            }
        ]
    }
    reply = world.node.post("/v1/nodes/list", json=spec)
    assert reply.status_code == 200, reply.text
    result: list[dict[str, object]] = reply.json()
    return result


def test_create_get_and_find_a_node(world: World) -> None:
    body = {
        "ip": "10.0.0.7",
        "index": 2,
        "cpu_mem": 8192,
        "gpu_mem": 0,
        "driver_version": "none",
        "hardware_generation": None,
    }
    reply = world.node.post("/v1/nodes/create", json=body)
    assert reply.status_code == 201
    node = reply.json()
    assert set(node) == {
        "pk",
        "ip",
        "index",
        "cpu_mem",
        "gpu_mem",
        "driver_version",
        "hardware_generation",
        "current_job",
        "last_seen",
    }
    assert node["current_job"] is None
    assert world.node_info(node["pk"]) == node
    world.new_node("10.0.0.7", 3)
    world.new_node("10.0.0.8", 2)
    assert [n["pk"] for n in _find(world, "10.0.0.7", 2)] == [node["pk"]]
    assert _find(world, "10.0.0.9", 0) == []


def test_duplicate_ip_index_is_400(world: World) -> None:
    world.new_node("10.0.0.1", 0)
    body = {"ip": "10.0.0.1", "index": 0, "cpu_mem": 1}
    reply = world.node.post("/v1/nodes/create", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"non_field_errors": ["The fields ip, index must make a unique set."]}


CPU_ONLY = {"ip": "10.5.5.5", "index": 0, "cpu_mem": 32 << 30}


def _create(world: World, **fields: Any) -> httpx.Response:
    body = {**CPU_ONLY, **fields}
    for key in [k for k, v in fields.items() if v is KeyError]:
        del body[key]
    return world.node.post("/v1/nodes/create", json=body)


def test_a_cpu_only_node_sends_nulls(world: World) -> None:
    reply = _create(world, gpu_mem=None, driver_version=None, hardware_generation=None)
    assert reply.status_code == 201, reply.text
    node = reply.json()
    assert (node["cpu_mem"], node["gpu_mem"]) == (32 << 30, None)
    assert (node["driver_version"], node["hardware_generation"]) == (None, None)
    # Left out, they are null too.
    assert _create(world, index=1).json()["gpu_mem"] is None


def test_a_gpu_node_names_its_generation_by_pk(world: World) -> None:
    turing = world.node.get("/v1/hardware/get-hardware-generation/7.5").json()["pk"]
    reply = _create(
        world, gpu_mem=24 << 30, driver_version="535.104.05", hardware_generation=turing
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["hardware_generation"] == turing
    # A numeric string or a whole float is a pk too, as for the real serializer.
    assert _create(world, index=1, hardware_generation="6").json()["hardware_generation"] == 6
    assert _create(world, index=2, hardware_generation=6.0).json()["hardware_generation"] == 6


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"hardware_generation": "Intel(R) Xeon(R)"},
            {"hardware_generation": ["Incorrect type. Expected pk value, received str."]},
        ),
        (
            {"hardware_generation": 99},
            {"hardware_generation": ['Invalid pk "99" - object does not exist.']},
        ),
        (
            {"hardware_generation": True},
            {"hardware_generation": ["Incorrect type. Expected pk value, received bool."]},
        ),
        ({"cpu_mem": KeyError}, {"cpu_mem": ["This field is required."]}),
        ({"cpu_mem": None}, {"cpu_mem": ["This field may not be null."]}),
        ({"cpu_mem": "lots"}, {"cpu_mem": ["A valid biginteger is required."]}),
        ({"cpu_mem": 1.5}, {"cpu_mem": ["A valid biginteger is required."]}),
        ({"gpu_mem": "abc"}, {"gpu_mem": ["A valid biginteger is required."]}),
        (
            {"driver_version": "x" * 17},
            {"driver_version": ["Ensure this field has no more than 16 characters."]},
        ),
        ({"driver_version": ""}, {"driver_version": ["This field may not be blank."]}),
        ({"ip": KeyError}, {"ip": ["This field is required."]}),
        ({"ip": "x" * 40}, {"ip": ["Ensure this field has no more than 39 characters."]}),
        ({"index": "zero"}, {"index": ["A valid integer is required."]}),
        (
            {"index": KeyError, "cpu_mem": "x", "hardware_generation": "y"},
            {
                "index": ["This field is required."],
                "cpu_mem": ["A valid biginteger is required."],
                "hardware_generation": ["Incorrect type. Expected pk value, received str."],
            },
        ),
    ],
)
def test_create_field_errors(world: World, fields: dict[str, Any], errors: dict[str, Any]) -> None:
    reply = _create(world, **fields)
    assert reply.status_code == 400
    assert reply.json() == errors


def test_create_is_lenient_where_the_real_serializer_is(world: World) -> None:
    """Numbers as text, whole floats, text from numbers; a negative memory passes."""
    node = _create(world, cpu_mem="4096", gpu_mem=2.0, driver_version=535).json()
    assert (node["cpu_mem"], node["gpu_mem"], node["driver_version"]) == (4096, 2, "535")
    assert _create(world, index=1, cpu_mem=-1).status_code == 201
    # The table's CHECK on index is what refuses a negative one.
    assert _create(world, index=-1).json() == {"detail": "CHECK constraint failed: index"}


def test_create_needs_an_object(world: World) -> None:
    reply = world.node.post("/v1/nodes/create", json=[1])
    assert reply.status_code == 400
    assert reply.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def test_unknown_node_is_404(world: World) -> None:
    assert world.node.get("/v1/nodes/999").status_code == 404


def test_patch_needs_node_id_of_that_node_or_staff(world: World) -> None:
    mine = world.new_node()
    other = world.new_node()
    body = {"cpu_mem": 1}
    assert world.node.patch(f"/v1/nodes/{mine}", json=body).status_code == 403
    assert world.node.patch(f"/v1/nodes/{mine}", node=other, json=body).status_code == 403
    assert world.admin.patch(f"/v1/nodes/{mine}", json={"cpu_mem": 7}).json()["cpu_mem"] == 7
    reply = world.node.patch(f"/v1/nodes/{mine}", node=mine, json={"cpu_mem": 1, "gpu_mem": 2})
    assert reply.status_code == 200
    assert (reply.json()["cpu_mem"], reply.json()["gpu_mem"]) == (1, 2)
    assert world.node_info(mine)["cpu_mem"] == 1


def test_patch_cannot_take_another_nodes_ip_index(world: World) -> None:
    world.new_node("10.1.1.1", 0)
    mine = world.new_node("10.1.1.1", 1)
    reply = world.node.patch(f"/v1/nodes/{mine}", node=mine, json={"index": 0})
    assert reply.status_code == 400
    assert list(reply.json()) == ["non_field_errors"]


def test_patch_checks_only_the_fields_it_carries(world: World) -> None:
    mine = world.new_node()
    patch = world.node.patch
    assert patch(f"/v1/nodes/{mine}", node=mine, json={}).status_code == 200
    reply = patch(f"/v1/nodes/{mine}", node=mine, json={"hardware_generation": "Turing"})
    assert reply.json() == {
        "hardware_generation": ["Incorrect type. Expected pk value, received str."]
    }
    reply = patch(f"/v1/nodes/{mine}", node=mine, json={"gpu_mem": None, "current_job": 5})
    assert (reply.json()["gpu_mem"], reply.json()["current_job"]) == (None, None)
    # A negative index breaks the CHECK constraint, unhandled on update: an HTML 500.
    assert patch(f"/v1/nodes/{mine}", node=mine, json={"index": -1}).status_code == 500


def test_ping_is_200_with_an_empty_body(world: World) -> None:
    node = world.new_node()
    reply = world.node.get("/v1/nodes/ping", node=node)
    assert reply.status_code == 200
    assert reply.content == b""


def test_ping_needs_a_node_unless_staff(world: World) -> None:
    reply = world.node.get("/v1/nodes/ping")
    assert reply.status_code == 403
    assert world.admin.get("/v1/nodes/ping").status_code == 200


def test_node_id_bumps_last_seen(world: World) -> None:
    node = world.new_node()
    assert world.node_info(node)["last_seen"] is None
    world.node.get("/v1/nodes/ping", node=node)
    first = world.node_info(node)["last_seen"]
    assert first is not None
    assert datetime.fromisoformat(first).utcoffset() is not None
    world.node.post("/v1/jobs/list", node=node, json={})
    second = world.node_info(node)["last_seen"]
    assert second > first


def test_unknown_or_malformed_node_id_is_400(world: World) -> None:
    for node_id in ("999", "abc", "1.0", ""):
        reply = world.node.get("/v1/nodes/ping", headers={"Node-Id": node_id})
        assert reply.status_code == 400
        assert reply.json()["detail"].startswith(f"Bad Node-Id header '{node_id}'")


def test_bad_node_id_is_400_on_any_call_that_gets_past_its_permission(world: World) -> None:
    bad = {"Node-Id": "999"}
    assert world.node.post("/v1/jobs/list", headers=bad, json={}).status_code == 400
    assert world.admin.get("/v1/nodes/ping", headers=bad).status_code == 400
    # A node permission reads the header before deciding: 400 even without a token.
    assert world.node.http.get("/v1/nodes/ping", headers=bad).status_code == 400
    # Refused first by a staff-only permission: 403.
    assert world.node.delete("/v1/jobs/1/cancel", headers=bad).status_code == 403


def test_list_nodes_filters(world: World) -> None:
    a = world.new_node("10.2.0.1", 0)
    b = world.new_node("10.2.0.2", 0)
    spec = {
        "expressions": [{"type": "contains", "field": "ip", "sub_string": "10.2.0."}],
        "order_by": [{"field": "ip", "ascending": False}],
    }
    reply = world.node.post("/v1/nodes/list", json=spec)
    assert [n["pk"] for n in reply.json()] == [b, a]
    spec = {"expressions": [{"type": "isnull", "field": "current_job"}]}
    assert len(world.node.post("/v1/nodes/list", json=spec).json()) == 2
