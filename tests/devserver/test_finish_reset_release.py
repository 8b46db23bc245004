"""finish, reset and release, and the give-back sequences of PROTOCOL.md."""

from __future__ import annotations

import pytest

from .helpers import FINISH_OK, START, World, finish_error


def test_finish_success(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert reply.status_code == 200
    done = reply.json()
    assert done["end_time"] is not None
    assert done["error_reason"] is None
    assert world.node_info(node)["current_job"] is None


def test_finish_with_error_is_errored(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=finish_error("exit code 3"))
    assert reply.status_code == 200
    assert reply.json()["error_reason"] == "exit code 3"
    assert reply.json()["end_time"] is not None
    assert world.node_info(node)["current_job"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"success": True},
        {"send_notification": ""},
        {"success": "yes", "send_notification": ""},
        {"success": False, "send_notification": "", "error": 5},
    ],
)
def test_finish_missing_or_bad_field_is_400(world: World, body: dict[str, object]) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.post(f"/v1/jobs/{job}/finish", node=node, json=body).status_code == 400
    assert world.job(job)["end_time"] is None


def test_finish_before_start_is_html_500(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


def test_second_finish_is_html_500(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK).status_code == 200
    reply = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


def test_finish_by_stranger_is_403(world: World) -> None:
    job = world.started(world.new_node())
    assert (
        world.node.post(f"/v1/jobs/{job}/finish", node=world.new_node(), json=FINISH_OK).status_code
        == 403
    )


def test_finish_on_cancelled_job_is_a_no_op_that_frees_the_node(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.admin.delete(f"/v1/jobs/{job}/cancel")
    reply = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=finish_error("stopped"))
    assert reply.status_code == 200
    assert reply.json()["error_reason"] == "Cancelled"
    assert reply.json()["is_cancelled"] is True
    assert reply.json()["end_time"] is None
    assert world.node_info(node)["current_job"] is None
    assert world.started(node)


def test_reset_errored_job_back_to_created_keeping_node(world: World) -> None:
    node = world.new_node()
    job = world.errored(node)
    reply = world.node.delete(f"/v1/jobs/{job}/reset", node=node)
    assert reply.status_code == 200
    reset = reply.json()
    assert (reset["start_time"], reset["end_time"], reset["error_reason"]) == (None, None, None)
    assert reset["node"] == node
    # Same node may start it again straight away.
    assert world.node.post(f"/v1/jobs/{job}/start", node=node, json=START).status_code == 200


@pytest.mark.parametrize("phase", ["created", "started", "finished"])
def test_reset_unless_errored_is_406(world: World, phase: str) -> None:
    node = world.new_node()
    job = world.acquired(node) if phase == "created" else world.started(node)
    if phase == "finished":
        world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert world.node.delete(f"/v1/jobs/{job}/reset", node=node).status_code == 406


def test_reset_by_non_owner_is_403(world: World) -> None:
    job = world.errored(world.new_node())
    assert world.node.delete(f"/v1/jobs/{job}/reset", node=world.new_node()).status_code == 403


def test_release_created_job(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.node.delete(f"/v1/jobs/{job}/release", node=node)
    assert reply.status_code == 200
    assert reply.json()["node"] is None
    assert world.node.get(f"/v1/jobs/{job}/acquire", node=world.new_node()).status_code == 200


def test_release_errored_job(world: World) -> None:
    node = world.new_node()
    job = world.errored(node)
    assert world.node.delete(f"/v1/jobs/{job}/release", node=node).status_code == 200
    assert world.job(job)["node"] is None


def test_release_started_job_is_html_500(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.delete(f"/v1/jobs/{job}/release", node=node)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")
    assert world.job(job)["node"] == node


def test_release_finished_job_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert world.node.delete(f"/v1/jobs/{job}/release", node=node).status_code == 406


def test_release_by_non_owner_is_403(world: World) -> None:
    job = world.acquired(world.new_node())
    assert world.node.delete(f"/v1/jobs/{job}/release", node=world.new_node()).status_code == 403
    assert world.node.delete(f"/v1/jobs/{job}/release").status_code == 403


def test_give_back_a_started_job(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=finish_error("node shutting down"))
    world.node.delete(f"/v1/jobs/{job}/reset", node=node)
    world.node.delete(f"/v1/jobs/{job}/release", node=node)
    back = world.job(job)
    assert (back["start_time"], back["end_time"], back["error_reason"], back["node"]) == (
        None,
        None,
        None,
        None,
    )
    listed = world.node.post(
        "/v1/jobs/list", json={"expressions": [{"type": "isnull", "field": "node"}]}
    )
    assert job in [j["pk"] for j in listed.json()]
