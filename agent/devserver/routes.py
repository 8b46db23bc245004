"""The `/v1` routes: URL pattern, method, permission and view of each endpoint."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from agent.devserver.disposition import attachment
from agent.devserver.hardware import Hardware
from agent.devserver.lifecycle import Lifecycle
from agent.devserver.messages import Request, Response
from agent.devserver.models import User
from agent.devserver.outputs import Outputs
from agent.devserver.store import Store
from agent.devserver.validate import JsonBody

_PK = r"(?P<pk>[0-9]+)"
_JOB = rf"/v1/jobs/{_PK}"
_OUTPUT = rf"{_JOB}/outputs/(?P<name>[^/]+)/(?P<type>[^/]+)"
# The real server's URL pattern for progress amounts (so `0`, `1` and `1e-05` are 404s).
PROGRESS_PATTERN = r"(0.[0-9]+)|(1.(0)+)"
DATA = "application/data"
"""The real server's binary renderer: downloads (and their errors) carry this type."""

Permission = Literal["auth", "staff", "node", "staff_or_node"]
"""`auth`: any user; `staff`: staff users; `node`: a `Node-Id` naming a node;
`staff_or_node`: either of the last two. (The real view-sets' `IsAdminUser | ...`.)"""


@dataclass(frozen=True)
class Context:
    """What a view gets: the request, URL parameters, caller, node and parsed body."""

    request: Request
    params: Mapping[str, str]
    user_pk: int
    user: User
    node: int | None
    body: JsonBody
    filename: str | None = None
    """An upload's filename (upload routes only)."""

    @property
    def pk(self) -> int:
        """The `{pk}` URL parameter."""
        return int(self.params["pk"])


View = Callable[[Context], Response]


@dataclass(frozen=True)
class Route:
    """One endpoint. `upload`: the body is a file, not JSON; `download`: the reply is
    `application/data`, errors included."""

    method: str
    pattern: re.Pattern[str]
    permission: Permission
    view: View
    upload: bool = False
    download: bool = False


def _json(value: object, status: int = 200) -> Response:
    return Response.json(status, value)


def _route(
    method: str,
    pattern: str,
    permission: Permission,
    view: View,
    *,
    slash: bool = True,
    upload: bool = False,
    download: bool = False,
) -> Route:
    """A route; `slash` makes a trailing slash optional, as the real router does."""
    suffix = "/?" if slash else ""
    return Route(method, re.compile(pattern + suffix), permission, view, upload, download)


def build_routes(
    store: Store, jobs: Lifecycle, outputs: Outputs, hardware: Hardware
) -> list[Route]:
    """Every route of the API, in matching order."""
    return [
        _route("POST", "/v1/nodes/list", "auth", lambda c: _json(store.list_nodes(c.body))),
        _route("POST", "/v1/nodes/create", "auth", lambda c: _json(store.create_node(c.body), 201)),
        _route("GET", "/v1/nodes/ping", "staff_or_node", lambda c: Response(200)),
        _route("GET", rf"/v1/nodes/{_PK}", "auth", lambda c: _json(store.get_node(c.pk))),
        _route(
            "PATCH",
            rf"/v1/nodes/{_PK}",
            "staff_or_node",
            lambda c: _json(store.update_node(c.pk, c.node, c.user.staff, c.body)),
        ),
        _route("POST", "/v1/hardware/list", "auth", lambda c: _json(hardware.list(c.body))),
        _route(
            "GET",
            "/v1/hardware/get-hardware-generation/(?P<compute>.+)",
            "auth",
            lambda c: _json(hardware.for_capability(c.params["compute"])),
            slash=False,
        ),
        _route("GET", rf"/v1/hardware/{_PK}", "auth", lambda c: _json(hardware.get(c.pk))),
        _route("POST", "/v1/jobs/list", "auth", lambda c: _json(store.list_jobs(c.body))),
        _route("GET", _JOB, "auth", lambda c: _json(store.get_job(c.pk))),
        _route("GET", rf"{_JOB}/acquire", "node", lambda c: _json(jobs.acquire(c.pk, c.node))),
        _route(
            "POST",
            rf"{_JOB}/start",
            "node",
            lambda c: _json(jobs.start(c.pk, c.node, c.body)),
        ),
        _route(
            "POST",
            rf"{_JOB}/progress/(?P<progress>{PROGRESS_PATTERN})",
            "node",
            lambda c: _json(jobs.progress(c.pk, c.node, c.params["progress"], c.body)),
        ),
        _route(
            "POST",
            rf"{_JOB}/finish",
            "node",
            lambda c: _json(jobs.finish(c.pk, c.node, c.body)),
        ),
        _route("DELETE", rf"{_JOB}/reset", "node", lambda c: _json(jobs.reset(c.pk, c.node))),
        _route("DELETE", rf"{_JOB}/release", "node", lambda c: _json(jobs.release(c.pk, c.node))),
        _route("DELETE", rf"{_JOB}/cancel", "staff", lambda c: _json(jobs.cancel(c.pk))),
        _route("DELETE", rf"{_JOB}/abort", "staff", lambda c: _json(jobs.abort(c.pk))),
        _route(
            "POST",
            _OUTPUT,
            "staff_or_node",
            partial(_add_output, outputs),
            slash=False,
            upload=True,
        ),
        _route("GET", _OUTPUT, "auth", partial(_get_output, outputs), slash=False, download=True),
        _route(
            "GET",
            rf"{_OUTPUT}/info",
            "auth",
            lambda c: _json(outputs.output_info(c.pk, c.params["name"], c.params["type"])),
            slash=False,
        ),
        _route(
            "POST",
            "/v1/job-templates/import",
            "staff",
            lambda c: _json(store.import_template(c.body, c.user_pk)),
        ),
        _route(
            "POST",
            "/v1/job-templates/list",
            "auth",
            lambda c: _json(store.list_templates(c.body)),
        ),
        _route(
            "GET",
            rf"/v1/job-templates/{_PK}",
            "auth",
            lambda c: _json(store.get_template(c.pk)),
        ),
        _route(
            "POST",
            rf"/v1/job-templates/{_PK}/create-job",
            "auth",
            lambda c: _json(store.create_job(c.pk, c.body, c.user_pk)),
        ),
    ]


def _add_output(outputs: Outputs, c: Context) -> Response:
    info: dict[str, Any] = outputs.add_output(
        c.pk,
        c.params["name"],
        c.params["type"],
        node=c.node,
        staff=c.user.staff,
        creator=c.user_pk,
        filename=c.filename or "",
        data=c.request.body,
    )
    return _json(info)


def _get_output(outputs: Outputs, c: Context) -> Response:
    filename, data = outputs.output_data(c.pk, c.params["name"], c.params["type"])
    return Response(200, data, DATA, {"Content-Disposition": attachment(filename)})
