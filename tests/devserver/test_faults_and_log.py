"""Test helpers of DevServer: fail_next fault injection and the request log."""

from __future__ import annotations

from agent.devserver import DevServer

from .helpers import START, World


def test_fail_next_twice_then_normal(server: DevServer, world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    server.fail_next(rf"^/v1/jobs/{job}/start$", 503, times=2)
    statuses = []
    for _ in range(3):
        reply = world.node.post(f"/v1/jobs/{job}/start", node=node, json=START)
        statuses.append(reply.status_code)
        if reply.status_code == 503:
            assert reply.headers["content-type"].startswith("text/html")
            assert reply.content == b"<html>boom</html>"
            # The injected failure did not touch state.
            assert world.job(job)["start_time"] is None
    assert statuses == [503, 503, 200]


def test_fail_next_custom_body_headers_and_no_auth_needed(server: DevServer, world: World) -> None:
    server.fail_next(
        "/v1/nodes/ping",
        429,
        body=b'{"detail":"slow down"}',
        headers={"Content-Type": "application/json", "Retry-After": "1"},
    )
    reply = world.node.http.get("/v1/nodes/ping")
    assert reply.status_code == 429
    assert reply.json() == {"detail": "slow down"}
    assert reply.headers["retry-after"] == "1"
    assert world.node.http.get("/v1/nodes/ping").status_code == 401


def test_fail_next_does_not_bump_last_seen(server: DevServer, world: World) -> None:
    node = world.new_node()
    server.fail_next("ping", 500)
    assert world.node.get("/v1/nodes/ping", node=node).status_code == 500
    assert world.node_info(node)["last_seen"] is None


def test_fail_next_only_matching_paths(server: DevServer, world: World) -> None:
    server.fail_next("/acquire$", 502)
    assert world.admin.get("/v1/nodes/ping").status_code == 200
    job = world.new_job()
    assert world.node.get(f"/v1/jobs/{job}/acquire", node=world.new_node()).status_code == 502


def test_request_log_records_requests(server: DevServer, world: World) -> None:
    node = world.new_node()
    server.clear_request_log()
    world.node.get("/v1/nodes/ping", node=node)
    world.node.post("/v1/jobs/list?x=1", json={"expressions": []})
    world.node.get("/v1/nodes/999")
    log = server.request_log()
    assert [(e.method, e.path, e.status) for e in log] == [
        ("GET", "/v1/nodes/ping", 200),
        ("POST", "/v1/jobs/list", 200),
        ("GET", "/v1/nodes/999", 404),
    ]
    ping, listing, _ = log
    assert ping.node_id == str(node)
    assert listing.node_id is None
    assert listing.query == "x=1"
    assert listing.body == b'{"expressions":[]}'
    assert listing.headers["authorization"].startswith("Bearer ")
    assert all(key == key.lower() for key in listing.headers)
    assert ping.time <= listing.time
    server.clear_request_log()
    assert server.request_log() == []


def test_request_log_truncates_big_bodies(server: DevServer, world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    data = b"z" * (200 * 1024)
    assert world.upload(job, node, "big", "bin", data).status_code == 200
    entry = server.request_log()[-1]
    assert entry.path == f"/v1/jobs/{job}/outputs/big/bin"
    assert len(entry.body) == 64 * 1024
    assert entry.body_length == len(data)
