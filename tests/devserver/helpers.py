"""Test helpers: a logged-in httpx client and shortcuts to set up nodes, templates, jobs."""

from __future__ import annotations

import itertools
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

WORK_FILTER: dict[str, Any] = {
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

TEMPLATE: dict[str, Any] = {
    "name": "analysis",
    "scope": "public",
    "licence": "Apache 2.0",
    "specific": {
        "job_type": "Export",
        "executor_class": "agent.analysis",
        "required_packages": "",
        "parameters": {
            "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
            "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
            "threads": {"types": ["int"], "default": 1, "help": "how many"},
        },
    },
}

JOB_FIELDS = {
    "pk",
    "template",
    "parent",
    "start_time",
    "end_time",
    "error_reason",
    "input_values",
    "parameter_values",
    "node",
    "outputs",
    "description",
    "is_cancelled",
    "creator",
    "creation_time",
    "deletion_time",
}

# One TLS context for every client: building one per client costs ~50 ms (plain HTTP anyway).
TLS = ssl.create_default_context()

START = {"send_notification": ""}
FINISH_OK = {"success": True, "send_notification": ""}


def finish_error(message: str) -> dict[str, Any]:
    """A finish body that makes the job ERRORED."""
    return {"success": False, "send_notification": "", "error": message}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until true or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Client:
    """An httpx client logged in as one user; `node=` adds the `Node-Id` header."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0, verify=TLS)
        reply = self.http.post("/v1/auth/obtain", json={"username": username, "password": password})
        reply.raise_for_status()
        self.tokens: dict[str, str] = reply.json()

    def close(self) -> None:
        self.http.close()

    def headers(self, node: int | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.tokens['access']}"}
        if node is not None:
            headers["Node-Id"] = str(node)
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        node: int | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.http.request(method, path, headers=self.headers(node, headers), **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


class World:
    """An admin client, a node-user client, and shortcuts over them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = Client(url, "admin", "admin")
        self.node = Client(url, "node", "node")
        self._indexes = itertools.count()
        self._template: int | None = None

    def close(self) -> None:
        self.admin.close()
        self.node.close()

    def new_node(self, ip: str = "127.0.0.1", index: int | None = None) -> int:
        body = {
            "ip": ip,
            "index": next(self._indexes) if index is None else index,
            "cpu_mem": 4096,
            "gpu_mem": 0,
            "driver_version": None,
            "hardware_generation": None,
        }
        reply = self.node.post("/v1/nodes/create", json=body)
        assert reply.status_code == 201, reply.text
        return int(reply.json()["pk"])

    def template(self) -> int:
        if self._template is None:
            reply = self.admin.post("/v1/job-templates/import", json=TEMPLATE)
            assert reply.status_code == 200, reply.text
            self._template = int(reply.json()["pk"])
        return self._template

    def new_job(
        self, description: str = "job", parameter_values: dict[str, Any] | None = None
    ) -> int:
        body = {
            "input_values": {},
            "parameter_values": parameter_values or {},
            "description": description,
        }
        reply = self.admin.post(f"/v1/job-templates/{self.template()}/create-job", json=body)
        assert reply.status_code == 200, reply.text
        return int(reply.json()["pk"])

    def job(self, pk: int) -> dict[str, Any]:
        reply = self.admin.get(f"/v1/jobs/{pk}")
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def node_info(self, pk: int) -> dict[str, Any]:
        reply = self.admin.get(f"/v1/nodes/{pk}")
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def acquired(self, node: int) -> int:
        """A new job acquired by `node`."""
        job = self.new_job()
        reply = self.node.get(f"/v1/jobs/{job}/acquire", node=node)
        assert reply.status_code == 200, reply.text
        return job

    def started(self, node: int) -> int:
        """A new job acquired and started by `node`."""
        job = self.acquired(node)
        reply = self.node.post(f"/v1/jobs/{job}/start", node=node, json=START)
        assert reply.status_code == 200, reply.text
        return job

    def errored(self, node: int, message: str = "boom") -> int:
        """A new job run by `node` and finished with an error."""
        job = self.started(node)
        reply = self.node.post(f"/v1/jobs/{job}/finish", node=node, json=finish_error(message))
        assert reply.status_code == 200, reply.text
        return job

    def upload(
        self, job: int, node: int | None, name: str = "log", kind: str = "txt", data: bytes = b"x"
    ) -> httpx.Response:
        return self.node.post(
            f"/v1/jobs/{job}/outputs/{name}/{kind}",
            node=node,
            headers={"Content-Disposition": f"attachment; filename={name}.{kind}"},
            content=data,
        )
