"""End to end: the agent against a job server, real jobs, every row of the decision table
observed on the server.

Each scenario runs twice through ``any_server``: on the reference server and on the real
UFDL backend. What is checked is what the server saw and stores (the job's phase and
times, its outputs and their bytes, the calls it answered), not only the agent's
report. The scenarios marked ``reference_only`` need its fault injection."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest
from pytest_httpserver import HTTPServer

from agent.logs import configure_logging
from agent.outcome import EndReason
from agent.outputs import upload_output
from agent.redact import Redactor
from agent.server import BadRequest, ServerClient
from tests.agent_harness import Harness, agent_settings, harness, job_writable
from tests.server_params import reference_only
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def one_core(command: str | list[str], **extra: object) -> dict[str, object]:
    return {"command": command, "hardware": {"coresPerSlot": 1, "slots": 1}, **extra}


PROGRESS_AND_TWO_OUTPUTS = (
    'for i in 1 2 3; do echo "##agent progress $((i * 30))%"; sleep 0.3; done; '
    'echo "${greeting} $GREETING" > result.txt; mkdir -p out; '
    "printf 'a' > out/a.dat; printf 'b' > out/b.dat"
)


async def test_happy_path(h: Harness) -> None:
    job = await h.submit(
        one_core(PROGRESS_AND_TWO_OUTPUTS, envVars={"GREETING": "${greeting}!"}),
        [
            {"name": "result", "type": "txt", "path": "result.txt"},
            {"name": "data", "type": "tar.gz", "path": "out/*.dat"},
        ],
        greeting="hi",
    )
    reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.SUCCEEDED]
    final = await h.job(job)
    assert final.phase == "FINISHED" and final.error_reason is None
    assert final.start_time is not None and final.end_time is not None
    assert final.start_time < final.end_time
    assert final.node is not None
    assert (await h.admin.get_node(final.node)).current_job is None  # finish freed it
    assert {(o.name, o.type) for o in final.outputs} == {
        ("result", "txt"),
        ("data", "tar.gz"),
        ("log", "str"),
    }

    calls = await h.requests(job)
    kinds = [path.split("/")[1] for _, path, _ in calls]
    assert kinds[:2] == ["acquire", "start"]
    assert kinds.index("outputs") > kinds.index("progress")
    assert kinds[-2:] == ["progress", "finish"]  # a last 1.0, then finish
    assert all(status == 200 for _, _, status in calls)
    values = [float(path.split("/")[2]) for _, path, _ in calls if path.startswith("/progress")]
    assert len(values) >= 3 and values[-1] == 1.0
    assert values == sorted(values)
    if h.server.devserver is not None:  # the request bodies only the reference server keeps
        finish = [r for r in h.devserver.request_log() if r.path.endswith(f"{job}/finish")][-1]
        assert b'"success": true' in finish.body or b'"success":true' in finish.body

    assert await h.output(job, "result", "txt") == b"hi hi!\n"
    with tarfile.open(fileobj=io.BytesIO(await h.output(job, "data", "tar.gz"))) as tar:
        assert sorted(tar.getnames()) == ["out/a.dat", "out/b.dat"]
    assert b"##agent progress 90%" in await h.output(job, "log", "str")


async def test_a_job_done_within_the_interval_posts_progress_once(h: Harness) -> None:
    """No post at the start (the server knows from ``start``): the final 1.0 is the one."""
    job = await h.submit(one_core("echo done"))
    settings = h.settings(run={"progress_interval": 5.0})
    reports = await h.run_until_idle(settings)
    assert [r.outcome.reason for r in reports] == [EndReason.SUCCEEDED]
    calls = await h.requests(job)
    kinds = [path.split("/")[1] for _, path, _ in calls]
    assert kinds == ["acquire", "start", "outputs", "progress", "finish"]
    values = [float(path.split("/")[2]) for _, path, _ in calls if path.startswith("/progress")]
    assert values == [1.0]


async def test_exit_code_3_uploads_the_log(h: Harness) -> None:
    job = await h.submit(
        one_core("echo partial > part.txt; echo oops >&2; exit 3"),
        [
            {"name": "part", "type": "txt", "path": "part.txt"},
            {"name": "model", "type": "bin", "path": "model.bin"},
        ],
    )
    reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.FAILED]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == "exit code 3"
    assert final.end_time is not None
    assert {o.name for o in final.outputs} == {"part", "log"}
    assert await h.output(job, "part", "txt") == b"partial\n"
    assert b"oops" in await h.output(job, "log", "str")
    calls = await h.calls(job)
    assert calls[:2] == ["/acquire", "/start"] and calls[-1] == "/finish"
    assert "/reset" not in calls and "/release" not in calls  # the job's fault: it stays


async def test_missing_output_names_it(h: Harness) -> None:
    job = await h.submit(
        one_core("echo ran"), [{"name": "model", "type": "bin", "path": "model.bin"}]
    )
    reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.OUTPUT_MISSING]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == "output 'model' missing"
    assert [o.name for o in final.outputs] == ["log"]
    assert await h.output(job, "log", "str") == b"ran\n"
    assert (await h.calls(job))[-1] == "/finish"


async def test_empty_files_are_not_uploaded(h: Harness) -> None:
    """The real server cannot store an empty file (an upload without a body is a 500):
    an empty declared output fails a job that succeeded, naming it; a failed job keeps
    its own error; an empty log is simply not uploaded. Nothing goes back to the queue."""
    outputs = [{"name": "empty", "type": "txt", "path": "empty.txt"}]
    succeeded = await h.submit(one_core("touch empty.txt"), outputs)
    failed = await h.submit(one_core("touch empty.txt; echo oops; exit 3"), outputs)
    reports = await h.run_until_idle()
    assert {r.job: r.outcome.reason for r in reports} == {
        succeeded: EndReason.OUTPUT_REJECTED,
        failed: EndReason.FAILED,
    }
    first, second = await h.job(succeeded), await h.job(failed)
    assert first.phase == "ERRORED"
    assert first.error_reason == (
        "output 'empty' (txt) is empty, and the job server cannot store an empty file"
    )
    assert first.outputs == []  # the log was empty too
    assert second.phase == "ERRORED" and second.error_reason == "exit code 3"
    assert [o.name for o in second.outputs] == ["log"]
    for job in (succeeded, failed):
        calls = await h.requests(job)
        assert not [c for c in calls if c[1].startswith("/outputs/empty")]
        assert calls[-1] == ("POST", "/finish", 200)
        assert all(status == 200 for _, _, status in calls)


async def test_killed_by_signal(h: Harness) -> None:
    job = await h.submit(one_core("kill -SEGV $$"))
    await h.run_until_idle()
    final = await h.job(job)
    assert final.phase == "ERRORED" and final.error_reason == "killed by SIGSEGV"


async def test_walltime(h: Harness) -> None:
    job = await h.submit(
        {"command": "sleep 60", "hardware": {"coresPerSlot": 1, "walltime": "00:00:01"}}
    )
    with anyio.fail_after(20):
        await h.run_until_idle()
    final = await h.job(job)
    assert final.phase == "ERRORED" and final.error_reason == "walltime 00:00:01 exceeded"


async def test_invalid_spec_fails_the_job_and_the_agent_goes_on(h: Harness) -> None:
    bad = await h.submit({"command": "true", "hardware": {"coresPerSlot": 0}})
    good = await h.submit(one_core("true"))
    reports = await h.run_until_idle()
    assert {r.job: r.outcome.reason for r in reports} == {
        bad: EndReason.INVALID_SPEC,
        good: EndReason.SUCCEEDED,
    }
    failed = await h.job(bad)
    assert failed.phase == "ERRORED"
    assert failed.error_reason is not None
    assert "hardware.coresPerSlot" in failed.error_reason
    assert failed.outputs == []  # nothing ran, so no log either
    assert await h.calls(bad) == ["/acquire", "/start", "/finish"]  # started to be failed
    assert (await h.job(good)).phase == "FINISHED"


async def test_cancel_while_running_kills_the_tree_and_frees_the_node(
    h: Harness, tmp_path: Path
) -> None:
    pids = job_writable(tmp_path) / "pids"
    job = await h.submit(
        one_core(
            f"sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; "
            "while true; do echo '##agent progress 10%'; sleep 0.2; done"
        )
    )
    follower = await h.submit(one_core("true"))
    settings = h.settings(run={"kill_grace": 1.0})
    async with h.agent(settings, exit_when_idle=True) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            with anyio.fail_after(20):
                while (await h.job(job)).start_time is None or len(_pids(pids)) < 2:
                    await anyio.sleep(0.05)
            await h.admin.cancel(job)
            cancelled_at = anyio.current_time()
            with anyio.fail_after(settings.run.kill_grace + 2 + 1):
                while any(_alive(pid) for pid in _pids(pids)):
                    await anyio.sleep(0.05)
            tree_gone_after = anyio.current_time() - cancelled_at
    assert tree_gone_after < settings.run.kill_grace + 2
    assert {r.job: r.outcome.reason for r in agent.reports} == {
        job: EndReason.CANCELLED,
        follower: EndReason.SUCCEEDED,
    }
    cancelled = await h.job(job)
    assert cancelled.phase == "CANCELLED" and cancelled.is_cancelled
    assert cancelled.error_reason == "Cancelled"  # the agent's finish left it as it was
    assert cancelled.end_time is None
    assert [o.name for o in cancelled.outputs] == ["log"]  # allowed while CANCELLED
    calls = await h.calls(job)
    assert calls[:2] == ["/acquire", "/start"] and calls[-1] == "/finish"
    assert "/reset" not in calls and "/release" not in calls
    finished = await h.job(follower)
    assert finished.phase == "FINISHED"  # the node was free again
    assert cancelled.node == finished.node is not None
    assert (await h.admin.get_node(finished.node)).current_job is None


def _pids(path: Path) -> list[int]:
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_checksum_mismatch_and_evil_tarball(h: Harness, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/data.txt").respond_with_data(b"real data")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    httpserver.expect_request("/evil.tar.gz").respond_with_data(buffer.getvalue())
    mismatch = await h.submit(
        one_core(
            "true",
            inputFiles=[
                {
                    "downloadUrl": httpserver.url_for("/data.txt"),
                    "relativePath": "data.txt",
                    "md5": hashlib.md5(b"other data").hexdigest(),
                }
            ],
        )
    )
    evil = await h.submit(
        one_core(
            "true",
            inputFiles=[
                {
                    "downloadUrl": httpserver.url_for("/evil.tar.gz"),
                    "relativePath": "evil.tar.gz",
                    "decompress": True,
                }
            ],
        )
    )
    reports = await h.run_until_idle()
    assert {r.job: r.outcome.reason for r in reports} == {
        mismatch: EndReason.INPUT_FAULT,
        evil: EndReason.INPUT_FAULT,
    }
    first, second = await h.job(mismatch), await h.job(evil)
    assert first.phase == "ERRORED" and "md5 mismatch" in (first.error_reason or "")
    assert second.phase == "ERRORED" and "'../evil' escapes" in (second.error_reason or "")
    assert await h.calls(mismatch) == ["/acquire", "/start", "/finish"]
    assert not list(h.state_dir.rglob("evil"))


async def test_two_slots_run_two_jobs_at_once(h: Harness) -> None:
    jobs = [await h.submit(one_core("sleep 1")) for _ in range(2)]
    settings = h.settings(node={"slots": 2, "cores": 2})
    await h.run_until_idle(settings)
    first, second = [await h.job(pk) for pk in jobs]
    assert first.phase == second.phase == "FINISHED"
    assert first.start_time and second.start_time and first.end_time and second.end_time
    assert first.start_time < second.end_time and second.start_time < first.end_time
    assert first.node is not None and second.node is not None
    assert first.node != second.node


async def test_a_3_core_job_is_left_to_bigger_agents(h: Harness) -> None:
    big = await h.submit({"command": "true", "hardware": {"coresPerSlot": 3}})
    small = await h.submit(one_core("true"))
    settings = h.settings(node={"cores": 2})
    reports = await h.run_until_idle(settings)
    assert [r.job for r in reports] == [small]
    left = await h.job(big)
    assert left.phase == "CREATED" and left.node is None
    assert await h.calls(big) == []


async def test_log_lines_about_a_job_carry_job_and_node(h: Harness) -> None:
    buffer = io.StringIO()
    settings = h.settings()
    redactor = Redactor(settings.run.redact, [settings.password])
    configure_logging("json", "info", redactor, stream=buffer)
    try:
        job = await h.submit(one_core("echo password=hunter2-secret"))
        await h.run_until_idle(settings)
    finally:
        configure_logging("console", "warning")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    about_job = [line for line in lines if line.get("job") == job]
    assert {"job acquired", "job started", "job ended"} <= {line["event"] for line in about_job}
    assert all(isinstance(line.get("node"), int) for line in about_job)
    log = await h.output(job, "log", "str")
    assert b"hunter2-secret" not in log and b"password=****" in log


async def test_node_trouble_before_start_releases_and_leaves_the_job(h: Harness) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the input cannot be fetched
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    job = await h.submit(
        one_core(
            "true",
            inputFiles=[
                {"downloadUrl": f"http://127.0.0.1:{dead}/data.bin", "relativePath": "data.bin"}
            ],
        )
    )
    other = await h.submit(one_core("true"))
    reports = await h.run_until_idle()
    assert {r.job: r.outcome.reason for r in reports} == {
        job: EndReason.NODE_ERROR,
        other: EndReason.SUCCEEDED,
    }
    back = await h.job(job)
    assert back.phase == "CREATED" and back.node is None
    assert await h.calls(job) == ["/acquire", "/release"]  # not started, not retaken at once
    assert (await h.job(other)).phase == "FINISHED"


async def test_mpi_jobs_are_left_alone_without_mpiexec(h: Harness) -> None:
    mpi_job = await h.submit({"command": "true", "useMpi": True, "hardware": {"coresPerSlot": 1}})
    plain = await h.submit(one_core("true"))
    settings = h.settings(mpi={"mpiexec": "/nonexistent/mpiexec"})
    reports = await h.run_until_idle(settings)
    assert [r.job for r in reports] == [plain]
    assert await h.calls(mpi_job) == []
    assert (await h.job(mpi_job)).phase == "CREATED"


async def _give_back_with_outputs(h: Harness, job: int, names: list[tuple[str, str]]) -> None:
    """What an earlier attempt on another node leaves: outputs uploaded, then the job
    given back (finish with a node error → reset → release)."""
    async with h.agent() as other:
        client = other.context.client
        node = await client.create_node("127.0.0.50", 0, cpu_mem=1)
        await client.acquire(job, node.pk)
        await client.start(job, node.pk)
        path = h.state_dir.parent / "earlier.txt"
        path.write_text("earlier attempt")
        for name, type_ in names:
            await client.add_output(job, node.pk, name, type_, path)
        await client.finish(job, node.pk, False, "node: earlier attempt gave up")
        await client.reset(job, node.pk)
        await client.release(job, node.pk)


async def test_rerun_meets_soft_deleted_outputs(h: Harness) -> None:
    job = await h.submit(
        one_core("echo new > result.txt; echo done"),
        [{"name": "result", "type": "txt", "path": "result.txt"}],
    )
    await _give_back_with_outputs(h, job, [("result", "txt"), ("log", "str")])
    reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.OUTPUT_REJECTED]
    calls = await h.requests(job)
    rerun = calls[[path for _, path, _ in calls].index("/release") + 1 :]  # after the give-back
    assert [path for _, path, _ in rerun][:2] == ["/acquire", "/start"]
    assert [c for c in rerun if c[1] == "/outputs/result/txt"] == [
        ("POST", "/outputs/result/txt", 400)  # noticed at once, no loop
    ]
    assert rerun[-1] == ("POST", "/finish", 200)
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason is not None
    assert "output 'result' (txt) is blocked by a deleted copy" in final.error_reason
    assert "kept in" in final.error_reason
    kept = reports[0].workspace
    assert kept is not None and (Path(kept) / "run" / "result.txt").read_text() == "new\n"
    logs = [o.name for o in final.outputs if o.name.startswith("log-")]
    assert len(logs) == 1  # the log went up under a name of this run
    assert await h.output(job, logs[0], "str") == b"done\n"
    assert (await h.output_info(job, "result", "txt")).deleted  # the earlier copy stays deleted


async def started_by_a_node_of_ours(h: Harness, client: ServerClient, job: int) -> tuple[int, Path]:
    """``job`` acquired and started by a node the test made, and a file to upload."""
    node = await client.create_node("127.0.0.51", 0, cpu_mem=1)
    await client.acquire(job, node.pk)
    await client.start(job, node.pk)
    path = h.state_dir.parent / "out.txt"
    path.write_text("x")
    return node.pk, path


async def test_a_lost_upload_answer_counts_as_uploaded(h: Harness) -> None:
    job = await h.submit(one_core("true"))
    async with h.agent() as agent:
        client = agent.context.client
        node, path = await started_by_a_node_of_ours(h, client, job)
        await client.add_output(job, node, "out", "txt", path)
        # The same upload again, as a retry after a lost answer would send it:
        await upload_output(client, job, node, "out", "txt", path)
    assert [(o.name, o.type) for o in (await h.job(job)).outputs] == [("out", "txt")]
    assert await h.output(job, "out", "txt") == b"x"
    calls = await h.requests(job)
    statuses = [status for _, path, status in calls if path == "/outputs/out/txt"]
    assert statuses == [200, 400]  # the server refused the second copy; that was fine


async def test_an_unwritable_state_dir_releases_the_job(h: Harness, tmp_path: Path) -> None:
    job = await h.submit(one_core("true"))
    settings = h.settings()
    async with h.agent(settings, max_jobs=1, exit_when_idle=True) as agent:
        journal = settings.state_dir / "journal"
        shutil.rmtree(journal)  # made at start; gone (and blocked) since
        journal.write_text("a file where the journal directory should be")
        reports = await agent.run()
    assert [r.outcome.reason for r in reports] == [EndReason.NODE_ERROR]
    assert reports[0].outcome.error is not None and reports[0].outcome.error.startswith("node:")
    released = await h.job(job)
    assert released.phase == "CREATED" and released.node is None
    assert await h.calls(job) == ["/acquire", "/release"]


async def test_two_agents_race_for_the_same_jobs(h: Harness, tmp_path: Path) -> None:
    """Two agents poll the same queue at once. The real server's acquire is not atomic
    (PROTOCOL.md): both may be told yes; ``start`` (one node per job) settles it."""
    jobs = [await h.submit(one_core("sleep 0.3")) for _ in range(6)]
    first = agent_settings(h.server, tmp_path / "a", node={"ip": "127.0.0.21"})
    second = agent_settings(h.server, tmp_path / "b", node={"ip": "127.0.0.22"})
    agents = []
    with anyio.fail_after(60):
        async with (
            h.agent(first, exit_when_idle=True) as one,
            h.agent(second, exit_when_idle=True) as other,
            anyio.create_task_group() as group,
        ):
            agents = [one, other]
            group.start_soon(one.run)
            group.start_soon(other.run)
    reports = [report for agent in agents for report in agent.reports]
    succeeded = sorted(r.job for r in reports if r.outcome.reason is EndReason.SUCCEEDED)
    assert succeeded == jobs  # each job ran to the end exactly once
    assert {r.outcome.reason for r in reports} <= {EndReason.SUCCEEDED, EndReason.TAKEN}
    nodes = {slot.node for agent in agents for slot in agent.slots}
    finals = [await h.job(pk) for pk in jobs]
    assert all(final.phase == "FINISHED" and final.error_reason is None for final in finals)
    assert {final.node for final in finals} == nodes  # both agents got work
    for pk in jobs:
        calls = await h.requests(pk)
        assert [c for c in calls if c[1] in ("/start", "/finish") and c[2] == 200] == [
            ("POST", "/start", 200),
            ("POST", "/finish", 200),
        ]
    for node in nodes:
        assert (await h.admin.get_node(node)).current_job is None


async def test_an_input_from_an_earlier_jobs_output(h: Harness) -> None:
    """A relative ``downloadUrl`` is fetched from the job server with the agent's login:
    here the output of the job before (how UFDL chains jobs)."""
    first = await h.submit(
        one_core("printf weights > model.bin"),
        [{"name": "model", "type": "bin", "path": "model.bin"}],
    )
    await h.run_until_idle()
    assert (await h.job(first)).phase == "FINISHED"
    second = await h.submit(
        one_core(
            'test "$(cat model.bin)" = weights',
            inputFiles=[
                {"downloadUrl": f"/v1/jobs/{first}/outputs/model/bin", "relativePath": "model.bin"}
            ],
        )
    )
    reports = await h.run_until_idle()
    assert [(r.job, r.outcome.error) for r in reports] == [(second, None)]
    assert (await h.job(second)).phase == "FINISHED"


async def test_a_job_taken_away_before_start_is_left_alone(h: Harness, tmp_path: Path) -> None:
    """Another node ends up holding the job while it is staged here: the real server's
    racy acquire lets that happen, and so does an admin's abort. ``start`` is refused
    (403); the job is the other node's now, so nothing is said about it."""
    ready, go = job_writable(tmp_path) / "ready", job_writable(tmp_path) / "go"
    job = await h.submit(
        one_core(
            "echo ran",
            preProcessScriptCommand=f"touch {ready}; while [ ! -e {go} ]; do sleep 0.05; done",
        )
    )
    async with h.agent(exit_when_idle=True) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            with anyio.fail_after(20):
                while not ready.exists():
                    await anyio.sleep(0.05)
            await h.admin.abort(job)
            other = await agent.context.client.create_node("127.0.0.60", 0, cpu_mem=1)
            await agent.context.client.acquire(job, other.pk)
            go.touch()
    assert [r.outcome.reason for r in agent.reports] == [EndReason.TAKEN]
    assert agent.reports[0].outcome.error == (
        f"taken away before start: node {other.pk} holds it now"
    )
    final = await h.job(job)
    assert final.phase == "CREATED" and final.node == other.pk and final.error_reason is None
    assert await h.calls(job) == ["/acquire", "/abort", "/acquire", "/start"]
    assert (await h.requests(job))[-1] == ("POST", "/start", 403)
    assert (await h.admin.get_node(agent.slots[0].node)).current_job is None


# ------------------------------------------- reference server only: fault injection


@reference_only
async def test_acquire_406_takes_the_next_job(h: Harness) -> None:
    first = await h.submit(one_core("true"))
    second = await h.submit(one_core("true"))
    h.devserver.fail_next(
        rf"^/v1/jobs/{first}/acquire$", 406, body=b'{"detail": "held by another node"}'
    )
    async with h.agent(max_jobs=1, exit_when_idle=True) as agent:
        reports = await agent.run()
    assert [r.job for r in reports] == [second]
    assert (await h.job(second)).phase == "FINISHED"
    assert (await h.job(first)).phase == "CREATED"


@reference_only
async def test_a_400_about_something_else_is_raised(h: Harness) -> None:
    job = await h.submit(one_core("true"))
    async with h.agent() as agent:
        client = agent.context.client
        node, path = await started_by_a_node_of_ours(h, client, job)
        h.devserver.fail_next(
            rf"^/v1/jobs/{job}/outputs/other/txt$", 400, body=b'{"detail": "something else"}'
        )
        with pytest.raises(BadRequest):
            await upload_output(client, job, node, "other", "txt", path)


@reference_only
async def test_a_job_with_an_unreadable_template_does_not_block_the_queue(h: Harness) -> None:
    broken_template = await h.admin.import_template(
        "broken", "agent.analysis", {"analysis": {"types": ["JSON"], "help": "the run"}}
    )
    broken = await h.admin.create_job(
        broken_template.pk, {"analysis": {"value": one_core("true"), "type": "JSON"}}
    )
    good = await h.submit(one_core("true"))
    h.devserver.fail_next(
        rf"^/v1/job-templates/{broken_template.pk}$",
        404,
        times=100,
        body=b'{"detail": "Not found."}',
    )
    reports = await h.run_until_idle()
    assert [r.job for r in reports] == [good]
    assert (await h.job(broken.pk)).phase == "CREATED"
