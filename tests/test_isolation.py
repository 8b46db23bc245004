"""A job cannot reach the agent's credentials, files or memory (a root agent running it
as the job account).

The job below tries every channel an attacker would — ``/proc/<agent>/{cmdline,environ,
mem,maps}``, the config and password files, the journal and ``state_dir``, ``ps e``,
its own environment — prints what it found, and declares all of it as outputs. Then
the server's stored copy of everything the job could influence (outputs, the log, the
error, on the reference server every request body the agent sent) is searched for the
password and for any token.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream

from agent.jobuser import DEFAULT_JOB_USER
from executors.identity import lookup_user
from tests.agent_harness import Harness, harness
from tests.cli_process import write_config
from tests.servers import ServerUnderTest

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: only a root agent runs jobs as another user"
    ),
]

#: Any JSON web token (both servers issue them): none may reach the server's storage.
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")

PROBE = r"""
import glob, json, os, subprocess

STATE, CONFIG, PASSWORD_FILE = os.environ["STATE"], os.environ["CONFIG"], os.environ["PWFILE"]
found = {}

def attempt(label, action):
    try:
        found[label] = action()
    except Exception as exc:  # what the job was refused is the point
        found[label] = f"refused: {type(exc).__name__}: {exc}"

def read(path, limit=1 << 20):
    with open(path, "rb") as handle:
        return handle.read(limit).decode("latin-1")

def agent_pids():
    pids = [os.getppid()]
    for entry in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if b"agent\x00run" in open(entry, "rb").read():
                pids.append(int(entry.split("/")[2]))
        except OSError:
            pass
    return sorted(set(pids))

def scan_memory(pid):
    hits, regions = [], read(f"/proc/{pid}/maps").splitlines()
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for region in regions:
            start, end = (int(x, 16) for x in region.split()[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(min(end - start, 1 << 24))
            except OSError:
                continue
            at = chunk.find(b"eyJ")
            if at >= 0:
                hits.append(chunk[at:at + 400].decode("latin-1"))
    return hits

for pid in agent_pids():
    attempt(f"cmdline {pid}", lambda: read(f"/proc/{pid}/cmdline"))
    attempt(f"environ {pid}", lambda: read(f"/proc/{pid}/environ"))
    attempt(f"maps {pid}", lambda: read(f"/proc/{pid}/maps"))
    attempt(f"mem {pid}", lambda: scan_memory(pid))
    attempt(f"fds {pid}", lambda: os.listdir(f"/proc/{pid}/fd"))
attempt("config", lambda: read(CONFIG))
attempt("password file", lambda: read(PASSWORD_FILE))
attempt("state_dir", lambda: os.listdir(STATE))
attempt("journal", lambda: {p: read(p) for p in glob.glob(STATE + "/journal/*")})
attempt("journal dir", lambda: os.listdir(STATE + "/journal"))
attempt("journal file", lambda: read(STATE + "/journal/node-1.json"))
attempt("private", lambda: os.listdir(STATE + "/private"))
attempt("jobs", lambda: os.listdir(STATE + "/jobs"))
attempt("ps e", lambda: subprocess.run(["ps", "e", "-A", "-ww"], capture_output=True,
                                       text=True).stdout)
attempt("environment", lambda: dict(os.environ))
attempt("uid", lambda: [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()])
report = json.dumps(found, indent=1, default=str)
open("found.json", "w").write(report)
os.makedirs("loot", exist_ok=True)
for index, (label, value) in enumerate(found.items()):
    open(f"loot/{index}.txt", "w").write(f"{label}\n{value}")
print(report)
print("##agent progress 50%")
print("progress " + report.replace("\n", " ")[:3000])
"""


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


async def test_a_hostile_job_finds_no_credential(h: Harness, tmp_path: Path) -> None:
    job_user = lookup_user(DEFAULT_JOB_USER)
    password_file = tmp_path / "password"
    password_file.write_text(h.server.node.password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    config = write_config(
        tmp_path / "agent.toml",
        h.server.url,
        h.server.node.username,
        "",
        server={"password_file": str(password_file)},
    )
    config.chmod(0o600)
    state = tmp_path / "state"
    job = await h.submit(
        {
            "command": f"python3 - <<'EOF'\n{PROBE}\nEOF",
            "envVars": {"STATE": str(state), "CONFIG": str(config), "PWFILE": str(password_file)},
            "progressRegex": r"^##agent progress (\d+)%",
            "hardware": {"coresPerSlot": 1},
        },
        [
            {"name": "found", "type": "json", "path": "found.json"},
            {"name": "loot", "type": "tgz", "path": "loot"},
        ],
    )
    argv = [sys.executable, "-m", "agent", "run", "--exit-when-idle", "--config", str(config)]
    with anyio.fail_after(90):
        async with await anyio.open_process(argv) as agent:
            assert agent.stdout is not None and agent.stderr is not None
            read: dict[str, bytes] = {}
            async with anyio.create_task_group() as group:
                group.start_soon(_read_all, agent.stdout, read, "stdout")
                group.start_soon(_read_all, agent.stderr, read, "stderr")
    stdout, stderr = read["stdout"], read["stderr"]
    assert agent.returncode == 0, stderr.decode()

    final = await h.job(job)
    assert final.phase == "FINISHED", final.error_reason
    found = json.loads(await h.output(job, "found", "json"))
    # It ran as the job account, and every channel to the agent was closed.
    assert found["uid"][:3] == [job_user.uid, job_user.uid, job_user.gid]
    refused = [label for label, value in found.items() if str(value).startswith("refused")]
    agent_pid = agent.pid
    for channel in ("environ", "maps", "mem", "fds"):
        assert f"{channel} {agent_pid}" in refused, found.get(f"{channel} {agent_pid}")
    for channel in ("config", "password file", "state_dir", "journal dir", "journal file"):
        assert channel in refused, (channel, found[channel])
    for channel in ("private", "jobs"):
        assert channel in refused, (channel, found[channel])
    assert "AGENT_SERVER" not in json.dumps(found["environment"])

    secrets = _access_tokens(h)
    if len(h.server.node.password) >= 8:  # the reference server's "node" is a common word
        secrets.append(h.server.node.password.encode())
    stored = [
        await h.output(job, "found", "json"),
        await h.output(job, "loot", "tgz"),
        await h.output(job, "log", "str"),
        json.dumps(final.model_dump(mode="json")).encode(),
        stdout,
        stderr,
    ]
    if h.server.devserver is not None:  # the request bodies only the reference server keeps
        stored += [r.body for r in h.devserver.request_log() if r.path.startswith("/v1/jobs/")]
    for blob in stored:
        assert JWT.search(blob) is None
        for secret in secrets:
            assert secret not in blob


async def _read_all(stream: ByteReceiveStream, into: dict[str, bytes], name: str) -> None:
    into[name] = b"".join([chunk async for chunk in stream])


def _access_tokens(h: Harness) -> list[bytes]:
    """The bearer tokens the agent really used (the reference server logs headers)."""
    if h.server.devserver is None:
        return []
    tokens = {
        r.headers.get("authorization", "").removeprefix("Bearer ").encode()
        for r in h.devserver.request_log()
    }
    return [token for token in tokens if token]
