"""Nodes: create, list by (ip, index), get, PATCH by itself only, ping, Node-Id handling."""

from __future__ import annotations

from datetime import datetime

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
    reply = world.node.post("/v1/nodes/create", json={"ip": "10.0.0.1", "index": 0})
    assert reply.status_code == 400
    assert "detail" in reply.json()


def test_create_validates_fields(world: World) -> None:
    for body in ({"index": 0}, {"ip": "1.2.3.4"}, {"ip": "1.2.3.4", "index": "zero"}, [1]):
        reply = world.node.post("/v1/nodes/create", json=body)
        assert reply.status_code == 400, body
        assert "detail" in reply.json()


def test_unknown_node_is_404(world: World) -> None:
    assert world.node.get("/v1/nodes/999").status_code == 404


def test_patch_needs_node_id_of_that_node(world: World) -> None:
    mine = world.new_node()
    other = world.new_node()
    body = {"cpu_mem": 1}
    assert world.node.patch(f"/v1/nodes/{mine}", json=body).status_code == 403
    assert world.node.patch(f"/v1/nodes/{mine}", node=other, json=body).status_code == 403
    assert world.admin.patch(f"/v1/nodes/{mine}", json=body).status_code == 403
    reply = world.node.patch(f"/v1/nodes/{mine}", node=mine, json={"cpu_mem": 1, "gpu_mem": 2})
    assert reply.status_code == 200
    assert (reply.json()["cpu_mem"], reply.json()["gpu_mem"]) == (1, 2)
    assert world.node_info(mine)["cpu_mem"] == 1


def test_patch_cannot_take_another_nodes_ip_index(world: World) -> None:
    world.new_node("10.1.1.1", 0)
    mine = world.new_node("10.1.1.1", 1)
    reply = world.node.patch(f"/v1/nodes/{mine}", node=mine, json={"index": 0})
    assert reply.status_code == 400


def test_ping_is_200_with_an_empty_body(world: World) -> None:
    node = world.new_node()
    for kwargs in ({}, {"node": node}):
        reply = world.node.get("/v1/nodes/ping", **kwargs)
        assert reply.status_code == 200
        assert reply.content == b""


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
    for node_id in ("999", "abc"):
        reply = world.node.get("/v1/nodes/ping", headers={"Node-Id": node_id})
        assert reply.status_code == 400
        assert "detail" in reply.json()


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
