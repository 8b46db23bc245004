"""A file database keeps state (and tokens) across restarts."""

from __future__ import annotations

from pathlib import Path

from agent.devserver import DevServer

from .helpers import START, World


def test_restart_with_same_db_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "dev.sqlite"
    with DevServer(db_path=db) as first:
        world = World(first.url)
        node = world.new_node("10.3.3.3", 0)
        job = world.started(node)
        world.upload(job, node, "log", "txt", b"kept")
        free = world.new_job()
        before = world.job(job)
        token = world.node.tokens["access"]
        world.close()
    with DevServer(db_path=db) as second:
        world = World(second.url)
        try:
            assert world.job(job) == before
            assert world.job(free)["node"] is None
            assert world.node_info(node)["current_job"] == job
            assert world.node.get(f"/v1/jobs/{job}/outputs/log/txt").content == b"kept"
            # Tokens issued before the restart stay valid: the secret is in the db.
            ping = world.node.http.get(
                "/v1/nodes/ping", headers={"Authorization": f"Bearer {token}"}
            )
            assert ping.status_code == 200
            # New objects continue the pk sequences.
            assert world.new_job() > free
            other = world.acquired(world.new_node("10.3.3.3", 1))
            assert other > free
            assert (
                world.node.post(
                    f"/v1/jobs/{job}/finish",
                    node=node,
                    json={"success": True, "send_notification": ""},
                ).status_code
                == 200
            )
            assert (
                world.node.post(f"/v1/jobs/{other}/start", node=node, json=START).status_code == 403
            )
        finally:
            world.close()
