"""acquire and start, with every status of PROTOCOL.md's table."""

from __future__ import annotations

from .helpers import FINISH_OK, START, World


def test_acquire_sets_node_and_is_idempotent(world: World) -> None:
    node = world.new_node()
    job = world.new_job()
    reply = world.node.get(f"/v1/jobs/{job}/acquire", node=node)
    assert reply.status_code == 200
    assert reply.json()["node"] == node
    again = world.node.get(f"/v1/jobs/{job}/acquire", node=node)
    assert again.status_code == 200
    assert again.json() == reply.json()


def test_acquire_held_by_another_node_is_406(world: World) -> None:
    job = world.acquired(world.new_node())
    reply = world.node.get(f"/v1/jobs/{job}/acquire", node=world.new_node())
    assert reply.status_code == 406
    assert "detail" in reply.json()


def test_acquire_finished_job_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK).status_code == 200
    assert world.node.delete(f"/v1/jobs/{job}/release", node=node).status_code == 406
    assert world.node.get(f"/v1/jobs/{job}/acquire", node=world.new_node()).status_code == 406


def test_acquire_needs_a_known_node(world: World) -> None:
    job = world.new_job()
    assert world.node.get(f"/v1/jobs/{job}/acquire").status_code == 403
    reply = world.node.get(f"/v1/jobs/{job}/acquire", headers={"Node-Id": "77"})
    assert reply.status_code == 400
    assert world.job(job)["node"] is None


def test_acquire_unknown_job_is_404(world: World) -> None:
    assert world.node.get("/v1/jobs/999/acquire", node=world.new_node()).status_code == 404


def test_start_sets_start_time_and_current_job(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.node.post(f"/v1/jobs/{job}/start", node=node, json=START)
    assert reply.status_code == 200
    assert reply.json()["start_time"] is not None
    assert world.node_info(node)["current_job"] == job


def test_start_without_send_notification_is_400(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    for body in ({}, {"send_notification": 1}):
        reply = world.node.post(f"/v1/jobs/{job}/start", node=node, json=body)
        assert reply.status_code == 400
        assert "detail" in reply.json()
    assert world.node.post(f"/v1/jobs/{job}/start", node=node).status_code == 400
    assert world.job(job)["start_time"] is None


def test_start_by_non_owner_is_403(world: World) -> None:
    job = world.acquired(world.new_node())
    assert (
        world.node.post(f"/v1/jobs/{job}/start", node=world.new_node(), json=START).status_code
        == 403
    )
    assert world.node.post(f"/v1/jobs/{job}/start", json=START).status_code == 403
    free = world.new_job()
    assert (
        world.node.post(f"/v1/jobs/{free}/start", node=world.new_node(), json=START).status_code
        == 403
    )


def test_start_second_job_on_a_busy_node_is_406(world: World) -> None:
    node = world.new_node()
    world.started(node)
    second = world.acquired(node)
    reply = world.node.post(f"/v1/jobs/{second}/start", node=node, json=START)
    assert reply.status_code == 406
    assert "another already in progress" in reply.json()["detail"]


def test_start_twice_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.post(f"/v1/jobs/{job}/start", node=node, json=START).status_code == 406
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert world.node.post(f"/v1/jobs/{job}/start", node=node, json=START).status_code == 406


def test_one_node_per_slot_runs_jobs_in_parallel(world: World) -> None:
    slots = [world.new_node("10.9.9.9", index) for index in range(3)]
    jobs = [world.started(node) for node in slots]
    assert [world.node_info(node)["current_job"] for node in slots] == jobs
