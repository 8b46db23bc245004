"""``agent submit`` as a user runs it: real processes, a real config, both job servers.

Each example spec goes to a running ``agent run`` with ``--wait --out`` and ends with
run-once's exit code and its outputs on disk; the template is found or imported by
name and parameters; what the server could never run (a local input path, a variable
without a value) is refused before anything is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.devserver import DevServer
from agent.outcome import ExitCode
from agent.server import BadRequest, ServerClient
from agent.submission import DEFAULT_TEMPLATE, find_or_import_template
from tests.agent_processes import running, start_agent
from tests.cli_process import agent_process, server_config, user_lines
from tests.servers import ServerUnderTest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPECS = sorted(path for path in EXAMPLES.glob("*.json") if path.name != "template.json")
EXPECTED = {"failing.json": ExitCode.JOB_FAILED, "long-running.json": ExitCode.CANCELLED}
"""Every other example succeeds; long-running.json is cancelled once it runs."""


def mpiexec() -> str | None:
    path = os.environ.get("AGENT_TEST_MPICH_MPIEXEC")
    return path if path and Path(path).exists() else None


def with_admin(config: Path, server: ServerUnderTest) -> Path:
    """The config plus an ``[admin]`` section naming the server's staff user."""
    secret = config.parent / "admin-password"
    secret.write_text(server.admin.password + "\n", encoding="utf-8")
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'[admin]\nusername = "{server.admin.username}"\npassword_file = "{secret}"\n')
    return config


def spec_variables(spec: Path) -> set[str]:
    return set(json.loads(spec.read_text(encoding="utf-8")).get("parameters", {}))


async def admin_call(server: ServerUnderTest, call: Any) -> Any:
    async with ServerClient(server.url, server.admin.username, server.admin.password) as admin:
        return await call(admin)


def submit(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return agent_process("submit", *args, "--config", str(config), timeout=120)


def test_every_example_runs_through_a_running_agent(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    mpi = mpiexec()
    if mpi is None and os.environ.get("AGENT_TEST_FORBID_SKIPS") == "1":
        pytest.fail("no mpiexec for mpi-hello.json: set AGENT_TEST_MPICH_MPIEXEC")
    specs = [spec for spec in SPECS if mpi or spec.name != "mpi-hello.json"]
    sections: dict[str, dict[str, object]] = {"log": {"format": "json"}}
    if mpi:
        sections["mpi"] = {"mpiexec": mpi}
    config = server_config(tmp_path / "agent.toml", any_server, **sections)
    # The templates exist before the agent polls: the real backend's SQLite can be
    # locked by an import while an agent polls every 0.1 s. (Importing by `agent
    # submit` itself is the next test's.) Jobs are then created as the node user.
    for variables in {frozenset(spec_variables(spec)) for spec in specs}:
        anyio.run(
            admin_call,
            any_server,
            lambda admin, v=variables: find_or_import_template(admin, DEFAULT_TEMPLATE, v),
        )
    began = time.monotonic()
    with running(start_agent(config, tmp_path / "agent.log")):
        for spec in specs:
            out = tmp_path / "out" / spec.stem
            args = [str(spec), "--wait", "--out", str(out), "--json"]
            if spec.name == "long-running.json":
                result = _cancelled_while_running(any_server, args, config)
            else:
                result = submit(*args, config=config)
            expected = EXPECTED.get(spec.name, ExitCode.SUCCESS)
            assert result.returncode == expected, (spec.name, result.stderr)
            reply = json.loads(result.stdout)
            lines = user_lines(result.stderr)
            state = {0: "succeeded", 1: "failed: exit code 3", 4: "cancelled"}[expected]
            assert f"job {reply['job']}: {state}" in lines, lines
            job = anyio.run(admin_call, any_server, lambda a, pk=reply["job"]: a.get_job(pk))
            assert job.template.pk == reply["template"]
            assert job.template.name == DEFAULT_TEMPLATE
            on_server = {f"{o.name}.{'txt' if o.type == 'str' else o.type}" for o in job.outputs}
            assert {Path(path).name for path in reply["outputs"]} == on_server
            assert sorted(path.name for path in out.iterdir()) == sorted(on_server)
            _check_outputs(spec.name, out)
    assert time.monotonic() - began < 60


def _cancelled_while_running(
    server: ServerUnderTest, args: list[str], config: Path
) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen(
        [sys.executable, "-m", "agent", "submit", *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        pk = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the job pk is not printed until the end
            jobs = anyio.run(admin_call, server, lambda a: a.list_jobs({"expressions": []}))
            started = [j for j in jobs if j.start_time and j.end_time is None and j.pk > pk]
            if started and started[-1].template.name == DEFAULT_TEMPLATE:
                pk = started[-1].pk
                break
            time.sleep(0.1)
        assert pk, "the long-running job never started"
        anyio.run(admin_call, server, lambda a: a.cancel(pk))
        stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _check_outputs(name: str, out: Path) -> None:
    if name == "shell-progress.json":
        assert (out / "result.txt").read_text().startswith("hello from ")
        assert json.loads((out / "metrics.json").read_text()) == {"steps": 4, "cores": 1}
        assert "##agent progress 100%" in (out / "log.txt").read_text()
    elif name == "failing.json":
        assert "about to fail" in (out / "log.txt").read_text()
    elif name == "exabyte-compute.json":
        assert (out / "ranks.txt").read_text() == "ranks: 1\n"
    elif name == "mpi-hello.json":
        assert (out / "ranks.tar.gz").stat().st_size > 0
    elif name == "long-running.json":
        assert "##agent progress" in (out / "log.txt").read_text()


def test_template_is_imported_once_per_set_of_variables(
    any_server: ServerUnderTest, tmp_path: Path
) -> None:
    node_only = server_config(tmp_path / "node.toml", any_server)
    refused = submit(str(EXAMPLES / "shell-progress.json"), config=node_only)
    assert refused.returncode == ExitCode.REFUSED
    (line,) = user_lines(refused.stderr)
    assert "may not import one" in line and "[admin]" in line and "--user" in line

    config = with_admin(server_config(tmp_path / "agent.toml", any_server), any_server)
    first = submit(str(EXAMPLES / "shell-progress.json"), "--json", config=config)
    assert first.returncode == 0, first.stderr
    first_ids = json.loads(first.stdout)
    # The same variables: the same template, even as the node user (no import needed).
    again = submit(
        str(EXAMPLES / "shell-progress.json"), "--param", "greeting=hi", config=node_only
    )
    assert again.returncode == 0, again.stderr
    again_pk = int(again.stdout)
    # Other variables under the same name: a new version; a new name: version 1.
    other = submit(str(EXAMPLES / "mpi-hello.json"), "--json", config=config)
    named = submit(str(EXAMPLES / "failing.json"), "--name", "mine", "--json", config=config)
    assert other.returncode == 0 and named.returncode == 0, other.stderr + named.stderr

    async def check(admin: ServerClient) -> None:
        job = await admin.get_job(first_ids["job"])
        assert job.template.pk == first_ids["template"] and job.phase == "CREATED"
        spec = json.loads((EXAMPLES / "shell-progress.json").read_text())
        assert job.parameter_values == {
            "analysis": {"value": spec["analysis"], "type": "JSON"},
            "outputs": {"value": spec["outputs"], "type": "JSON"},
            "greeting": {"value": "hello", "type": "str"},
        }
        template = await admin.get_template(first_ids["template"])
        assert template.name == DEFAULT_TEMPLATE and template.executor_class == "agent.analysis"
        assert set(template.parameters) == {"analysis", "outputs", "greeting"}
        assert template.parameters["greeting"].types == ["str"]
        second = await admin.get_job(again_pk)
        assert second.template.pk == first_ids["template"]
        assert second.parameter_values["greeting"] == {"value": "hi", "type": "str"}
        mpi = await admin.get_template(json.loads(other.stdout)["template"])
        assert mpi.name == DEFAULT_TEMPLATE and mpi.version == template.version + 1
        assert set(mpi.parameters) == {"analysis", "outputs", "message"}
        mine = await admin.get_template(json.loads(named.stdout)["template"])
        assert (mine.name, mine.version, set(mine.parameters)) == (
            "mine",
            1,
            {"analysis", "outputs"},
        )

    anyio.run(admin_call, any_server, check)


def test_what_the_server_could_not_run_is_refused_before_sending(tmp_path: Path) -> None:
    # Nothing listens here: every refusal below happens before a connection is tried.
    config = tmp_path / "agent.toml"
    config.write_text('[server]\nurl = "http://127.0.0.1:9"\nusername = "u"\npassword = "p"\n')
    spec = tmp_path / "spec.json"

    def refused(document: Any, *args: str) -> str:
        spec.write_text(json.dumps(document), encoding="utf-8")
        result = submit(str(spec), *args, config=config)
        assert result.returncode == ExitCode.USAGE, result.stderr
        (line,) = user_lines(result.stderr)
        return line

    local = {"command": "cat data.csv", "inputFiles": [{"downloadUrl": "data/data.csv"}]}
    line = refused(local)
    assert "'data/data.csv' is a path on this machine" in line
    script = {"command": "true", "preProcessScript": {"downloadUrl": "file:///etc/hosts"}}
    assert "'file:///etc/hosts'" in refused(script)

    uses = {"analysis": {"command": "echo ${who} ${HOME} $${literal}"}}
    line = refused(uses)
    assert "no value for ${who}: give --param who=VALUE" in line
    assert "HOME" not in line and "literal" not in line  # the shell's; an escaped one
    declared = {"analysis": {"command": "echo ${who}"}, "parameters": {"who": None, "n": 3}}
    assert "no value for ${who}" in refused(declared)
    assert "expected NAME=VALUE" in refused(uses, "--param", "who")
    assert "--out goes with --wait" in refused(uses, "--param", "who=me", "--out", "x")
    assert "invalid analysis" in refused({"analysis": {"comand": "true"}})


LOCKED = b'{"detail": "Bad job template: database is locked"}'


@pytest.mark.parametrize(
    ("body", "imported"),
    [(LOCKED, True), (b'{"detail": "Bad job template: no such executor"}', False)],
    ids=["database-locked", "a-real-400"],
)
def test_a_busy_database_on_import_is_tried_again(body: bytes, imported: bool) -> None:
    """The real backend reports its SQLite's "database is locked" on a template import
    as a 400; that one is tried again, any other 400 is not."""
    with DevServer() as server:
        server.fail_next(
            r"^/v1/job-templates/import$",
            400,
            body=body,
            headers={"Content-Type": "application/json"},
        )

        async def run() -> bool:
            async with ServerClient(server.url, "admin", "admin") as admin:
                try:
                    template, fresh = await find_or_import_template(admin, "locked", ["x"])
                except BadRequest:
                    return False
                assert template.name == "locked" and fresh
                return True

        assert anyio.run(run) is imported
