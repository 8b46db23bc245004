"""Requests/s of the reference job server under a poll-and-progress mix.

Starts `python -m agent.devserver` on a free port (or uses --url), registers one node and
one started job per client thread, then for --seconds each of --threads clients
alternates `GET /v1/jobs/{pk}` and `POST /v1/jobs/{pk}/progress/{P}` over a keep-alive
connection. Prints the total and per-kind requests/s.

    python bench/devserver_rps.py [--threads 4] [--seconds 3] [--url URL] [--db FILE]
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx

TEMPLATE = {
    "name": "bench",
    "scope": "public",
    "licence": "Apache 2.0",
    "specific": {
        "job_type": "Export",
        "executor_class": "agent.analysis",
        "required_packages": "",
        "parameters": {
            "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "run"}
        },
    },
}


def start_server(db: str | None) -> tuple[subprocess.Popen[bytes], str]:
    args = [sys.executable, "-m", "agent.devserver", "--port", "0"]
    if db:
        args += ["--db", db]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            if not selector.select(20):
                raise SystemExit("devserver did not start")
            chunk = os.read(proc.stderr.fileno(), 1)
            if not chunk:
                raise SystemExit(f"devserver exited: {line!r}")
            line += chunk
    return proc, line.decode().strip().rsplit(" ", 1)[-1]


def token(client: httpx.Client, name: str, password: str) -> dict[str, str]:
    reply = client.post("/v1/auth/obtain", json={"username": name, "password": password})
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['access']}"}


def prepare(url: str, threads: int) -> list[tuple[int, int, dict[str, str]]]:
    """One (node, started job, headers) per client thread."""
    with httpx.Client(base_url=url, timeout=10) as client:
        admin = token(client, "admin", "admin")
        node_auth = token(client, "node", "node")
        template = client.post("/v1/job-templates/import", json=TEMPLATE, headers=admin).json()
        ip = f"bench-{uuid.uuid4().hex[:8]}"
        slots = []
        for index in range(threads):
            node = client.post(
                "/v1/nodes/create",
                json={"ip": ip, "index": index, "cpu_mem": 1 << 30},
                headers=node_auth,
            ).json()["pk"]
            body = {"input_values": {}, "parameter_values": {}, "description": "bench"}
            job = client.post(
                f"/v1/job-templates/{template['pk']}/create-job", json=body, headers=admin
            ).json()["pk"]
            headers = {**node_auth, "Node-Id": str(node)}
            client.get(f"/v1/jobs/{job}/acquire", headers=headers).raise_for_status()
            client.post(
                f"/v1/jobs/{job}/start", json={"send_notification": ""}, headers=headers
            ).raise_for_status()
            slots.append((node, job, headers))
        return slots


def run(url: str, slots: list[tuple[int, int, dict[str, str]]], seconds: float) -> None:
    counts = {"get": 0, "progress": 0, "errors": 0}
    lock = threading.Lock()
    start = threading.Barrier(len(slots) + 1)
    stop_at = [0.0]

    def client_loop(job: int, headers: dict[str, str]) -> None:
        mine = {"get": 0, "progress": 0, "errors": 0}
        with httpx.Client(base_url=url, timeout=10, headers=headers) as client:
            client.get("/v1/nodes/ping")
            start.wait()
            step = 0
            while time.perf_counter() < stop_at[0]:
                if step % 2 == 0:
                    reply = client.get(f"/v1/jobs/{job}")
                    kind = "get"
                else:
                    amount = f"{(step % 1000) / 1000:.4f}"
                    reply = client.post(
                        f"/v1/jobs/{job}/progress/{amount}", json={"message": "working"}
                    )
                    kind = "progress"
                mine[kind if reply.status_code == 200 else "errors"] += 1
                step += 1
        with lock:
            for key, value in mine.items():
                counts[key] += value

    workers = [
        threading.Thread(target=client_loop, args=(job, headers)) for _, job, headers in slots
    ]
    for worker in workers:
        worker.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    total = counts["get"] + counts["progress"]
    print(
        f"devserver: {total / elapsed:.0f} requests/s over {elapsed:.1f} s with {len(slots)} "
        f"client threads (GET job {counts['get'] / elapsed:.0f}/s, progress "
        f"{counts['progress'] / elapsed:.0f}/s, errors {counts['errors']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--url", help="an already running devserver (admin:admin, node:node)")
    parser.add_argument("--db", help="sqlite file for the spawned devserver (default: memory)")
    args = parser.parse_args()
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.db)
    try:
        run(url, prepare(url, args.threads), args.seconds)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
