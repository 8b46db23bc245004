"""End to end: the agent against the reference server, real jobs, every row of the
decision table observed on the server."""

from __future__ import annotations

import hashlib
import io
import json
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
from agent.server import BadRequest
from tests.agent_harness import Harness, agent_settings, harness

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(tmp_path) as value:
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
    assert final.phase == "FINISHED"
    assert {(o.name, o.type) for o in final.outputs} == {
        ("result", "txt"),
        ("data", "tar.gz"),
        ("log", "str"),
    }

    calls = h.requests(job)
    kinds = [path.split("/")[1] for _, path, _ in calls if path.startswith("/")]
    assert kinds.index("acquire") < kinds.index("start") < kinds.index("progress")
    assert kinds.index("outputs") > kinds.index("progress")
    assert kinds[-1] == "finish"
    assert all(status == 200 for _, _, status in calls)
    values = [float(path.split("/")[2]) for _, path, _ in calls if path.startswith("/progress")]
    assert len(values) >= 2
    assert values == sorted(values)
    finish = [r for r in h.server.request_log() if r.path.endswith(f"{job}/finish")][-1]
    assert b'"success": true' in finish.body or b'"success":true' in finish.body

    result = await _download(h, job, "result", "txt")
    assert result == b"hi hi!\n"
    with tarfile.open(fileobj=io.BytesIO(await _download(h, job, "data", "tar.gz"))) as tar:
        assert sorted(tar.getnames()) == ["out/a.dat", "out/b.dat"]
    log = await _download(h, job, "log", "str")
    assert b"##agent progress 90%" in log


async def _download(h: Harness, job: int, name: str, type_: str) -> bytes:
    path = h.state_dir.parent / f"dl-{job}-{name}"
    await h.admin.download_output(job, name, type_, path)
    return path.read_bytes()


async def test_exit_code_3_uploads_the_log(h: Harness) -> None:
    job = await h.submit(
        one_core("echo partial > part.txt; echo oops >&2; exit 3"),
        [
            {"name": "part", "type": "txt", "path": "part.txt"},
            {"name": "model", "type": "bin", "path": "model.bin"},
        ],
    )
    await h.run_until_idle()
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == "exit code 3"
    assert {o.name for o in final.outputs} == {"part", "log"}
    assert b"oops" in await _download(h, job, "log", "str")


async def test_missing_output_names_it(h: Harness) -> None:
    job = await h.submit(one_core("true"), [{"name": "model", "type": "bin", "path": "model.bin"}])
    await h.run_until_idle()
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == "output 'model' missing"


async def test_killed_by_signal(h: Harness) -> None:
    job = await h.submit(one_core("kill -SEGV $$"))
    await h.run_until_idle()
    assert (await h.job(job)).error_reason == "killed by SIGSEGV"


async def test_walltime(h: Harness) -> None:
    job = await h.submit(
        {"command": "sleep 60", "hardware": {"coresPerSlot": 1, "walltime": "00:00:01"}}
    )
    with anyio.fail_after(20):
        await h.run_until_idle()
    assert (await h.job(job)).error_reason == "walltime 00:00:01 exceeded"


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
    assert (await h.job(good)).phase == "FINISHED"


async def test_cancel_while_running_kills_the_tree_and_frees_the_node(
    h: Harness, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
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
                while (await h.job(job)).start_time is None or not pids.exists():
                    await anyio.sleep(0.05)
            await h.admin.cancel(job)
            cancelled_at = anyio.current_time()
            with anyio.fail_after(settings.run.kill_grace + 2 + 1):
                while any(_alive(int(pid)) for pid in pids.read_text().split()):
                    await anyio.sleep(0.05)
            tree_gone_after = anyio.current_time() - cancelled_at
    assert tree_gone_after < settings.run.kill_grace + 2
    assert (await h.job(job)).phase == "CANCELLED"
    assert (await h.job(follower)).phase == "FINISHED"  # the node was free again
    nodes = {r.node for r in [await h.job(job), await h.job(follower)]}
    assert len(nodes) == 1


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_acquire_406_takes_the_next_job(h: Harness) -> None:
    first = await h.submit(one_core("true"))
    second = await h.submit(one_core("true"))
    h.server.fail_next(
        rf"^/v1/jobs/{first}/acquire$", 406, body=b'{"detail": "held by another node"}'
    )
    async with h.agent(max_jobs=1, exit_when_idle=True) as agent:
        reports = await agent.run()
    assert [r.job for r in reports] == [second]
    assert (await h.job(second)).phase == "FINISHED"
    assert (await h.job(first)).phase == "CREATED"


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
    await h.run_until_idle()
    first, second = await h.job(mismatch), await h.job(evil)
    assert first.phase == "ERRORED" and "md5 mismatch" in (first.error_reason or "")
    assert second.phase == "ERRORED" and "'../evil' escapes" in (second.error_reason or "")
    assert not list(h.state_dir.rglob("evil"))


async def test_two_slots_run_two_jobs_at_once(h: Harness) -> None:
    jobs = [await h.submit(one_core("sleep 1")) for _ in range(2)]
    settings = h.settings(node={"slots": 2, "cores": 2})
    await h.run_until_idle(settings)
    first, second = [await h.job(pk) for pk in jobs]
    assert first.phase == second.phase == "FINISHED"
    assert first.start_time and second.start_time and first.end_time and second.end_time
    assert first.start_time < second.end_time and second.start_time < first.end_time
    assert first.node != second.node


async def test_a_3_core_job_is_left_to_bigger_agents(h: Harness) -> None:
    big = await h.submit({"command": "true", "hardware": {"coresPerSlot": 3}})
    small = await h.submit(one_core("true"))
    settings = h.settings(node={"cores": 2})
    reports = await h.run_until_idle(settings)
    assert [r.job for r in reports] == [small]
    left = await h.job(big)
    assert left.phase == "CREATED" and left.node is None
    assert not [path for _, path, _ in h.requests(big) if path.startswith("/acquire")]


async def test_log_lines_about_a_job_carry_job_and_node(h: Harness) -> None:
    buffer = io.StringIO()
    settings = h.settings(server={"password": "node"})
    configure_logging("json", "info", Redactor(settings.run.redact, ["node"]), stream=buffer)
    try:
        job = await h.submit(one_core("echo password=hunter2-secret"))
        await h.run_until_idle(settings)
    finally:
        configure_logging("console", "warning")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    about_job = [line for line in lines if line.get("job") == job]
    assert {"job acquired", "job started", "job ended"} <= {line["event"] for line in about_job}
    assert all(isinstance(line.get("node"), int) for line in about_job)
    log = await _download(h, job, "log", "str")
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
    calls = [path for _, path, _ in h.requests(job)]
    assert calls == ["/acquire", "/release"]  # not started, not retaken at once


async def test_mpi_jobs_are_left_alone_without_mpiexec(h: Harness) -> None:
    mpi_job = await h.submit({"command": "true", "useMpi": True, "hardware": {"coresPerSlot": 1}})
    plain = await h.submit(one_core("true"))
    settings = h.settings(mpi={"mpiexec": "/nonexistent/mpiexec"})
    reports = await h.run_until_idle(settings)
    assert [r.job for r in reports] == [plain]
    assert h.requests(mpi_job) == []


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
        one_core("echo new > result.txt"), [{"name": "result", "type": "txt", "path": "result.txt"}]
    )
    await _give_back_with_outputs(h, job, [("result", "txt"), ("log", "str")])
    reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.OUTPUT_REJECTED]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason is not None
    assert "output 'result' (txt) is blocked by a deleted copy" in final.error_reason
    assert "kept in" in final.error_reason
    kept = reports[0].workspace
    assert kept is not None and (Path(kept) / "run" / "result.txt").read_text() == "new\n"
    logs = [o.name for o in final.outputs if o.name.startswith("log-")]
    assert len(logs) == 1  # the log went up under a name of this run
    uploads = [path for _, path, _ in h.requests(job) if path.startswith("/outputs/result")]
    assert len(uploads) <= 3  # noticed, no loop


async def test_a_lost_upload_answer_counts_as_uploaded(h: Harness) -> None:
    job = await h.submit(one_core("true"))
    async with h.agent() as agent:
        client = agent.context.client
        node = await client.create_node("127.0.0.51", 0, cpu_mem=1)
        await client.acquire(job, node.pk)
        await client.start(job, node.pk)
        path = h.state_dir.parent / "out.txt"
        path.write_text("x")
        await client.add_output(job, node.pk, "out", "txt", path)
        # The same upload again, as a retry after a lost answer would send it:
        await upload_output(client, job, node.pk, "out", "txt", path)
        h.server.fail_next(
            rf"^/v1/jobs/{job}/outputs/other/txt$", 400, body=b'{"detail": "something else"}'
        )
        with pytest.raises(BadRequest):  # a 400 about something else is raised
            await upload_output(client, job, node.pk, "other", "txt", path)


async def test_a_job_with_an_unreadable_template_does_not_block_the_queue(h: Harness) -> None:
    broken_template = await h.admin.import_template(
        "broken", "agent.analysis", {"analysis": {"types": ["JSON"]}}
    )
    broken = await h.admin.create_job(
        broken_template.pk, {"analysis": {"value": one_core("true"), "type": "JSON"}}
    )
    good = await h.submit(one_core("true"))
    h.server.fail_next(
        rf"^/v1/job-templates/{broken_template.pk}$",
        404,
        times=100,
        body=b'{"detail": "Not found."}',
    )
    reports = await h.run_until_idle()
    assert [r.job for r in reports] == [good]
    assert (await h.job(broken.pk)).phase == "CREATED"


async def test_an_unwritable_state_dir_releases_the_job(h: Harness, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the journal directory should be")
    job = await h.submit(one_core("true"))
    settings = agent_settings(
        h.server.url, blocker / "state", run={"work_dir": str(tmp_path / "jobs")}
    )
    async with h.agent(settings, max_jobs=1, exit_when_idle=True) as agent:
        reports = await agent.run()
    assert [r.outcome.reason for r in reports] == [EndReason.NODE_ERROR]
    assert reports[0].outcome.error is not None and reports[0].outcome.error.startswith("node:")
    released = await h.job(job)
    assert released.phase == "CREATED" and released.node is None
