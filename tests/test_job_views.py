"""``agent jobs`` and ``agent job PK`` as a user runs them, checked against the server's
own records, on both job servers, logged in as the (non-staff) node user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agent.commands.views import state_of
from agent.outcome import ExitCode
from tests.agent_harness import Harness, harness
from tests.cli_process import agent_process, server_config, user_lines
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


async def agent(*args: str, config: Path) -> tuple[int, str, list[str]]:
    result = await anyio.to_thread.run_sync(
        lambda: agent_process(*args, "--config", str(config), timeout=60)
    )
    return result.returncode, result.stdout, user_lines(result.stderr)


async def test_jobs_and_job_show_what_the_server_holds(h: Harness, tmp_path: Path) -> None:
    ok = await h.submit(
        {"command": "echo hi > a.txt"}, [{"name": "a", "type": "txt", "path": "a.txt"}]
    )
    failed = await h.submit({"command": "echo oops; exit 3"})
    await h.run_until_idle()
    waiting = await h.submit({"command": "true"})
    cancelled = await h.submit({"command": "true"})
    await h.admin.cancel(cancelled)
    config = server_config(tmp_path / "agent.toml", h.server)
    records = {pk: await h.job(pk) for pk in (ok, failed, waiting, cancelled)}
    states = {pk: state_of(job) for pk, job in records.items()}
    assert states == {
        ok: "FINISHED",
        failed: "ERRORED",
        waiting: "CREATED",
        cancelled: "CANCELLED",
    }

    code, out, _ = await agent("jobs", "--json", config=config)
    assert code == 0
    listed = json.loads(out)
    assert [item["pk"] for item in listed] == [cancelled, waiting, failed, ok]  # newest first
    for item in listed:
        job = records[item["pk"]]
        assert item["state"] == states[job.pk]
        assert item["error_reason"] == job.error_reason
        assert item["node"] == job.node
        assert item["template"] == {"pk": h.template, "name": "test", "version": 1}

    code, out, _ = await agent("jobs", "--limit", "2", config=config)
    head, *rows = out.splitlines()
    assert head.split() == ["JOB", "STATE", "TEMPLATE", "NODE", "AGE", "RAN", "ERROR"]
    assert [row.split()[:2] for row in rows] == [
        [str(cancelled), "cancelled"],
        [str(waiting), "created"],
    ]
    for state, pk in (
        ("finished", ok),
        ("errored", failed),
        ("created", waiting),
        ("cancelled", cancelled),
    ):
        code, out, _ = await agent("jobs", "--state", state, "--json", config=config)
        assert code == 0 and [item["pk"] for item in json.loads(out)] == [pk], state
    code, out, _ = await agent("jobs", "--state", "errored", config=config)
    (row,) = out.splitlines()[1:]
    node = records[failed].node
    assert row.split()[:4] == [str(failed), "errored", "test", "v1"]
    assert row.split()[4] == str(node) and row.endswith("exit code 3")

    code, out, _ = await agent("job", str(ok), config=config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"job {ok}: FINISHED"
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:8]}
    assert fields["template"] == f"test v1 (pk {h.template})"
    assert fields["node"].startswith(f"{records[ok].node} (127.0.0.2 slot 0)")
    assert fields["error"] == "-"
    outputs = [line.split()[:2] for line in lines[lines.index("outputs:") + 2 :]]
    assert sorted(outputs) == sorted([o.name, o.type] for o in records[ok].outputs)

    code, out, _ = await agent("job", str(failed), "--json", config=config)
    record = json.loads(out)
    assert record["state"] == "ERRORED" and record["error_reason"] == "exit code 3"
    assert record["node"] == node and record["node_address"] == "127.0.0.2 slot 0"
    assert [(o["name"], o["type"]) for o in record["outputs"]] == [("log", "str")]

    code, out, lines = await agent("job", str(cancelled + 100), config=config)
    assert code == ExitCode.NO_SUCH_JOB and out == ""
    assert lines == [f"agent: no job {cancelled + 100} on the server ({h.server.url})"]
