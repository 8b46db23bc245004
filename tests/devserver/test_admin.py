"""Admin calls: cancel and abort, and the abort quirk."""

from __future__ import annotations

import pytest

from .helpers import FINISH_OK, START, World


@pytest.mark.parametrize("action", ["cancel", "abort"])
def test_admin_only(world: World, action: str) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.delete(f"/v1/jobs/{job}/{action}").status_code == 403
    assert world.node.delete(f"/v1/jobs/{job}/{action}", node=node).status_code == 403
    assert world.job(job)["error_reason"] is None


def test_cancel_started_job(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.admin.delete(f"/v1/jobs/{job}/cancel")
    assert reply.status_code == 200
    cancelled = reply.json()
    assert cancelled["error_reason"] == "Cancelled"
    assert cancelled["is_cancelled"] is True
    assert cancelled["end_time"] is None
    assert cancelled["node"] == node


def test_cancel_not_started_job_leaves_the_queue(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.admin.delete(f"/v1/jobs/{job}/cancel")
    assert reply.status_code == 200
    assert reply.json()["error_reason"] == "Cancelled"
    assert reply.json()["is_cancelled"] is False
    assert reply.json()["node"] == node
    # Started anyway: it is CANCELLED at once.
    assert world.node.post(f"/v1/jobs/{job}/start", node=node, json=START).status_code == 200
    assert world.job(job)["is_cancelled"] is True
    assert world.node.post(f"/v1/jobs/{job}/progress/0.5000", node=node, json={}).status_code == 406


def test_cancel_finished_job_is_a_no_op(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    reply = world.admin.delete(f"/v1/jobs/{job}/cancel")
    assert reply.status_code == 200
    assert reply.json()["error_reason"] is None


def test_abort_quirk(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.upload(job, node, "log", "txt")
    reply = world.admin.delete(f"/v1/jobs/{job}/abort")
    assert reply.status_code == 200
    aborted = reply.json()
    # Back to CREATED and into the queue, without a node...
    assert aborted["node"] is None
    assert (aborted["start_time"], aborted["end_time"], aborted["error_reason"]) == (
        None,
        None,
        None,
    )
    # ...but the node still believes it works the aborted job...
    assert world.node_info(node)["current_job"] == job
    info = world.node.get(f"/v1/jobs/{job}/outputs/log/txt/info").json()
    assert info["deletion_time"] is not None
    # ...so it cannot start another one...
    other = world.acquired(node)
    refused = world.node.post(f"/v1/jobs/{other}/start", node=node, json=START)
    assert refused.status_code == 406
    # ...until it finishes the old one, a 200 no-op that frees the node.
    done = world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert done.status_code == 200
    assert (done.json()["start_time"], done.json()["node"]) == (None, None)
    assert world.node_info(node)["current_job"] is None
    assert world.node.post(f"/v1/jobs/{other}/start", node=node, json=START).status_code == 200


def test_abort_not_started_job_just_frees_it(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.admin.delete(f"/v1/jobs/{job}/abort")
    assert reply.status_code == 200
    assert reply.json()["node"] is None
    assert reply.json()["error_reason"] is None


def test_abort_finished_job_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert world.admin.delete(f"/v1/jobs/{job}/abort").status_code == 406


def test_admin_calls_on_unknown_job_are_404(world: World) -> None:
    for action in ("cancel", "abort"):
        assert world.admin.delete(f"/v1/jobs/999/{action}").status_code == 404


def test_aborted_job_goes_back_to_the_queue(world: World) -> None:
    node = world.new_node()
    other = world.new_node()
    job = world.started(node)
    assert world.admin.delete(f"/v1/jobs/{job}/abort").status_code == 200
    # Its old node may neither release it (it is still its current job)...
    assert world.node.delete(f"/v1/jobs/{job}/release", node=node).status_code == 500
    # ...while another node takes it and runs it.
    assert world.node.get(f"/v1/jobs/{job}/acquire", node=other).status_code == 200
    assert world.node.post(f"/v1/jobs/{job}/start", node=other, json=START).status_code == 200
    # The old node's finish is the no-op that frees it; the job runs on.
    assert world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK).status_code == 200
    assert world.job(job)["node"] == other
    assert world.job(job)["end_time"] is None
