"""The differential test: one table of request sequences, each sent to a fresh real UFDL
backend and to a fresh reference server (`agent devserver`); their answers must agree.

The real backend is the judge. Each case is a name and a list of steps; a step may save a
value of its JSON reply (`save={"job": "pk"}`) for later steps of the same case, which refer
to it as `{job}` in paths, as `node="job"`-style names for the `Node-Id` header, or as
`Ref("job")` inside a JSON body. Raw `httpx` requests: bodies and headers are exactly as
written (malformed JSON, missing headers, wrong tokens).

How two answers are compared, step by step:
- the status codes must be equal;
- the kind of body must be equal: `empty` (no bytes), `json`, `html` (the real server's
  Django error pages: bare-assert 500s, unknown URLs) or other data by content type (an
  output download is `application/data`, its errors too); non-JSON data must be identical;
- JSON bodies must have the same shape: objects the same keys, recursively; lists the same
  length, item by item; scalars the same JSON type, where int and float are one type
  (`number`) and null is a type of its own, so null against a value is always a
  difference (a `start_time` or `last_seen` that is set on one side only means something);
- values are compared only under `VALUE_KEYS` (fields that do not differ naturally between
  two servers: descriptions, error reasons, flags, generations, node fields...). Pks,
  timestamps, tokens, messages (`detail`) and the like are compared by type alone.

Deliberate differences are not tested: `acquire` is atomic on the reference server (no
case races two acquires); its timestamps are UTC (only their type is compared); a request
without a token never acts as a node there (the real server lets one act as any node its
`Node-Id` names); it seeds no job templates (so no case lists templates) and does not parse
UFDL types (no case depends on type parsing).

Each case gets a freshly reset real backend and a new in-memory reference server.
Real-server access tokens are reused across cases (they are stateless JWTs, live 5 minutes,
and every reset keeps the same users); the reference server gets fresh logins each case.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.devserver.helpers import WORK_FILTER
from tests.servers import Credentials, ServerUnderTest, devserver_server

# ----------------------------------------------------------------------------- steps


class _NoBody:
    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY: Any = _NoBody()


@dataclass(frozen=True)
class Ref:
    """A saved value, put into a JSON body as is (an int stays an int)."""

    name: str


@dataclass(frozen=True)
class Step:
    """One request. `user`: `admin`, `node`, `anon` (no Authorization) or `bad` (a forged
    bearer token); `node`: the saved name whose value goes into `Node-Id`."""

    method: str
    path: str
    user: str = "node"
    node: str | None = None
    json: Any = NO_BODY
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    save: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = False
    """Send `content` streamed, without `Content-Length`."""

    def describe(self) -> str:
        who = self.user + (f" Node-Id={{{self.node}}}" if self.node else "")
        return f"{self.method} {self.path} as {who}"


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]


def get(path: str, **kwargs: Any) -> Step:
    return Step("GET", path, **kwargs)


def post(path: str, body: Any = NO_BODY, **kwargs: Any) -> Step:
    return Step("POST", path, json=body, **kwargs)


def patch(path: str, body: Any = NO_BODY, **kwargs: Any) -> Step:
    return Step("PATCH", path, json=body, **kwargs)


def delete(path: str, **kwargs: Any) -> Step:
    return Step("DELETE", path, **kwargs)


def raw(method: str, path: str, content: bytes, **kwargs: Any) -> Step:
    """A request whose body is sent verbatim as `application/json`."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return Step(method, path, content=content, headers=headers, **kwargs)


# ------------------------------------------------------------------ setup helpers

TEMPLATE: dict[str, Any] = {
    "name": "differential",
    "scope": "public",
    "licence": "Apache 2.0",
    "specific": {
        "job_type": "Export",
        "executor_class": "agent.analysis",
        "required_packages": "",
        "parameters": {
            "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
            "threads": {"types": ["int"], "default": 1, "help": "with a default"},
            "label": {"types": ["str"], "default": "x", "const": True, "help": "constant"},
        },
    },
}
# A template with a parameter that has no default: jobs must give it a value.
REQUIRED_TEMPLATE: dict[str, Any] = {
    **TEMPLATE,
    "name": "required",
    "specific": {
        **TEMPLATE["specific"],
        "parameters": {"threads": {"types": ["int"], "help": "no default"}},
    },
}
START = {"send_notification": ""}
FINISH_OK = {"success": True, "send_notification": ""}
FINISH_ERROR = {"success": False, "send_notification": "", "error": "boom"}


def template(name: str = "template") -> Step:
    return post("/v1/job-templates/import", TEMPLATE, user="admin", save={name: "pk"})


def new_node(name: str = "node", index: int = 0, ip: str = "10.0.0.1", **fields: Any) -> Step:
    body = {
        "ip": ip,
        "index": index,
        "cpu_mem": 8 << 30,
        "gpu_mem": None,
        "driver_version": None,
        "hardware_generation": None,
        **fields,
    }
    return post("/v1/nodes/create", body, save={name: "pk"})


def new_job(name: str = "job", description: str = "job", **values: Any) -> Step:
    body = {"input_values": {}, "parameter_values": values, "description": description}
    return post("/v1/job-templates/{template}/create-job", body, user="admin", save={name: "pk"})


def acquire(job: str = "job", node: str | None = "node") -> Step:
    return get(f"/v1/jobs/{{{job}}}/acquire", node=node)


def start(job: str = "job", node: str | None = "node", body: Any = START, **kw: Any) -> Step:
    return post(f"/v1/jobs/{{{job}}}/start", body, node=node, **kw)


def finish(job: str = "job", node: str | None = "node", body: Any = FINISH_OK, **kw: Any) -> Step:
    return post(f"/v1/jobs/{{{job}}}/finish", body, node=node, **kw)


def progress(amount: str, job: str = "job", node: str | None = "node", body: Any = NO_BODY) -> Step:
    return post(f"/v1/jobs/{{{job}}}/progress/{amount}", {} if body is NO_BODY else body, node=node)


def upload(
    job: str = "job",
    node: str | None = "node",
    name: str = "log",
    kind: str = "txt",
    filename: str | None = "log.txt",
    content: bytes = b"output bytes\n",
    **kwargs: Any,
) -> Step:
    headers = {"Content-Type": "application/octet-stream"}
    if filename is not None:
        headers["Content-Disposition"] = f"attachment; filename={filename}"
    headers.update(kwargs.pop("headers", {}))
    return Step(
        "POST",
        f"/v1/jobs/{{{job}}}/outputs/{name}/{kind}",
        node=node,
        content=content,
        headers=headers,
        **kwargs,
    )


def reset(job: str = "job", node: str | None = "node", **kw: Any) -> Step:
    return delete(f"/v1/jobs/{{{job}}}/reset", node=node, **kw)


def release(job: str = "job", node: str | None = "node", **kw: Any) -> Step:
    return delete(f"/v1/jobs/{{{job}}}/release", node=node, **kw)


def job_of(job: str = "job") -> Step:
    return get(f"/v1/jobs/{{{job}}}", user="admin")


def node_of(node: str = "node") -> Step:
    return get(f"/v1/nodes/{{{node}}}", user="admin")


def jobs_list(spec: Any) -> Step:
    return post("/v1/jobs/list", spec)


def created(jobs: Sequence[str] = ("job",)) -> list[Step]:
    """A template, node `node` and CREATED jobs."""
    return [template(), new_node(), *(new_job(j, description=j) for j in jobs)]


def acquired() -> list[Step]:
    return [*created(), acquire()]


def started() -> list[Step]:
    return [*acquired(), start()]


def errored() -> list[Step]:
    return [*started(), finish(body=FINISH_ERROR)]


def finished() -> list[Step]:
    return [*started(), finish()]


def two_nodes() -> list[Step]:
    """A template, nodes `node` and `other`, and job `job`."""
    return [template(), new_node(), new_node("other", index=1), new_job()]


def list_filter(*expressions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"expressions": list(expressions), **extra}


def filtered_jobs() -> list[Step]:
    """Three jobs `alpha`, `beta`, `Gamma`; `beta` acquired by `node`."""
    return [*created(("alpha", "beta", "Gamma")), acquire("beta")]


def case(name: str, *steps: Step | Sequence[Step]) -> Case:
    flat: list[Step] = []
    for item in steps:
        flat.extend([item] if isinstance(item, Step) else item)
    return Case(name, tuple(flat))


# --------------------------------------------------------------------- the cases


def _node_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ip": "10.9.9.9",
        "index": 0,
        "cpu_mem": 4096,
        "gpu_mem": None,
        "driver_version": None,
        "hardware_generation": None,
    }
    for key, value in fields.items():
        if value is NO_BODY:
            del body[key]
        else:
            body[key] = value
    return body


def node_create(**fields: Any) -> Step:
    return post("/v1/nodes/create", _node_body(**fields))


CASES: list[Case] = [
    # ---------------------------------------------------------------- auth
    case(
        "auth_obtain_and_refresh",
        post(
            "/v1/auth/obtain",
            {"username": "node", "password": Ref("node_password")},
            user="anon",
            save={"refresh": "refresh"},
        ),
        post("/v1/auth/refresh", {"refresh": Ref("refresh")}, user="anon"),
    ),
    case(
        "auth_obtain_wrong_password",
        post("/v1/auth/obtain", {"username": "admin", "password": "nope"}, user="anon"),
    ),
    case(
        "auth_obtain_unknown_user",
        post("/v1/auth/obtain", {"username": "nobody", "password": "x"}, user="anon"),
    ),
    case(
        "auth_obtain_missing_password",
        post("/v1/auth/obtain", {"username": "admin"}, user="anon"),
    ),
    case("auth_obtain_empty_object", post("/v1/auth/obtain", {}, user="anon")),
    case(
        "auth_obtain_malformed_json", raw("POST", "/v1/auth/obtain", b'{"username":', user="anon")
    ),
    case("auth_obtain_get_is_405", get("/v1/auth/obtain", user="anon")),
    case(
        "auth_refresh_bad_tokens",
        post("/v1/auth/refresh", {"refresh": "not.a.token"}, user="anon"),
        post("/v1/auth/refresh", {}, user="anon"),
        raw("POST", "/v1/auth/refresh", b"{{", user="anon"),
    ),
    case(
        "auth_refresh_with_an_access_token",
        post(
            "/v1/auth/obtain",
            {"username": "admin", "password": "admin"},
            user="anon",
            save={"access": "access"},
        ),
        post("/v1/auth/refresh", {"refresh": Ref("access")}, user="anon"),
    ),
    case(
        "auth_missing_or_bad_bearer",
        post("/v1/jobs/list", {}, user="anon"),
        post("/v1/jobs/list", {}, user="bad"),
        get("/v1/nodes/ping", user="anon"),
        get("/v1/hardware/get-hardware-generation/7.5", user="anon"),
        post("/v1/nodes/create", _node_body(), user="bad"),
        get("/v1/jobs/1/acquire", user="anon", headers={"Node-Id": "1"}),
    ),
    case(
        "auth_refresh_token_as_bearer",
        post(
            "/v1/auth/obtain",
            {"username": "admin", "password": "admin"},
            user="anon",
            save={"refresh": "refresh"},
        ),
        post("/v1/jobs/list", {}, user="anon", headers={"Authorization": "Bearer {refresh}"}),
    ),
    # ------------------------------------------------------------ hardware
    case("hardware_list", post("/v1/hardware/list", {})),
    case(
        "hardware_generation_inside_ranges",
        *(get(f"/v1/hardware/get-hardware-generation/{cc}") for cc in ("2.1", "6.1", "7.5", "8.6")),
    ),
    case(
        "hardware_generation_boundaries",
        *(
            get(f"/v1/hardware/get-hardware-generation/{cc}")
            for cc in ("2.0", "3.0", "5.0", "7", "9.0", "9.99", "10.0", "1.99")
        ),
    ),
    case(
        "hardware_generation_none_matching",
        *(
            get(f"/v1/hardware/get-hardware-generation/{cc}")
            for cc in ("1.0", "12", "-3", "abc", "nan", "inf", "7.5.1", "7.5/", "7.5%20")
        ),
    ),
    case("hardware_get_one", get("/v1/hardware/6"), get("/v1/hardware/999")),
    # --------------------------------------------------------------- nodes
    case(
        "node_create_gpu_node",
        get("/v1/hardware/get-hardware-generation/7.5", save={"generation": "pk"}),
        post(
            "/v1/nodes/create",
            _node_body(
                gpu_mem=24 << 30,
                driver_version="535.104.05",
                hardware_generation=Ref("generation"),
                cpu_mem=64 << 30,
            ),
            save={"node": "pk"},
        ),
        node_of(),
    ),
    case("node_create_cpu_only_nulls", node_create(), post("/v1/nodes/list", {})),
    case(
        "node_create_optional_fields_missing",
        node_create(gpu_mem=NO_BODY, driver_version=NO_BODY, hardware_generation=NO_BODY),
    ),
    case("node_create_cpu_mem_32gib", node_create(cpu_mem=32 << 30)),
    case("node_create_cpu_mem_numeric_string", node_create(cpu_mem="4096")),
    case("node_create_cpu_mem_text", node_create(cpu_mem="lots")),
    case("node_create_cpu_mem_missing", node_create(cpu_mem=NO_BODY)),
    case("node_create_cpu_mem_null", node_create(cpu_mem=None)),
    case(
        "node_create_cpu_mem_fraction", node_create(cpu_mem=1.5), node_create(cpu_mem=2.0, index=1)
    ),
    case("node_create_cpu_mem_negative", node_create(cpu_mem=-1)),
    case("node_create_cpu_mem_bool", node_create(cpu_mem=True)),
    case(
        "node_create_gpu_mem_types",
        node_create(gpu_mem=8 << 30),
        node_create(gpu_mem="1024", index=1),
        node_create(gpu_mem="abc", index=2),
    ),
    case(
        "node_create_driver_version",
        node_create(driver_version="x" * 16),
        node_create(driver_version="x" * 17, index=1),
        node_create(driver_version=535, index=2),
        node_create(driver_version="", index=3),
    ),
    case(
        "node_create_hardware_generation_kinds",
        node_create(hardware_generation=8),
        node_create(hardware_generation="Intel(R) Xeon(R)", index=1),
        node_create(hardware_generation=99, index=2),
        node_create(hardware_generation="6", index=3),
        node_create(hardware_generation=True, index=4),
        node_create(hardware_generation=6.0, index=5),
    ),
    case(
        "node_create_ip_and_index",
        node_create(ip=NO_BODY),
        node_create(index=NO_BODY),
        node_create(ip=""),
        node_create(ip="x" * 40),
        node_create(index=-1),
        node_create(index=40000),
        node_create(index="two"),
        node_create(ip="::1", index=32767),
    ),
    case(
        "node_create_several_errors_at_once",
        post("/v1/nodes/create", {"ip": "10.0.0.1", "cpu_mem": "x", "hardware_generation": "y"}),
    ),
    case(
        "node_create_duplicate_ip_index",
        new_node(),
        new_node("again"),
        new_node("other", index=1),
    ),
    case(
        "node_create_bad_bodies",
        post("/v1/nodes/create", [1, 2]),
        raw("POST", "/v1/nodes/create", b"{not json"),
        raw("POST", "/v1/nodes/create", b""),
        raw("POST", "/v1/nodes/create", b"NaN"),
        raw("POST", "/v1/nodes/create", b'{"ip": "1.1.1.1", "index": 0, "cpu_mem": Infinity}'),
        raw("POST", "/v1/nodes/create", b"\xff\xfe"),
        post("/v1/nodes/create", "text"),
    ),
    case(
        "node_list_find_own_node",
        new_node(),
        new_node("b", index=1),
        new_node("c", ip="10.0.0.2"),
        post(
            "/v1/nodes/list",
            list_filter(
                {
                    "type": "and",
                    "sub_expressions": [
                        {"type": "exact", "field": "ip", "value": "10.0.0.1"},
                        {"type": "exact", "field": "index", "value": 1},
                    ],
                }
            ),
        ),
        post("/v1/nodes/list", list_filter({"type": "exact", "field": "ip", "value": "10.9.9.9"})),
        post("/v1/nodes/list", list_filter({"type": "isnull", "field": "current_job"})),
        post("/v1/nodes/list", list_filter({"type": "exact", "field": "nope", "value": 1})),
    ),
    case(
        "node_get",
        new_node(),
        get("/v1/nodes/{node}"),
        get("/v1/nodes/999"),
        get("/v1/nodes/abc"),
    ),
    case(
        "node_patch_by_itself",
        new_node(),
        patch("/v1/nodes/{node}", {"cpu_mem": 1, "gpu_mem": 2}, node="node"),
        patch("/v1/nodes/{node}", {"driver_version": "550.1"}, node="node"),
        node_of(),
    ),
    case(
        "node_patch_permissions",
        new_node(),
        new_node("other", index=1),
        patch("/v1/nodes/{node}", {"cpu_mem": 1}),
        patch("/v1/nodes/{node}", {"cpu_mem": 1}, node="other"),
        patch("/v1/nodes/{node}", {"cpu_mem": 1}, user="admin"),
        node_of(),
    ),
    case(
        "node_patch_validation",
        new_node(),
        new_node("other", index=1),
        patch("/v1/nodes/{node}", {"index": 1}, node="node"),
        patch("/v1/nodes/{node}", {"hardware_generation": "Turing"}, node="node"),
        patch("/v1/nodes/{node}", {"hardware_generation": 6}, node="node"),
        patch("/v1/nodes/{node}", {"cpu_mem": None}, node="node"),
        patch("/v1/nodes/{node}", {"gpu_mem": None}, node="node"),
        node_of(),
    ),
    case(
        "node_ping",
        new_node(),
        node_of(),
        get("/v1/nodes/ping", node="node"),
        node_of(),
    ),
    case(
        "node_ping_without_node_id",
        get("/v1/nodes/ping"),
        get("/v1/nodes/ping", user="admin"),
    ),
    case(
        "node_ping_bad_node_id",
        new_node(),
        get("/v1/nodes/ping", headers={"Node-Id": "999"}),
        get("/v1/nodes/ping", headers={"Node-Id": "abc"}),
        get("/v1/nodes/ping", headers={"Node-Id": ""}),
        get("/v1/nodes/ping", user="admin", headers={"Node-Id": "999"}),
    ),
    case(
        "node_id_bumps_last_seen_on_other_calls",
        new_node(),
        post("/v1/jobs/list", {}, node="node"),
        node_of(),
    ),
    # ------------------------------------------------------------ templates
    case(
        "template_import_get_and_reimport",
        template(),
        get("/v1/job-templates/{template}"),
        post("/v1/job-templates/import", TEMPLATE, user="admin"),
        get("/v1/job-templates/999999"),
    ),
    case(
        "template_import_refusals",
        post("/v1/job-templates/import", TEMPLATE),
        post("/v1/job-templates/import", {"name": "x"}, user="admin"),
        raw("POST", "/v1/job-templates/import", b"[", user="admin"),
    ),
    case(
        "template_create_job",
        template(),
        new_job(),
        post(
            "/v1/job-templates/{template}/create-job",
            {
                "input_values": {},
                "parameter_values": {"threads": {"value": 4, "type": "int"}},
                "description": "with a value",
            },
        ),
        job_of(),
    ),
    case(
        "template_create_job_without_parameter_values",
        template(),
        post(
            "/v1/job-templates/{template}/create-job",
            {"input_values": {}, "description": "x"},
            user="admin",
        ),
    ),
    case(
        "template_create_job_bad_requests",
        template(),
        post(
            "/v1/job-templates/999999/create-job",
            {"input_values": {}, "parameter_values": {}, "description": "x"},
            user="admin",
        ),
        raw("POST", "/v1/job-templates/{template}/create-job", b"{", user="admin"),
        post("/v1/job-templates/{template}/create-job", {"parameter_values": {}}, user="admin"),
        post(
            "/v1/job-templates/{template}/create-job",
            {"input_values": {}, "parameter_values": {}, "extra": 1},
            user="admin",
        ),
    ),
    case(
        "template_create_job_parameter_values",
        template(),
        *(
            post(
                "/v1/job-templates/{template}/create-job",
                {"input_values": {}, "parameter_values": values},
                user="admin",
            )
            for values in (
                {"nope": {"value": 1, "type": "int"}},
                {"label": {"value": "y", "type": "str"}},
                {"threads": {"value": 2}},
                {"threads": 2},
                {"analysis": {"value": {"command": "ls", "args": [1]}, "type": "JSON"}},
            )
        ),
    ),
    case(
        "template_required_parameter",
        post("/v1/job-templates/import", REQUIRED_TEMPLATE, user="admin", save={"template": "pk"}),
        get("/v1/job-templates/{template}"),
        post(
            "/v1/job-templates/{template}/create-job",
            {"input_values": {}, "parameter_values": {}},
            user="admin",
        ),
        post("/v1/job-templates/{template}/create-job", {"input_values": {}}, user="admin"),
        post(
            "/v1/job-templates/{template}/create-job",
            {"input_values": {}, "parameter_values": {"threads": {"value": 3, "type": "int"}}},
            user="admin",
        ),
    ),
    # ----------------------------------------------------------- job lists
    case("jobs_list_empty_spec", filtered_jobs(), jobs_list({})),
    case("jobs_list_the_agents_work_filter", filtered_jobs(), jobs_list(WORK_FILTER)),
    case(
        "jobs_list_and_or",
        filtered_jobs(),
        jobs_list(
            list_filter(
                {
                    "type": "or",
                    "sub_expressions": [
                        {"type": "exact", "field": "description", "value": "alpha"},
                        {
                            "type": "and",
                            "sub_expressions": [
                                {"type": "isnull", "field": "node", "invert": True},
                                {"type": "contains", "field": "description", "sub_string": "et"},
                            ],
                        },
                    ],
                },
                order_by=[{"field": "description", "ascending": True}],
            )
        ),
    ),
    case(
        "jobs_list_exact",
        filtered_jobs(),
        jobs_list(list_filter({"type": "exact", "field": "description", "value": "gamma"})),
        jobs_list(
            list_filter(
                {
                    "type": "exact",
                    "field": "description",
                    "value": "gamma",
                    "case_insensitive": True,
                }
            )
        ),
        jobs_list(list_filter({"type": "exact", "field": "node", "value": Ref("node")})),
        jobs_list(list_filter({"type": "exact", "field": "template", "value": Ref("template")})),
    ),
    case(
        "jobs_list_contains",
        filtered_jobs(),
        jobs_list(list_filter({"type": "contains", "field": "description", "sub_string": "a"})),
        jobs_list(
            list_filter(
                {
                    "type": "contains",
                    "field": "description",
                    "sub_string": "GAM",
                    "case_insensitive": True,
                }
            )
        ),
    ),
    case(
        "jobs_list_isnull_and_invert",
        filtered_jobs(),
        jobs_list(list_filter({"type": "isnull", "field": "node"})),
        jobs_list(list_filter({"type": "isnull", "field": "node", "invert": True})),
        jobs_list(
            list_filter({"type": "exact", "field": "description", "value": "alpha", "invert": True})
        ),
    ),
    case(
        "jobs_list_is_null_is_400",
        filtered_jobs(),
        jobs_list(list_filter({"type": "is_null", "field": "node"})),
    ),
    case(
        "jobs_list_compare",
        filtered_jobs(),
        jobs_list(
            list_filter(
                {"type": "compare", "field": "pk", "operator": ">", "value": Ref("alpha")},
                order_by=[{"field": "pk", "ascending": False}],
            )
        ),
        jobs_list(
            list_filter({"type": "compare", "field": "pk", "operator": "<=", "value": Ref("beta")})
        ),
    ),
    case(
        "jobs_list_unknown_field_is_500",
        filtered_jobs(),
        jobs_list(list_filter({"type": "isnull", "field": "no_such_field"})),
        jobs_list(list_filter({"type": "exact", "field": "nope", "value": 1})),
    ),
    case(
        "jobs_list_order_by",
        filtered_jobs(),
        jobs_list({"order_by": [{"field": "description", "ascending": False}]}),
        jobs_list({"order_by": [{"field": "creation_time", "ascending": True}]}),
        jobs_list({"order_by": [{"field": "no_such_field", "ascending": True}]}),
    ),
    case(
        "jobs_list_malformed_specs",
        filtered_jobs(),
        jobs_list(list_filter({"type": "bogus", "field": "node"})),
        jobs_list({"expressions": "nope"}),
        jobs_list(list_filter({"type": "and"})),
        raw("POST", "/v1/jobs/list", b"{oops"),
    ),
    case(
        "jobs_list_contains_is_sqlite_like",
        filtered_jobs(),
        jobs_list(list_filter({"type": "contains", "field": "description", "sub_string": "GAM"})),
        jobs_list(list_filter({"type": "contains", "field": "description", "sub_string": "%"})),
        jobs_list(list_filter({"type": "contains", "field": "description", "sub_string": ""})),
    ),
    case(
        "jobs_list_value_types",
        filtered_jobs(),
        jobs_list(list_filter({"type": "exact", "field": "node", "value": None})),
        jobs_list(list_filter({"type": "compare", "field": "pk", "operator": "=", "value": 1})),
        jobs_list(list_filter({"type": "compare", "field": "pk", "operator": ">", "value": "x"})),
        jobs_list(list_filter({"type": "exact", "field": "pk", "value": "1"})),
        jobs_list(list_filter({"type": "exact", "field": "start_time", "value": "yesterday"})),
        jobs_list(list_filter({"type": "exact", "field": "description", "value": 5})),
        jobs_list(list_filter({"type": "exact", "field": "is_cancelled", "value": False})),
    ),
    case(
        "jobs_list_spec_strictness",
        filtered_jobs(),
        jobs_list({"include_soft_deleted": True}),
        jobs_list({"include_inactive": True}),
        jobs_list(list_filter({"type": "isnull", "field": "node", "extra": 1})),
        jobs_list(
            list_filter({"type": "and", "sub_expressions": [{"type": "isnull", "field": "node"}]})
        ),
        jobs_list(
            list_filter(
                {
                    "type": "and",
                    "sub_expressions": [
                        {"type": "isnull", "field": "node"},
                        {
                            "type": "or",
                            "sub_expressions": [
                                {"type": "isnull", "field": "node"},
                                {"type": "isnull", "field": "parent"},
                            ],
                        },
                    ],
                }
            )
        ),
        jobs_list(
            list_filter(
                {"type": "isnull", "field": "node"}, {"type": "isnull", "field": "no_such_field"}
            )
        ),
        jobs_list({"order_by": [{"field": "pk", "descending": True}]}),
        jobs_list({"order_by": [{"field": "pk", "ascending": "yes"}]}),
        post("/v1/jobs/list", [1, 2]),
        post("/v1/jobs/list", []),
    ),
    case(
        "jobs_list_order_by_nulls",
        filtered_jobs(),
        *(
            jobs_list({"order_by": [{"field": "node", **order}, {"field": "description"}]})
            for order in (
                {"ascending": True},
                {"ascending": False},
                {"ascending": True, "nulls_first": False},
                {"ascending": False, "nulls_first": True},
                {"ascending": False, "nulls_first": False},
            )
        ),
    ),
    case(
        "nodes_list_by_hardware_generation",
        new_node(hardware_generation=6),
        new_node("b", index=1),
        post(
            "/v1/nodes/list",
            list_filter({"type": "exact", "field": "hardware_generation", "value": 6}),
        ),
        post("/v1/nodes/list", list_filter({"type": "isnull", "field": "hardware_generation"})),
        post(
            "/v1/hardware/list",
            list_filter(
                {
                    "type": "compare",
                    "field": "min_compute_capability",
                    "operator": ">=",
                    "value": 7.5,
                }
            ),
        ),
        post("/v1/hardware/list", {"order_by": [{"field": "generation", "ascending": True}]}),
    ),
    case(
        "jobs_list_template_fields",
        filtered_jobs(),
        jobs_list(
            list_filter({"type": "exact", "field": "template.name", "value": "differential"})
        ),
    ),
    # -------------------------------------------------------------- job get
    case("job_get", created(), get("/v1/jobs/{job}"), get("/v1/jobs/999999")),
    # -------------------------------------------------------------- acquire
    case("acquire_ok_and_again", created(), acquire(), acquire(), job_of()),
    case("acquire_other_node_406", two_nodes(), acquire(), acquire(node="other"), job_of()),
    case(
        "acquire_node_id_problems",
        created(),
        get("/v1/jobs/{job}/acquire"),
        get("/v1/jobs/{job}/acquire", headers={"Node-Id": "999"}),
        get("/v1/jobs/{job}/acquire", headers={"Node-Id": "abc"}),
        get("/v1/jobs/{job}/acquire", user="admin"),
        job_of(),
    ),
    case("acquire_unknown_job", created(), get("/v1/jobs/999999/acquire", node="node")),
    case("acquire_finished_job", two_nodes(), acquire(), start(), finish(), acquire(node="other")),
    case(
        "acquire_after_release_by_another_node",
        two_nodes(),
        acquire(),
        release(),
        acquire(node="other"),
        job_of(),
    ),
    # ---------------------------------------------------------------- start
    case("start_ok", acquired(), start(), job_of(), node_of()),
    case(
        "start_missing_or_bad_body",
        acquired(),
        start(body={}),
        start(body={"send_notification": 5}),
        start(body=NO_BODY),
        job_of(),
    ),
    case("start_not_owner_403", two_nodes(), acquire(), start(node="other"), start(node=None)),
    case("start_not_acquired_403", created(), start()),
    case(
        "start_second_job_on_node_406",
        created(("job", "second")),
        acquire(),
        acquire("second"),
        start(),
        start("second"),
        job_of("second"),
    ),
    case("start_twice", started(), start()),
    case(
        "start_malformed_json", acquired(), raw("POST", "/v1/jobs/{job}/start", b"{", node="node")
    ),
    case(
        "start_unknown_job_malformed_json",
        created(),
        raw("POST", "/v1/jobs/999999/start", b"{", node="node"),
    ),
    # ------------------------------------------------------------- progress
    case(
        "progress_accepted_formats",
        started(),
        *(progress(p) for p in ("0.5", "0.0000", "1.0", "1.00", "0.99999", "0.5000/")),
        progress("0.25", body={"message": "a quarter", "nested": {"n": 1}}),
    ),
    case(
        "progress_refused_formats",
        started(),
        *(progress(p) for p in ("0", "1", "1e-05", "-0.1", "abc", "1.5", "2.0")),
    ),
    case("progress_value_regex_lets_through_garbage", started(), progress("0x5")),
    case("progress_before_start", acquired(), progress("0.5")),
    case("progress_after_finish", finished(), progress("0.5")),
    case(
        "progress_after_cancel",
        started(),
        delete("/v1/jobs/{job}/cancel", user="admin"),
        progress("0.5"),
    ),
    case(
        "progress_non_object_body",
        started(),
        progress("0.5", body=[1, 2]),
        progress("0.5", body="text"),
        progress("0.5", body=7),
    ),
    case(
        "progress_not_owner",
        two_nodes(),
        acquire(),
        start(),
        progress("0.5", node="other"),
        progress("0.5", node=None),
    ),
    # -------------------------------------------------------------- outputs
    case("output_before_start_417", acquired(), upload()),
    case(
        "output_while_started",
        started(),
        upload(),
        get("/v1/jobs/{job}/outputs/log/txt"),
        get("/v1/jobs/{job}/outputs/log/txt/info"),
        job_of(),
    ),
    case(
        "output_download_accept_header",
        started(),
        upload(),
        *(
            get("/v1/jobs/{job}/outputs/log/txt", headers={"Accept": accept})
            for accept in ("application/json", "*/*", "application/data", "text/html", "")
        ),
        get("/v1/jobs/{job}/outputs/log/txt/info", headers={"Accept": "application/json"}),
        get("/v1/jobs/{job}/outputs/log/txt", user="anon", headers={"Accept": "application/json"}),
    ),
    case("output_duplicate_400", started(), upload(), upload()),
    case(
        "output_without_filename_400",
        started(),
        upload(filename=None),
        upload(filename=None, headers={"Content-Disposition": "attachment"}),
    ),
    case("output_after_finish_406", finished(), upload()),
    case("output_after_error_allowed", errored(), upload(), job_of()),
    case(
        "output_after_reset_soft_deleted",
        started(),
        upload(),
        finish(body=FINISH_ERROR),
        reset(),
        get("/v1/jobs/{job}/outputs/log/txt/info"),
        job_of(),
        start(),
        upload(),
    ),
    case(
        "output_after_cancel",
        started(),
        delete("/v1/jobs/{job}/cancel", user="admin"),
        upload(),
        job_of(),
    ),
    case(
        "output_missing_400",
        started(),
        get("/v1/jobs/{job}/outputs/nothing/txt"),
        get("/v1/jobs/{job}/outputs/nothing/txt/info"),
        get("/v1/jobs/999999/outputs/log/txt/info"),
    ),
    case(
        "output_permissions",
        two_nodes(),
        acquire(),
        start(),
        upload(node="other"),
        upload(node=None),
        upload(node=None, user="admin", name="admin"),
        get("/v1/jobs/{job}/outputs/admin/txt", user="anon"),
    ),
    # --------------------------------------------------------------- finish
    case("finish_ok", started(), finish(), job_of(), node_of()),
    case("finish_with_error", started(), finish(body=FINISH_ERROR), job_of(), node_of()),
    case(
        "finish_missing_fields_400",
        started(),
        finish(body={"send_notification": ""}),
        finish(body={"success": True}),
        finish(body={"success": "yes", "send_notification": ""}),
        finish(body={"success": False, "send_notification": "", "error": 5}),
        job_of(),
    ),
    case(
        "finish_success_flag_does_not_decide",
        created(("job", "second", "third")),
        acquire(),
        start(),
        finish(body={"success": False, "send_notification": ""}),
        job_of(),
        acquire("second"),
        start("second"),
        finish("second", body={"success": True, "send_notification": "", "error": ""}),
        job_of("second"),
        reset("second"),
        acquire("third"),
        start("third"),
        finish("third", body={"success": True, "send_notification": "", "error": None}),
        job_of("third"),
    ),
    case("finish_before_start_500", acquired(), finish()),
    case("finish_twice_500", started(), finish(), finish()),
    case(
        "finish_on_cancelled_job",
        started(),
        delete("/v1/jobs/{job}/cancel", user="admin"),
        finish(body=FINISH_ERROR),
        job_of(),
        node_of(),
    ),
    case(
        "finish_not_owner", two_nodes(), acquire(), start(), finish(node="other"), finish(node=None)
    ),
    # ---------------------------------------------------------------- reset
    case("reset_errored_job", errored(), reset(), job_of(), node_of()),
    case("reset_created_406", acquired(), reset()),
    case("reset_started_406", started(), reset()),
    case("reset_finished_406", finished(), reset()),
    case(
        "reset_not_owner_403",
        two_nodes(),
        acquire(),
        start(),
        finish(body=FINISH_ERROR),
        reset(node="other"),
        reset(node=None),
    ),
    # -------------------------------------------------------------- release
    case("release_created", acquired(), release(), job_of()),
    case("release_errored", errored(), release(), job_of(), node_of()),
    case("release_started_500", started(), release(), job_of()),
    case("release_finished_406", finished(), release()),
    case(
        "release_not_owner_403", two_nodes(), acquire(), release(node="other"), release(node=None)
    ),
    case(
        "give_back_a_started_job",
        started(),
        finish(body=FINISH_ERROR),
        reset(),
        release(),
        job_of(),
        node_of(),
        jobs_list(WORK_FILTER),
    ),
    # ----------------------------------------------------------- cancel/abort
    case("cancel_started_job", started(), delete("/v1/jobs/{job}/cancel", user="admin"), job_of()),
    case(
        "cancel_created_job",
        acquired(),
        delete("/v1/jobs/{job}/cancel", user="admin"),
        job_of(),
        jobs_list(WORK_FILTER),
        start(),
        job_of(),
    ),
    case("cancel_finished_job", finished(), delete("/v1/jobs/{job}/cancel", user="admin")),
    case(
        "cancel_and_abort_need_admin",
        started(),
        delete("/v1/jobs/{job}/cancel"),
        delete("/v1/jobs/{job}/cancel", node="node"),
        delete("/v1/jobs/{job}/abort"),
        delete("/v1/jobs/{job}/abort", node="node"),
        job_of(),
    ),
    case(
        "cancel_abort_unknown_job",
        created(),
        delete("/v1/jobs/999999/cancel", user="admin"),
        delete("/v1/jobs/999999/abort", user="admin"),
    ),
    case(
        "abort_started_job_quirk",
        created(("job", "second")),
        acquire(),
        start(),
        upload(),
        delete("/v1/jobs/{job}/abort", user="admin"),
        job_of(),
        node_of(),
        get("/v1/jobs/{job}/outputs/log/txt/info"),
        acquire("second"),
        start("second"),
        finish(),
        node_of(),
        start("second"),
    ),
    case("abort_created_job", acquired(), delete("/v1/jobs/{job}/abort", user="admin"), job_of()),
    case("abort_finished_406", finished(), delete("/v1/jobs/{job}/abort", user="admin")),
    case("abort_errored_job", errored(), delete("/v1/jobs/{job}/abort", user="admin"), job_of()),
    case(
        "abort_then_release_and_reacquire",
        two_nodes(),
        acquire(),
        start(),
        delete("/v1/jobs/{job}/abort", user="admin"),
        release(),
        acquire(node="other"),
        start(node="other"),
        finish(),
        release(),
        node_of(),
        job_of(),
    ),
    case(
        "cancelled_job_refusals",
        started(),
        delete("/v1/jobs/{job}/cancel", user="admin"),
        reset(),
        release(),
        delete("/v1/jobs/{job}/abort", user="admin"),
        acquire(),
        finish(),
        release(),
        job_of(),
    ),
    # ----------------------------------------------------------- more outputs
    case(
        "output_upload_framing",
        started(),
        upload(content=b""),
        Step(
            "POST",
            "/v1/jobs/{job}/outputs/raw/bin",
            node="node",
            content=b"no content type",
            headers={"Content-Disposition": "attachment; filename=raw.bin"},
        ),
        upload(
            name="star",
            filename=None,
            headers={"Content-Disposition": "attachment; filename*=UTF-8''%C3%A9t%C3%A9.txt"},
        ),
        get("/v1/jobs/{job}/outputs/star/txt/info"),
        Step(
            "POST",
            "/v1/jobs/{job}/outputs/log/txt/",
            node="node",
            content=b"x",
            headers={"Content-Disposition": "attachment; filename=a", "Content-Type": "text/plain"},
        ),
        upload(job="missing", filename=None),
    ),
    case("output_admin_before_start_417", acquired(), upload(node=None, user="admin")),
    case(
        "chunked_bodies_are_not_seen",
        started(),
        upload(chunked=True),
        job_of(),
        Step(
            "POST",
            "/v1/jobs/list",
            content=b'{"expressions": [{"type": "isnull", "field": "node"}]}',
            headers={"Content-Type": "application/json"},
            chunked=True,
        ),
        Step(
            "POST",
            "/v1/jobs/{job}/finish",
            node="node",
            content=b"{oops",
            headers={"Content-Type": "application/json"},
            chunked=True,
        ),
    ),
    case(
        "start_and_finish_extra_keys",
        acquired(),
        start(body={"send_notification": "", "extra": [1]}),
        finish(body={"success": True, "send_notification": "", "more": {}}),
        job_of(),
    ),
    case(
        "progress_by_admin_and_unknown_job",
        started(),
        progress("0.5", node=None, body={}),
        Step("POST", "/v1/jobs/{job}/progress/0.5", user="admin", json={}),
        progress("0.5", job="missing"),
    ),
    # ----------------------------------------------------------- more nodes/auth
    case(
        "node_create_ignores_unknown_and_read_only_keys",
        node_create(pk=99, current_job=5, last_seen="now", colour="blue"),
    ),
    case(
        "node_patch_empty_and_read_only",
        new_node(),
        patch("/v1/nodes/{node}", {}, node="node"),
        patch("/v1/nodes/{node}", {"current_job": 3, "last_seen": None}, node="node"),
        patch("/v1/nodes/{node}", {"index": -1}, node="node"),
        patch("/v1/nodes/999", {}, node="node"),
        node_of(),
    ),
    case(
        "node_id_odd_spellings",
        new_node(),
        get("/v1/nodes/ping", headers={"Node-Id": "0{node}"}),
        get("/v1/nodes/ping", headers={"Node-Id": "+{node}"}),
        get("/v1/nodes/ping", headers={"Node-Id": "1.0"}),
        get("/v1/nodes/ping", headers={"Node-Id": "-1"}),
    ),
    case(
        "auth_header_variants",
        post("/v1/jobs/list", {}, user="anon", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
        post("/v1/jobs/list", {}, user="anon", headers={"Authorization": "Bearer"}),
        post("/v1/jobs/list", {}, user="anon", headers={"Authorization": "Bearer a b"}),
        post("/v1/jobs/list", {}, user="anon", headers={"Authorization": "bearer x.y.z"}),
    ),
    case(
        "auth_obtain_odd_values",
        post("/v1/auth/obtain", {"username": ["admin"], "password": "admin"}, user="anon"),
        post("/v1/auth/obtain", {"username": "", "password": "admin"}, user="anon"),
        post("/v1/auth/obtain", {"username": None, "password": "admin"}, user="anon"),
        post("/v1/auth/obtain", [1], user="anon"),
        post("/v1/auth/obtain/", {"username": "admin", "password": "admin"}, user="anon"),
    ),
    case(
        "json_body_without_content_type_415",
        created(),
        Step("POST", "/v1/jobs/list", content=b"{}"),
        Step("POST", "/v1/jobs/list", content=b"{}", headers={"Content-Type": "text/plain"}),
        Step("POST", "/v1/jobs/list", content=b""),
        Step("POST", "/v1/auth/obtain", user="anon", content=b'{"username": "admin"}'),
    ),
    # ------------------------------------------------------ Node-Id anywhere
    case(
        "node_id_unknown_on_other_endpoints",
        created(),
        post("/v1/jobs/list", {}, headers={"Node-Id": "999"}),
        get("/v1/jobs/{job}", headers={"Node-Id": "999"}),
        get("/v1/job-templates/{template}", headers={"Node-Id": "999"}),
        post("/v1/nodes/list", {}, headers={"Node-Id": "abc"}),
        get("/v1/hardware/get-hardware-generation/7.5", headers={"Node-Id": "x"}),
        post("/v1/hardware/list", {}, headers={"Node-Id": "999"}),
    ),
    case(
        "node_id_bad_on_node_actions",
        created(),
        start(node=None, headers={"Node-Id": "999"}),
        finish(node=None, headers={"Node-Id": "abc"}),
        release(node=None, headers={"Node-Id": "999"}),
        upload(
            node=None, headers={"Node-Id": "999", "Content-Disposition": "attachment; filename=a"}
        ),
        delete("/v1/jobs/{job}/cancel", headers={"Node-Id": "999"}),
    ),
    # ---------------------------------------------------------- odd requests
    case(
        "unknown_urls_and_methods",
        created(),
        get("/v1/no-such-thing"),
        get("/v1/jobs/{job}/nope", node="node"),
        delete("/v1/jobs/{job}/start", node="node"),
        get("/v1/nodes/list"),
    ),
    case(
        "trailing_slashes",
        created(),
        get("/v1/jobs/{job}/"),
        post("/v1/jobs/list/", {}),
        get("/v1/jobs/{job}/acquire/", node="node"),
    ),
    case(
        "malformed_json_on_job_actions",
        started(),
        raw("POST", "/v1/jobs/{job}/finish", b"{", node="node"),
        raw("POST", "/v1/jobs/{job}/progress/0.5", b"[", node="node"),
        job_of(),
    ),
]


# --------------------------------------------------------------------- running


@dataclass(frozen=True)
class Reply:
    status: int
    kind: str
    """`empty`, `json`, `html` or `data (<content type>)`."""
    body: bytes
    data: Any = None
    """The body's JSON value, when it is JSON."""


def _kind(response: httpx.Response) -> tuple[str, Any]:
    """The body's kind (from its content type) and its JSON value when it parses as JSON."""
    if not response.content:
        return "empty", None
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if content_type == "text/html":
        return "html", None
    kind = "json" if content_type == "application/json" else f"data ({content_type})"
    try:
        return kind, json.loads(response.content)
    except ValueError:
        return kind, None


def _resolve(value: Any, saved: Mapping[str, Any]) -> Any:
    if isinstance(value, Ref):
        return saved.get(value.name)
    if isinstance(value, dict):
        return {k: _resolve(v, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, saved) for v in value]
    return value


class _Saved(dict[str, Any]):
    """Saved values; `{missing}` is a pk no object has."""

    def __missing__(self, key: str) -> str:
        return f"missing-{key}"


_REAL_TOKENS: dict[tuple[str, str], tuple[float, str]] = {}
_TOKEN_LIFE = 240.0


def _login(client: httpx.Client, who: Credentials) -> str:
    reply = client.post(
        "/v1/auth/obtain", json={"username": who.username, "password": who.password}
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access"]
    return token


def _token(client: httpx.Client, server: ServerUnderTest, who: Credentials) -> str:
    if not server.real:
        return _login(client, who)
    key = (server.url, who.username)
    cached = _REAL_TOKENS.get(key)
    if cached is None or time.monotonic() - cached[0] > _TOKEN_LIFE:
        cached = (time.monotonic(), _login(client, who))
        _REAL_TOKENS[key] = cached
    return cached[1]


def run_case(steps: Sequence[Step], server: ServerUnderTest) -> list[Reply]:
    """Send `steps` in order to `server` (admin and node already logged in)."""
    replies: list[Reply] = []
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        tokens = {
            "admin": _token(client, server, server.admin),
            "node": _token(client, server, server.node),
        }
        saved = _Saved(node_password=server.node.password, missing=999999)
        for step in steps:
            headers: dict[str, str] = {}
            if step.user in tokens:
                headers["Authorization"] = f"Bearer {tokens[step.user]}"
            elif step.user == "bad":
                headers["Authorization"] = "Bearer not.a.valid-token"
            if step.node is not None:
                headers["Node-Id"] = str(saved[step.node])
            headers.update({k: v.format_map(saved) for k, v in step.headers.items()})
            kwargs: dict[str, Any] = {}
            if step.content is not None:
                kwargs["content"] = iter([step.content]) if step.chunked else step.content
            elif step.json is not NO_BODY:
                kwargs["json"] = _resolve(step.json, saved)
            response = client.request(
                step.method, step.path.format_map(saved), headers=headers, **kwargs
            )
            kind, data = _kind(response)
            replies.append(Reply(response.status_code, kind, response.content, data))
            if kind == "json" and isinstance(data, dict):
                for name, key in step.save.items():
                    if key in data:
                        saved[name] = data[key]
    return replies


# ------------------------------------------------------------------ comparing

# Keys whose values must be equal too: what the case itself decides (descriptions, names,
# node fields, parameter values) or the server derives from it (error reasons, flags, the
# seeded generations). Everything else (pks, times, tokens, messages) is compared by type.
VALUE_KEYS = frozenset(
    {
        "description",
        "error_reason",
        "is_cancelled",
        "input_values",
        "parameter_values",
        "generation",
        "min_compute_capability",
        "max_compute_capability",
        "ip",
        "index",
        "cpu_mem",
        "gpu_mem",
        "driver_version",
        "name",
        "type",
        "filename",
    }
)


def _category(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def shape_differences(real: Any, dev: Any, where: str = "$", key: str = "") -> list[str]:
    """How `dev` differs from `real` in shape (and in value under `VALUE_KEYS`)."""
    real_kind, dev_kind = _category(real), _category(dev)
    if real_kind != dev_kind:
        return [f"{where}: real {real_kind} {_short(real)}, devserver {dev_kind} {_short(dev)}"]
    if key in VALUE_KEYS and real != dev:
        return [f"{where}: real {_short(real)}, devserver {_short(dev)}"]
    found: list[str] = []
    if isinstance(real, dict):
        if set(real) != set(dev):
            missing = sorted(set(real) - set(dev))
            extra = sorted(set(dev) - set(real))
            found.append(f"{where}: keys missing {missing}, extra {extra}")
        for name in sorted(set(real) & set(dev)):
            found += shape_differences(real[name], dev[name], f"{where}.{name}", name)
    elif isinstance(real, list):
        if len(real) != len(dev):
            found.append(f"{where}: real {len(real)} items, devserver {len(dev)}")
        for index, (a, b) in enumerate(zip(real, dev, strict=False)):
            found += shape_differences(a, b, f"{where}[{index}]", key)
    return found


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def reply_differences(real: Reply, dev: Reply) -> list[str]:
    found: list[str] = []
    if real.status != dev.status:
        found.append(f"status: real {real.status}, devserver {dev.status}")
    if real.kind != dev.kind:
        found.append(f"body kind: real {real.kind}, devserver {dev.kind}")
    elif real.data is not None and dev.data is not None:
        found += shape_differences(real.data, dev.data)
    elif real.kind != "html" and real.body != dev.body:
        found.append("bytes differ")
    return found


def _body_text(reply: Reply, limit: int = 600) -> str:
    text = reply.body.decode("utf-8", "replace")
    if reply.kind == "html":
        text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# ------------------------------------------------------------------ the test


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_answers(case: Case, real_server: ServerUnderTest) -> None:
    real = run_case(case.steps, real_server)
    with devserver_server() as dev_server:
        dev = run_case(case.steps, dev_server)
    reports: list[str] = []
    for number, (step, a, b) in enumerate(zip(case.steps, real, dev, strict=True), 1):
        differences = reply_differences(a, b)
        if differences:
            reports.append(
                f"step {number}: {step.describe()}\n  "
                + "\n  ".join(differences)
                + f"\n  real {a.status}: {_body_text(a)}\n  devserver {b.status}: {_body_text(b)}"
            )
    if reports:
        pytest.fail(f"case {case.name}:\n" + "\n".join(reports), pytrace=False)


def test_the_case_table() -> None:
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), "case names must be unique"
    assert len(CASES) >= 85
