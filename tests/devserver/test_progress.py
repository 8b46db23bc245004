"""progress/{P}: the URL regex, the HTML 500s and the 406 for cancelled jobs."""

from __future__ import annotations

import pytest

from .helpers import World


@pytest.mark.parametrize("amount", ["0.0000", "0.5", "0.9999", "1.0", "1.0000"])
def test_progress_accepts_protocol_amounts(world: World, amount: str) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(f"/v1/jobs/{job}/progress/{amount}", node=node, json={"message": "m"})
    assert reply.status_code == 200
    assert reply.json()["pk"] == job


@pytest.mark.parametrize("amount", ["0", "1", "1e-05", "2.0", "1.5", "-0.5", ".5", "0.5x"])
def test_progress_amount_outside_the_regex_is_404(world: World, amount: str) -> None:
    node = world.new_node()
    job = world.started(node)
    assert (
        world.node.post(f"/v1/jobs/{job}/progress/{amount}", node=node, json={}).status_code == 404
    )


def test_progress_with_empty_body_is_fine(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.node.post(f"/v1/jobs/{job}/progress/0.1000", node=node).status_code == 200


def test_progress_regex_dot_matches_anything_then_crashes(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(f"/v1/jobs/{job}/progress/0x5", node=node, json={})
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3"])
def test_progress_non_object_body_is_html_500(world: World, body: bytes) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(
        f"/v1/jobs/{job}/progress/0.5000",
        node=node,
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")


def test_progress_invalid_json_is_400(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(
        f"/v1/jobs/{job}/progress/0.5000",
        node=node,
        content=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400


def test_progress_before_start_is_html_500(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    reply = world.node.post(f"/v1/jobs/{job}/progress/0.5000", node=node, json={})
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")
    assert b"<html" in reply.content


def test_progress_on_cancelled_job_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.admin.delete(f"/v1/jobs/{job}/cancel").status_code == 200
    reply = world.node.post(f"/v1/jobs/{job}/progress/0.5000", node=node, json={})
    assert reply.status_code == 406
    assert "detail" in reply.json()


def test_progress_by_non_owner_is_403(world: World) -> None:
    job = world.started(world.new_node())
    other = world.new_node()
    assert (
        world.node.post(f"/v1/jobs/{job}/progress/0.5000", node=other, json={}).status_code == 403
    )
    assert world.node.post(f"/v1/jobs/{job}/progress/0.5000", json={}).status_code == 403
