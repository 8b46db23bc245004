"""A file database keeps state (and tokens) across restarts."""

from __future__ import annotations

import sqlite3
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
            listing = world.node.http.post(
                "/v1/jobs/list", headers={"Authorization": f"Bearer {token}"}, json={}
            )
            assert listing.status_code == 200
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


def test_a_database_from_an_older_devserver_is_upgraded(tmp_path: Path) -> None:
    """Nodes once had a free-text `hardware_generation` and a non-null `gpu_mem`."""
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE nodes (
                pk INTEGER PRIMARY KEY AUTOINCREMENT, ip TEXT NOT NULL, idx INTEGER NOT NULL,
                cpu_mem INTEGER NOT NULL DEFAULT 0, gpu_mem INTEGER NOT NULL DEFAULT 0,
                driver_version TEXT, hardware_generation TEXT, current_job INTEGER,
                last_seen TEXT, UNIQUE (ip, idx)
            );
            INSERT INTO nodes (ip, idx, cpu_mem, gpu_mem, hardware_generation)
            VALUES ('10.0.0.1', 0, 1, 2, '6'), ('10.0.0.1', 1, 1, 0, 'Intel Xeon');
            """
        )
    conn.close()
    with DevServer(db_path=db) as server:
        world = World(server.url)
        try:
            assert world.node_info(1)["hardware_generation"] == 6
            assert world.node_info(2)["hardware_generation"] is None
            reply = world.node.post(
                "/v1/nodes/create", json={"ip": "10.0.0.1", "index": 2, "cpu_mem": 1}
            )
            assert (reply.json()["pk"], reply.json()["gpu_mem"]) == (3, None)
        finally:
            world.close()
