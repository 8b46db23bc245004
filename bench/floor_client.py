"""The overhead bench's floor: a minimal sequential node, as a process of its own.

Logs in once and registers its node (as the agent does at start-up), then per job:
list the pending jobs, acquire the oldest, start it, post one progress, run it with
``subprocess.run``, upload its log, finish it; until the list is empty. Nothing else:
no retries, no journal, no sandbox. Prints the number of jobs run.

    python -m bench.floor_client URL USER PASSWORD NODE_IP [INDEX [COMMAND]]

Several may share one queue (the throughput and contention benches' references): the one
of ``INDEX`` (default 0) takes the list's job of that position (or its last), and another
job when a script of another index acquired it first. Each job runs ``true``, or
``sh -c COMMAND`` when a command is given (the jobs' command, as the agent runs it).
"""

from __future__ import annotations

import subprocess
import sys

import httpx

PENDING = {
    "expressions": [
        {
            "type": "and",
            "sub_expressions": [
                {"type": "isnull", "field": "start_time"},
                {"type": "isnull", "field": "error_reason"},
                {"type": "isnull", "field": "node"},
                {"type": "isnull", "field": "template.workabletemplate", "invert": True},
            ],
        }
    ],
    "order_by": [{"field": "creation_time", "ascending": True}],
}


def main(url: str, user: str, password: str, ip: str, index: str = "0", command: str = "") -> int:
    argv = ["sh", "-c", command] if command else ["true"]
    done = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        login = http.post("/v1/auth/obtain", json={"username": user, "password": password})
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access']}"
        node_body = {
            "ip": ip,
            "index": 0,
            "cpu_mem": 1 << 30,
            "gpu_mem": None,
            "driver_version": None,
            "hardware_generation": None,
        }
        created = http.post("/v1/nodes/create", json=node_body)
        created.raise_for_status()
        node = {"Node-Id": str(created.json()["pk"])}
        while True:
            listed = http.post("/v1/jobs/list", json=PENDING)
            listed.raise_for_status()
            jobs = listed.json()
            if not jobs:
                break
            pk = jobs[min(int(index), len(jobs) - 1)]["pk"]
            acquired = http.get(f"/v1/jobs/{pk}/acquire", headers=node)
            if acquired.status_code == 406:  # another script took it first
                continue
            acquired.raise_for_status()
            http.post(
                f"/v1/jobs/{pk}/start", json={"send_notification": ""}, headers=node
            ).raise_for_status()
            http.post(
                f"/v1/jobs/{pk}/progress/0.0", json={"message": "started"}, headers=node
            ).raise_for_status()
            run = subprocess.run(argv, capture_output=True, check=False)
            log = run.stdout + run.stderr or b"(no output)\n"
            http.post(
                f"/v1/jobs/{pk}/outputs/log/str",
                content=log,
                headers={
                    **node,
                    "Content-Disposition": "attachment; filename=log.txt",
                    "Content-Type": "application/octet-stream",
                },
            ).raise_for_status()
            http.post(
                f"/v1/jobs/{pk}/finish",
                json={"success": run.returncode == 0, "send_notification": ""},
                headers=node,
            ).raise_for_status()
            done += 1
    print(done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:7]))
