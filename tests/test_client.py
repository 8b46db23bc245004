"""The real client against the real reference server on 127.0.0.1: every call of
PROTOCOL.md and the error statuses of its table."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pytest_httpserver import HTTPServer

from agent.devserver import DevServer
from agent.redact import Redactor
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
def server(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(port=0, db_path=tmp_path / "db.sqlite3") as running:
        yield running


@pytest.fixture
async def admin(server: DevServer) -> AsyncIterator[ServerClient]:
    async with ServerClient(server.url, "admin", "admin", policies=FAST) as client:
        yield client


@pytest.fixture
async def node_client(server: DevServer) -> AsyncIterator[ServerClient]:
    async with ServerClient(server.url, "node", "node", policies=FAST) as client:
        yield client


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


async def test_auth_and_wrong_password(server: DevServer) -> None:
    async with ServerClient(server.url, "node", "node", policies=FAST) as client:
        tokens = await client.obtain()
        assert tokens.access and tokens.refresh
        refreshed = await client.refresh()
        assert refreshed.access
    async with ServerClient(server.url, "node", "wrong", policies=FAST) as client:
        with pytest.raises(AuthError, match="refused"):
            await client.ping()


async def test_nodes(node_client: ServerClient) -> None:
    first, second = await nodes(node_client, 2)
    found = await node_client.find_node("127.0.0.9", 1)
    assert found is not None and found.pk == second
    assert await node_client.find_node("127.0.0.9", 5) is None
    with pytest.raises(BadRequest):
        await node_client.create_node("127.0.0.9", 0, cpu_mem=1)
    updated = await node_client.update_node(first, driver_version="x")
    assert updated.driver_version == "x"
    node = await node_client.get_node(first)
    assert node.current_job is None
    await node_client.ping(first)
    assert (await node_client.get_node(first)).last_seen is not None


async def test_patch_of_another_node_is_forbidden(
    server: DevServer, node_client: ServerClient
) -> None:
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


async def test_job_lifecycle_and_errors(
    admin: ServerClient, node_client: ServerClient, tmp_path: Path
) -> None:
    job_pk, other_pk = await make_job(admin, 2)
    mine, theirs = await nodes(node_client, 2)

    pending = await node_client.list_pending_jobs()
    assert [job.pk for job in pending] == [job_pk, other_pk]

    acquired = await node_client.acquire(job_pk, mine)
    assert acquired.node == mine
    with pytest.raises(ServerFault):  # progress before start: a bare assert, HTML 500
        await node_client.progress(job_pk, mine, 0.5)
    assert (await node_client.acquire(job_pk, mine)).node == mine  # same node: no-op
    with pytest.raises(JobTaken):
        await node_client.acquire(job_pk, theirs)
    with pytest.raises(NotStarted):  # outputs before start: 417
        await node_client.add_output(job_pk, mine, "early", "txt", _file(tmp_path, b"x"))

    started = await node_client.start(job_pk, mine)
    assert started.start_time is not None
    assert (await node_client.get_node(mine)).current_job == job_pk
    await node_client.acquire(other_pk, mine)
    with pytest.raises(Conflict):  # one job in progress per node
        await node_client.start(other_pk, mine)
    await node_client.release(other_pk, mine)

    with pytest.raises(ServerFault):  # release of a started job: 500
        await node_client.release(job_pk, mine)
    with pytest.raises(Conflict):  # reset only from ERRORED
        await node_client.reset(job_pk, mine)

    for value in (0.0, 1e-05, 0.5, 0.99999, 1.0, 1):
        await node_client.progress(job_pk, mine, value, {"message": "m", "log_tail": ""})

    data = bytes(range(256)) * 1000
    info = await node_client.add_output(job_pk, mine, "result", "bin", _file(tmp_path, data))
    assert (info.name, info.type) == ("result", "bin")
    with pytest.raises(BadRequest):  # duplicate name/type
        await node_client.add_output(job_pk, mine, "result", "bin", _file(tmp_path, b"again"))
    described = await node_client.output_info(job_pk, "result", "bin")
    assert not described.deleted
    dest = tmp_path / "downloaded"
    assert await node_client.download_output(job_pk, "result", "bin", dest) == len(data)
    assert dest.read_bytes() == data

    await node_client.finish(job_pk, mine, False, "exit code 3")
    job = await node_client.get_job(job_pk)
    assert job.phase == "ERRORED" and job.error_reason == "exit code 3"
    with pytest.raises(ServerFault):  # second finish: 500
        await node_client.finish(job_pk, mine, True)

    await node_client.reset(job_pk, mine)
    reset = await node_client.get_job(job_pk)
    assert reset.phase == "CREATED" and reset.node == mine  # node kept
    assert (await node_client.output_info(job_pk, "result", "bin")).deleted  # soft delete
    with pytest.raises(Forbidden):
        await node_client.release(job_pk, theirs)
    await node_client.release(job_pk, mine)
    assert (await node_client.get_job(job_pk)).node is None


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
    with pytest.raises(Conflict):  # progress on a cancelled job: 406
        await node_client.progress(first, mine, 0.5)
    await node_client.finish(first, mine, False, "cancelled")  # 200 no-op, frees the node
    assert (await node_client.get_node(mine)).current_job is None

    await node_client.acquire(second, mine)
    await node_client.start(second, mine)
    await admin.abort(second)
    assert (await node_client.get_node(mine)).current_job == second  # the quirk
    third = (await make_job(admin))[0]
    await node_client.acquire(third, mine)
    with pytest.raises(Conflict):
        await node_client.start(third, mine)
    await node_client.finish(second, mine, False, "aborted")
    await node_client.start(third, mine)


async def test_filter_spec_errors(node_client: ServerClient) -> None:
    with pytest.raises(BadRequest):
        await node_client.list_jobs({"expressions": [{"type": "is_null", "field": "node"}]})
    with pytest.raises(ServerFault):
        await node_client.list_jobs(filters.spec(filters.isnull("no_such_field")))


async def test_templates_are_cached(server: DevServer, admin: ServerClient) -> None:
    template = await admin.import_template("t", "agent.analysis", PARAMETERS)
    server.clear_request_log()
    for _ in range(3):
        fetched = await admin.get_template(template.pk, template.version)
    assert fetched.parameters["analysis"].types == ["JSON"]
    gets = [r for r in server.request_log() if r.path == f"/v1/job-templates/{template.pk}"]
    assert len(gets) == 1


async def test_503_twice_then_success(server: DevServer, node_client: ServerClient) -> None:
    await node_client.obtain()
    server.fail_next(r"^/v1/nodes/ping", 503, times=2)
    await node_client.ping()
    pings = [r.status for r in server.request_log() if r.path == "/v1/nodes/ping"]
    assert pings == [503, 503, 200]


async def test_retry_after_is_honoured(server: DevServer, node_client: ServerClient) -> None:
    await node_client.obtain()
    server.fail_next(r"^/v1/nodes/ping", 429, headers={"Retry-After": "0.3"})
    start = anyio.current_time()
    await node_client.ping()
    assert anyio.current_time() - start >= 0.3


async def test_html_500_is_not_retried_for_state_changes(
    server: DevServer, admin: ServerClient, node_client: ServerClient
) -> None:
    (job,) = await make_job(admin)
    (mine,) = await nodes(node_client, 1)
    await node_client.acquire(job, mine)
    server.clear_request_log()
    with pytest.raises(ServerFault) as caught:  # finish before start: a bare assert
        await node_client.finish(job, mine, True)
    assert "html" not in caught.value.detail.lower() or "<" not in caught.value.detail
    finishes = [r for r in server.request_log() if r.path.endswith("/finish")]
    assert len(finishes) == 1


async def test_token_expiry_mid_run_refreshes(tmp_path: Path) -> None:
    with DevServer(port=0, access_ttl=0.5) as server:
        async with ServerClient(server.url, "node", "node", policies=FAST) as client:
            await client.ping()
            first = client._auth.access
            with anyio.fail_after(5):
                while True:  # wait for the server to reject the old token
                    await anyio.sleep(0.1)
                    await client.ping()
                    if client._auth.access != first:
                        break
            paths = [r.path for r in server.request_log()]
            assert "/v1/auth/refresh" in paths
            statuses = [r.status for r in server.request_log() if r.path == "/v1/nodes/ping"]
            assert 401 in statuses and statuses[-1] == 200


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


async def test_tokens_and_password_are_registered_for_redaction(server: DevServer) -> None:
    redactor = Redactor()
    async with ServerClient(
        server.url, "node", "node-password", policies=FAST, redactor=redactor
    ) as client:
        assert redactor.redact("node-password") == "****"
        with pytest.raises(AuthError):
            await client.obtain()
    async with ServerClient(server.url, "node", "node", policies=FAST, redactor=redactor) as client:
        tokens = await client.obtain()
        assert tokens.access not in redactor.redact(f"Bearer {tokens.access}")


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"upload-{len(data)}.bin"
    path.write_bytes(data)
    return path


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
