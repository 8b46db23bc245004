"""acquire is atomic here: racing nodes get exactly one winner."""

from __future__ import annotations

import threading

import httpx

from .helpers import TLS, World


def _race(world: World, job: int, nodes: list[int]) -> dict[int, int]:
    """Every node acquires `job` at the same moment, each over its own connection."""
    barrier = threading.Barrier(len(nodes))
    results: dict[int, int] = {}
    auth = {"Authorization": f"Bearer {world.node.tokens['access']}"}

    def race(node: int) -> None:
        with httpx.Client(base_url=world.url, timeout=10.0, verify=TLS) as client:
            client.get("/v1/nodes/ping", headers={**auth, "Node-Id": str(node)})  # connect
            barrier.wait()
            reply = client.get(f"/v1/jobs/{job}/acquire", headers={**auth, "Node-Id": str(node)})
            results[node] = reply.status_code

    threads = [threading.Thread(target=race, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_eight_nodes_race_for_one_job(world: World) -> None:
    for _ in range(5):
        job = world.new_job()
        results = _race(world, job, [world.new_node() for _ in range(8)])
        assert sorted(results.values()) == [200] + [406] * 7
        winner = next(node for node, status in results.items() if status == 200)
        assert world.job(job)["node"] == winner


def test_parallel_clients_keep_the_server_consistent(world: World) -> None:
    nodes = [world.new_node() for _ in range(4)]
    jobs = [world.new_job() for _ in range(20)]
    auth = {"Authorization": f"Bearer {world.node.tokens['access']}"}
    won: dict[int, list[int]] = {node: [] for node in nodes}

    def worker(node: int) -> None:
        headers = {**auth, "Node-Id": str(node)}
        with httpx.Client(base_url=world.url, timeout=10.0, verify=TLS) as client:
            for job in jobs:
                if client.get(f"/v1/jobs/{job}/acquire", headers=headers).status_code == 200:
                    won[node].append(job)

    threads = [threading.Thread(target=worker, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(job for owned in won.values() for job in owned) == jobs
