"""The real client against a real job server on 127.0.0.1: every call of PROTOCOL.md and
the error statuses of its table.

The protocol tests run twice through ``any_server``: on the reference server and on the
real UFDL backend, from the same code. The tests at the end need what only the reference
server offers (fault injection, a short token lifetime, exact request bodies) or no
server at all; they say so.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs

from agent.devserver import DevServer
from agent.redact import MIN_LITERAL_LENGTH, Redactor
from agent.server import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    JobTaken,
    NotStarted,
    RetryPolicies,
    RetryPolicy,
    ServerClient,
    ServerFault,
    ServerUnreachable,
    filters,
)
from agent.server.client import LazyJobs
from tests.server_params import reference_only
from tests.servers import Seen, ServerUnderTest

pytestmark = pytest.mark.anyio

FAST = RetryPolicies(
    quick=RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0),
    normal=RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0),
    long=RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0),
)

PARAMETERS = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "outputs"},
}


@pytest.fixture
def server(any_server: ServerUnderTest) -> ServerUnderTest:
    return any_server


@pytest.fixture
def devserver(server: ServerUnderTest) -> DevServer:
    """The reference server object (fault injection, request bodies): ``reference_only``."""
    assert server.devserver is not None, "mark the test reference_only"
    return server.devserver


@pytest.fixture
async def admin(server: ServerUnderTest) -> AsyncIterator[ServerClient]:
    credentials = server.admin
    async with ServerClient(
        server.url, credentials.username, credentials.password, policies=FAST
    ) as client:
        yield client


@pytest.fixture
async def node_client(server: ServerUnderTest) -> AsyncIterator[ServerClient]:
    credentials = server.node
    async with ServerClient(
        server.url, credentials.username, credentials.password, policies=FAST
    ) as client:
        yield client


async def seen_since(server: ServerUnderTest, start: int, path: str, count: int) -> list[Seen]:
    """Requests to ``path`` answered after the ``start``-th entry of the log, waiting
    (briefly) until at least ``count`` are there: the real server's access log is
    written right after each answer."""
    with anyio.fail_after(5):
        while True:
            seen = [r for r in server.request_log()[start:] if r.path == path]
            if len(seen) >= count:
                return seen
            await anyio.sleep(0.02)


async def make_job(admin: ServerClient, count: int = 1) -> list[int]:
    template = await admin.import_template("t", "agent.analysis", PARAMETERS)
    jobs = []
    for _ in range(count):
        job = await admin.create_job(template.pk, {})
        jobs.append(job.pk)
    return jobs


async def nodes(client: ServerClient, count: int, ip: str = "127.0.0.9") -> list[int]:
    created = []
    for index in range(count):
        node = await client.create_node(ip, index, cpu_mem=1024)
        created.append(node.pk)
    return created


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"upload-{len(data)}.bin"
    path.write_bytes(data)
    return path


def _recent(moment: datetime | None) -> bool:
    """An aware timestamp within a minute of now, whatever zone the server writes."""
    if moment is None or moment.utcoffset() is None:
        return False
    return abs(datetime.now(UTC) - moment) < timedelta(minutes=1)


# ---------------------------------------------------------------- on both servers


async def test_auth_and_wrong_password(server: ServerUnderTest) -> None:
    node = server.node
    async with ServerClient(server.url, node.username, node.password, policies=FAST) as client:
        tokens = await client.obtain()
        assert tokens.access and tokens.refresh
        refreshed = await client.refresh()
        assert refreshed.access
        assert await client.list_pending_jobs() == []  # the refreshed token is accepted
    async with ServerClient(server.url, node.username, "wrong", policies=FAST) as client:
        with pytest.raises(AuthError, match="refused"):
            await client.list_pending_jobs()


async def test_nodes(node_client: ServerClient) -> None:
    first, second = await nodes(node_client, 2)
    found = await node_client.find_node("127.0.0.9", 1)
    assert found is not None and found.pk == second
    assert found.cpu_mem == 1024 and found.gpu_mem is None and found.hardware_generation is None
    assert await node_client.find_node("127.0.0.9", 5) is None
    assert await node_client.find_node("127.0.0.99", 0) is None  # the ip matches exactly
    with pytest.raises(BadRequest):
        await node_client.create_node("127.0.0.9", 0, cpu_mem=1)
    updated = await node_client.update_node(first, driver_version="x")
    assert updated.driver_version == "x"
    node = await node_client.get_node(first)
    assert node.current_job is None and node.driver_version == "x"
    await node_client.ping(first)
    assert _recent((await node_client.get_node(first)).last_seen)


async def test_patch_of_another_node_is_forbidden(node_client: ServerClient) -> None:
    first, second = await nodes(node_client, 2)
    # update_node always sends the node's own Node-Id; forge another one.
    with pytest.raises(Forbidden):
        await node_client._call(
            "PATCH",
            f"/v1/nodes/{first}",
            node=second,
            json={"driver_version": "y"},
            policy=FAST.normal,
        )
    assert (await node_client.get_node(first)).driver_version is None


async def test_job_lifecycle_and_errors(
    admin: ServerClient, node_client: ServerClient, tmp_path: Path
) -> None:
    job_pk, other_pk = await make_job(admin, 2)
    mine, theirs = await nodes(node_client, 2)

    pending = await node_client.list_pending_jobs()
    assert [job.pk for job in pending] == [job_pk, other_pk]

    acquired = await node_client.acquire(job_pk, mine)
    assert acquired.node == mine
    assert [job.pk for job in await node_client.list_pending_jobs()] == [other_pk]
    with pytest.raises(ServerFault):  # progress before start: a bare assert, HTML 500
        await node_client.progress(job_pk, mine, 0.5)
    assert (await node_client.acquire(job_pk, mine)).node == mine  # same node: no-op
    with pytest.raises(JobTaken):  # one after the other, even the racy server refuses
        await node_client.acquire(job_pk, theirs)
    assert (await node_client.get_job(job_pk)).node == mine
    with pytest.raises(NotStarted):  # outputs before start: 417
        await node_client.add_output(job_pk, mine, "early", "txt", _file(tmp_path, b"x"))

    started = await node_client.start(job_pk, mine)
    assert _recent(started.start_time) and started.end_time is None
    assert started.phase == "STARTED"
    assert (await node_client.get_node(mine)).current_job == job_pk
    await node_client.acquire(other_pk, mine)
    with pytest.raises(Conflict):  # one job in progress per node
        await node_client.start(other_pk, mine)
    await node_client.release(other_pk, mine)
    assert (await node_client.get_job(other_pk)).node is None

    with pytest.raises(ServerFault):  # release of a started job: 500
        await node_client.release(job_pk, mine)
    with pytest.raises(Conflict):  # reset only from ERRORED
        await node_client.reset(job_pk, mine)

    for value in (0.0, 1e-05, 0.5, 0.99999, 1.0, 1):
        await node_client.progress(job_pk, mine, value, {"message": "m", "log_tail": ""})

    data = bytes(range(256)) * 1000
    info = await node_client.add_output(job_pk, mine, "result", "bin", _file(tmp_path, data))
    assert (info.name, info.type, info.job) == ("result", "bin", job_pk)
    with pytest.raises(BadRequest):  # duplicate name/type
        await node_client.add_output(job_pk, mine, "result", "bin", _file(tmp_path, b"again"))
    described = await node_client.output_info(job_pk, "result", "bin")
    assert not described.deleted
    with pytest.raises(BadRequest):  # no such output
        await node_client.output_info(job_pk, "nothing", "bin")

    await node_client.finish(job_pk, mine, False, "exit code 3")
    job = await node_client.get_job(job_pk)
    assert job.phase == "ERRORED" and job.error_reason == "exit code 3"
    assert job.start_time is not None and job.end_time is not None
    assert job.start_time <= job.end_time
    assert [(o.name, o.type) for o in job.outputs] == [("result", "bin")]
    assert (await node_client.get_node(mine)).current_job is None  # finish frees the node
    with pytest.raises(ServerFault):  # second finish: 500
        await node_client.finish(job_pk, mine, True)

    await node_client.reset(job_pk, mine)
    reset = await node_client.get_job(job_pk)
    assert reset.phase == "CREATED" and reset.node == mine  # node kept
    assert reset.error_reason is None and reset.end_time is None
    assert [(o.name, o.type) for o in reset.outputs] == [("result", "bin")]  # still listed
    assert (await node_client.output_info(job_pk, "result", "bin")).deleted  # soft delete
    with pytest.raises(Forbidden):
        await node_client.release(job_pk, theirs)
    await node_client.release(job_pk, mine)
    assert (await node_client.get_job(job_pk)).node is None
    assert [job.pk for job in await node_client.list_pending_jobs()] == [job_pk, other_pk]

    await node_client.acquire(job_pk, theirs)  # a re-run meets the soft-deleted output
    await node_client.start(job_pk, theirs)
    with pytest.raises(BadRequest):
        await node_client.add_output(job_pk, theirs, "result", "bin", _file(tmp_path, b"new"))
    await node_client.finish(job_pk, theirs, True)
    assert (await node_client.get_job(job_pk)).phase == "FINISHED"
    with pytest.raises(JobTaken):  # a finished job cannot be taken again
        await node_client.acquire(job_pk, mine)
    with pytest.raises(Conflict):  # no outputs on a finished job: 406
        await node_client.add_output(job_pk, theirs, "late", "txt", _file(tmp_path, b"x"))


async def test_output_download(
    admin: ServerClient, node_client: ServerClient, tmp_path: Path
) -> None:
    (job,) = await make_job(admin)
    (mine,) = await nodes(node_client, 1)
    await node_client.acquire(job, mine)
    await node_client.start(job, mine)
    data = bytes(range(256)) * 1000
    await node_client.add_output(job, mine, "result", "bin", _file(tmp_path, data))
    dest = tmp_path / "downloaded"
    assert await node_client.download_output(job, "result", "bin", dest) == len(data)
    assert dest.read_bytes() == data
    with pytest.raises(BadRequest):
        await node_client.download_output(job, "nothing", "bin", dest)


async def test_node_id_rules(admin: ServerClient, node_client: ServerClient) -> None:
    (job,) = await make_job(admin)
    (mine,) = await nodes(node_client, 1)
    with pytest.raises(Forbidden):  # no Node-Id
        await node_client._call("GET", f"/v1/jobs/{job}/acquire", policy=FAST.normal)
    with pytest.raises(BadRequest):  # a node that does not exist
        await node_client.acquire(job, mine + 1000)
    with pytest.raises(Forbidden):
        await node_client._call("GET", "/v1/nodes/ping", policy=FAST.normal)
    with pytest.raises(BadRequest):
        await node_client.ping(mine + 1000)
    assert (await node_client.get_job(job)).node is None


async def test_cancel_abort_and_the_abort_quirk(
    admin: ServerClient, node_client: ServerClient
) -> None:
    first, second = await make_job(admin, 2)
    (mine,) = await nodes(node_client, 1)
    with pytest.raises(Forbidden):
        await node_client.cancel(first)
    await node_client.acquire(first, mine)
    await node_client.start(first, mine)
    await admin.cancel(first)
    cancelled = await node_client.get_job(first)
    assert cancelled.is_cancelled and cancelled.phase == "CANCELLED"
    assert cancelled.error_reason == "Cancelled" and cancelled.end_time is None
    with pytest.raises(Conflict):  # progress on a cancelled job: 406
        await node_client.progress(first, mine, 0.5)
    await node_client.finish(first, mine, False, "cancelled")  # 200 no-op, frees the node
    assert (await node_client.get_node(mine)).current_job is None
    assert (await node_client.get_job(first)).phase == "CANCELLED"  # unchanged

    await node_client.acquire(second, mine)
    await node_client.start(second, mine)
    await admin.abort(second)
    aborted = await node_client.get_job(second)
    assert aborted.phase == "CREATED" and aborted.node is None
    assert (await node_client.get_node(mine)).current_job == second  # the quirk
    third = (await make_job(admin))[0]
    await node_client.acquire(third, mine)
    with pytest.raises(Conflict):
        await node_client.start(third, mine)
    await node_client.finish(second, mine, False, "aborted")
    assert (await node_client.get_job(second)).phase == "CREATED"  # a no-op on the job
    await node_client.start(third, mine)
    assert (await node_client.get_node(mine)).current_job == third


async def test_filter_spec_errors(node_client: ServerClient) -> None:
    with pytest.raises(BadRequest):
        await node_client.list_jobs({"expressions": [{"type": "is_null", "field": "node"}]})
    with pytest.raises(ServerFault):
        await node_client.list_jobs(filters.spec(filters.isnull("no_such_field")))


async def test_templates_are_cached(server: ServerUnderTest, admin: ServerClient) -> None:
    template = await admin.import_template("t", "agent.analysis", PARAMETERS)
    assert template.executor_class == "agent.analysis"
    before = len(server.request_log())
    for _ in range(3):
        fetched = await admin.get_template(template.pk, template.version)
    assert fetched.parameters["analysis"].types == ["JSON"]
    assert fetched.parameters["outputs"].default == []
    await admin.list_pending_jobs()  # a request after them: once logged, so are they
    await seen_since(server, before, "/v1/jobs/list", 1)
    gets = [r for r in server.request_log()[before:] if r.path.startswith("/v1/job-templates/")]
    assert gets == [Seen("GET", f"/v1/job-templates/{template.pk}", 200)]


async def test_html_500_is_not_retried_for_state_changes(
    server: ServerUnderTest, admin: ServerClient, node_client: ServerClient
) -> None:
    (job,) = await make_job(admin)
    (mine,) = await nodes(node_client, 1)
    await node_client.acquire(job, mine)
    before = len(server.request_log())
    with pytest.raises(ServerFault) as caught:  # finish before start: a bare assert
        await node_client.finish(job, mine, True)
    assert caught.value.status == 500
    assert "<" not in caught.value.detail  # no HTML page in the error text
    await node_client.ping(mine)
    await seen_since(server, before, "/v1/nodes/ping", 1)
    finishes = [r for r in server.request_log()[before:] if r.path.endswith("/finish")]
    assert finishes == [Seen("POST", f"/v1/jobs/{job}/finish", 500)]


async def test_tokens_and_password_are_registered_for_redaction(server: ServerUnderTest) -> None:
    node = server.node
    redactor = Redactor()
    async with ServerClient(
        server.url, node.username, "node-password", policies=FAST, redactor=redactor
    ) as client:
        assert redactor.redact("node-password") == "****"
        with pytest.raises(AuthError):
            await client.obtain()
    async with ServerClient(
        server.url, node.username, node.password, policies=FAST, redactor=redactor
    ) as client:
        tokens = await client.obtain()
        assert tokens.access not in redactor.redact(f"Bearer {tokens.access}")
        assert tokens.refresh is not None
        assert tokens.refresh not in redactor.redact(tokens.refresh)
        # Registered as a literal; one shorter than MIN_LITERAL_LENGTH (the reference
        # server's "node") is masked by the run.redact patterns only, not as a bare word.
        short = len(node.password) < MIN_LITERAL_LENGTH
        assert redactor.redact(node.password) == (node.password if short else "****")


# ------------------------------------------- reference server only: fault injection


@reference_only
async def test_503_twice_then_success(devserver: DevServer, node_client: ServerClient) -> None:
    await node_client.obtain()
    devserver.fail_next(r"^/v1/jobs/list$", 503, times=2)
    assert await node_client.list_pending_jobs() == []
    lists = [r.status for r in devserver.request_log() if r.path == "/v1/jobs/list"]
    assert lists == [503, 503, 200]


@reference_only
async def test_retry_after_is_honoured(devserver: DevServer, node_client: ServerClient) -> None:
    await node_client.obtain()
    devserver.fail_next(r"^/v1/jobs/list$", 429, headers={"Retry-After": "0.3"})
    start = anyio.current_time()
    assert await node_client.list_pending_jobs() == []
    assert anyio.current_time() - start >= 0.3


async def test_token_expiry_mid_run_refreshes() -> None:
    """Needs tokens that expire in half a second: the real server's live five minutes."""
    with DevServer(port=0, access_ttl=0.5) as server:
        async with ServerClient(server.url, "node", "node", policies=FAST) as client:
            await client.list_pending_jobs()
            first = client._auth.access
            with anyio.fail_after(5):
                while True:  # wait for the server to reject the old token
                    await anyio.sleep(0.1)
                    await client.list_pending_jobs()
                    if client._auth.access != first:
                        break
            paths = [r.path for r in server.request_log()]
            assert "/v1/auth/refresh" in paths
            statuses = [r.status for r in server.request_log() if r.path == "/v1/jobs/list"]
            assert 401 in statuses and statuses[-1] == 200


# ------------------------------------------------------------- no job server at all


async def test_dead_port_fails_fast_with_a_typed_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policies = RetryPolicies(
        quick=RetryPolicy(attempts=3, timeout=2.0, wait_initial=0.05, wait_max=0.2),
        normal=RetryPolicy(attempts=3, timeout=2.0, wait_initial=0.05, wait_max=0.2),
        long=RetryPolicy(attempts=3, timeout=2.0, wait_initial=0.05, wait_max=0.2),
    )
    calls: list[Any] = []
    async with ServerClient(
        f"http://127.0.0.1:{port}", "node", "node", timeout=1.0, policies=policies
    ) as client:
        calls = [
            client.ping,
            client.list_pending_jobs,
            lambda: client.get_job(1),
            lambda: client.finish(1, 1, True),
        ]
        for call in calls:
            with anyio.fail_after(4):
                with pytest.raises(ServerUnreachable):
                    await call()


async def test_a_malformed_list_item_is_skipped(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/auth/obtain", method="POST").respond_with_json(
        {"access": "a" * 20, "refresh": "r" * 20}
    )
    good = {"pk": 1, "template": {"pk": 1, "name": "t", "version": 1}}
    httpserver.expect_request(
        "/v1/jobs/list", method="POST", headers={"Authorization": "Bearer " + "a" * 20}
    ).respond_with_json([good, {"pk": "not a number"}, ["nonsense"]])
    async with ServerClient(
        httpserver.url_for("/").rstrip("/"), "node", "node", policies=FAST
    ) as client:
        jobs = await client.list_pending_jobs()
    assert [job.pk for job in jobs] == [1]
    sent = httpserver.log[-1][0].get_json()
    assert sent["expressions"][0]["sub_expressions"][0] == {"type": "isnull", "field": "start_time"}


async def test_pending_jobs_are_validated_when_read(httpserver: HTTPServer) -> None:
    """The poll's list: every pk at once, each job validated only when the iteration
    reaches it (a malformed one is skipped then), in the order a reorder gives."""
    httpserver.expect_request("/v1/auth/obtain", method="POST").respond_with_json(
        {"access": "a" * 20, "refresh": "r" * 20}
    )
    template = {"pk": 1, "name": "t", "version": 1}
    items = [
        {"pk": 1, "template": template},
        {"pk": 2, "template": "not a template"},
        {"pk": 3, "template": template},
        ["nonsense"],
    ]
    httpserver.expect_request("/v1/jobs/list", method="POST").respond_with_json(items)
    async with ServerClient(
        httpserver.url_for("/").rstrip("/"), "node", "node", policies=FAST
    ) as client:
        jobs = await client.lazy_jobs(filters.PENDING_JOBS)
    assert len(jobs) == 4
    assert jobs.pks == {1, 2, 3}
    with capture_logs() as logged:
        first = next(iter(jobs))
        assert first.pk == 1
        assert logged == []  # nothing behind the first job was looked at
        assert [job.pk for job in jobs] == [1, 3]
    assert [entry.get("pk") for entry in logged] == [2, None]
    assert [job.pk for job in jobs.reordered(lambda raw: raw[::-1])] == [3, 1]
    already = LazyJobs([first])
    assert (already.pks, list(already)) == ({1}, [first])


async def test_cookies_from_the_server_are_not_sent_back(httpserver: HTTPServer) -> None:
    """Bearer tokens only: a cookie the server sets is neither kept nor sent."""
    httpserver.expect_request("/v1/auth/obtain", method="POST").respond_with_json(
        {"access": "a" * 20, "refresh": "r" * 20},
        headers={"Set-Cookie": "sessionid=abc; Path=/"},
    )
    httpserver.expect_request("/v1/jobs/list", method="POST").respond_with_json(
        [], headers={"Set-Cookie": "csrftoken=def; Path=/"}
    )
    async with ServerClient(
        httpserver.url_for("/").rstrip("/"), "node", "node", policies=FAST
    ) as client:
        await client.list_pending_jobs()
        await client.list_pending_jobs()
    assert [request.headers.get("Cookie") for request, _ in httpserver.log] == [None, None, None]


async def test_calls_carry_the_clients_headers_and_the_servers_path(
    httpserver: HTTPServer,
) -> None:
    """Exact requests, sent straight to the transport: the server's URL may have a path
    of its own, and every call carries the client's default headers with its own."""
    token = "a" * 20
    httpserver.expect_request("/ufdl/v1/auth/obtain", method="POST").respond_with_json(
        {"access": token, "refresh": "r" * 20}
    )
    httpserver.expect_request("/ufdl/v1/jobs/7/acquire", method="GET").respond_with_json(
        {"pk": 7, "template": {"pk": 1, "name": "t", "version": 1}}
    )
    async with ServerClient(httpserver.url_for("/ufdl/"), "node", "pw", policies=FAST) as client:
        job = await client.acquire(7, 3)
    assert job.pk == 7
    (login, _), (acquire, _) = httpserver.log
    assert login.get_json() == {"username": "node", "password": "pw"}
    assert login.headers["Content-Type"] == "application/json"
    assert "Authorization" not in login.headers
    assert acquire.headers["Authorization"] == f"Bearer {token}"
    assert acquire.headers["Node-Id"] == "3"
    for request in (login, acquire):
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"].startswith("python-httpx/")


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_a_proxy_from_the_environment_carries_the_calls(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` is honoured for the server's calls (here the proxy answers them
    itself: nothing listens where the server's URL points)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _without_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/"))
    httpserver.expect_request("/v1/auth/obtain", method="POST").respond_with_json(
        {"access": "a" * 20, "refresh": "r" * 20}
    )
    async with ServerClient(f"http://127.0.0.1:{port}", "node", "pw", policies=FAST) as client:
        await client.obtain()
    ((login, _),) = httpserver.log
    assert login.headers["Host"] == f"127.0.0.1:{port}"


async def test_no_proxy_sends_the_calls_straight_to_the_server(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_proxies(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    httpserver.expect_request("/v1/auth/obtain", method="POST").respond_with_json(
        {"access": "a" * 20, "refresh": "r" * 20}
    )
    async with ServerClient(httpserver.url_for("/").rstrip("/"), "n", "pw", policies=FAST) as c:
        await c.obtain()
    assert len(httpserver.log) == 1


async def test_the_installed_httpx_lets_calls_skip_the_client_layers() -> None:
    """Server calls go straight to the transport ``httpx`` picks for their URL (its
    proxy, if any); an ``httpx`` without that lookup would send them all through the
    client, correct but slower, which this makes visible."""
    async with httpx.AsyncClient() as client:
        assert callable(getattr(client, "_transport_for_url", None))
