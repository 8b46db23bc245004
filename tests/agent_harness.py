"""An agent and a job server on 127.0.0.1, wired for end-to-end tests.

The server is a :class:`~tests.servers.ServerUnderTest`: the reference server or the
real UFDL backend, so the same scenario runs on both. The admin client logs in with
that server's admin credentials, the agents with its node credentials, and
:meth:`Harness.requests` reads the request log both kinds keep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from agent.config import Settings, load_config
from agent.daemon import Agent
from agent.devserver import DevServer
from agent.givebacks import COOLDOWN, GiveBackBook
from agent.givebacks import FILE_NAME as GIVE_BACKS_FILE
from agent.jobrun import AgentContext, JobReport
from agent.jobuser import resolve_job_user
from agent.journal import Journal
from agent.redact import Redactor
from agent.server import (
    BadRequest,
    Job,
    OutputInfo,
    RetryPolicies,
    RetryPolicy,
    ServerClient,
    ServerFault,
)
from agent.statedir import prepare
from agent.submission import server_busy
from executors.identity import JobUser
from tests.servers import DEVSERVER_NODE, ServerUnderTest

FAST_RETRY = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.05, wait_max=0.2, wait_jitter=0.0)
FAST = RetryPolicies(quick=FAST_RETRY, normal=FAST_RETRY, long=FAST_RETRY)

TEMPLATE_PARAMETERS = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
    "greeting": {"types": ["str"], "default": "hello", "help": "a variable"},
}


def job_writable(tmp_path: Path) -> Path:
    """A directory under ``tmp_path`` that a job may write to whoever it runs as (jobs
    leave pid files and flags there for the test to read)."""
    shared = tmp_path / "from-job"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)
    return shared


def prepared_job_user(settings: Settings) -> JobUser:
    """Who jobs run as, with the directories made ready, as ``agent run`` does it."""
    user = resolve_job_user(settings.run)
    prepare(settings.state_dir, settings.work_dir, user)
    return user


def agent_settings(
    server: ServerUnderTest | str, state_dir: Path, /, **sections: dict[str, Any]
) -> Settings:
    """Settings for an agent of ``server`` (a bare URL: a reference server, whose node
    user is node/node), fast to poll and to report; ``sections`` override."""
    if isinstance(server, str):
        url, node = server, DEVSERVER_NODE
    else:
        url, node = server.url, server.node
    overrides: dict[str, Any] = {
        "server": {"url": url, "username": node.username, "password": node.password},
        "node": {"ip": "127.0.0.2", "slots": 1},
        "poll": {"interval": 0.1, "max_backoff": 1.0},
        "run": {"progress_interval": 0.2, "cancel_check_interval": 0.2, "kill_grace": 1.0},
        "state_dir": str(state_dir),
    }
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    return load_config(None, overrides=overrides)


@dataclass
class Harness:
    server: ServerUnderTest
    admin: ServerClient
    state_dir: Path
    template: int = 0

    @property
    def devserver(self) -> DevServer:
        """The reference server object, for a scenario that runs on it alone."""
        assert self.server.devserver is not None, "this scenario needs the reference server"
        return self.server.devserver

    async def submit(
        self, analysis: Any, outputs: list[dict[str, str]] | None = None, **variables: str
    ) -> int:
        if not self.template:
            template = await self.admin.import_template(
                "test", "agent.analysis", TEMPLATE_PARAMETERS
            )
            self.template = template.pk
        values: dict[str, Any] = {
            "analysis": {"value": analysis, "type": "JSON"},
            "outputs": {"value": outputs or [], "type": "JSON"},
        }
        for name, value in variables.items():
            values[name] = {"value": value, "type": "str"}
        job = await self.admin.create_job(self.template, values)
        return job.pk

    async def job(self, pk: int) -> Job:
        return await self.admin.get_job(pk)

    async def output(self, job: int, name: str, type_: str) -> bytes:
        """An output's bytes as the server stores them (read past the agent's client, so
        what is checked is the server's copy, whatever the client does)."""
        async with httpx.AsyncClient(base_url=self.server.url, timeout=30.0) as http:
            login = await http.post(
                "/v1/auth/obtain",
                json={
                    "username": self.server.admin.username,
                    "password": self.server.admin.password,
                },
            )
            login.raise_for_status()
            reply = await http.get(
                f"/v1/jobs/{job}/outputs/{name}/{type_}",
                headers={"Authorization": f"Bearer {login.json()['access']}", "Accept": "*/*"},
            )
            reply.raise_for_status()
            return reply.content

    async def output_info(self, job: int, name: str, type_: str) -> OutputInfo:
        return await self.admin.output_info(job, name, type_)

    def settings(self, **sections: dict[str, Any]) -> Settings:
        return agent_settings(self.server, self.state_dir, **sections)

    @asynccontextmanager
    async def agent(
        self,
        settings: Settings | None = None,
        *,
        give_back_cooldown: float = COOLDOWN,
        policies: RetryPolicies = FAST,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> AsyncIterator[Agent]:
        settings = settings or self.settings()
        redactor = Redactor(settings.run.redact, secrets=[settings.password])
        async with ServerClient(
            settings.server.url,
            settings.server.username,
            settings.password,
            timeout=settings.server.timeout,
            policies=policies,
            redactor=redactor,
            transport=transport,
        ) as client:
            context = AgentContext(
                settings,
                client,
                redactor,
                Journal(settings.state_dir / "journal"),
                job_user=prepared_job_user(settings),
                give_backs=GiveBackBook(
                    settings.state_dir / GIVE_BACKS_FILE, cooldown=give_back_cooldown
                ),
            )
            yield Agent(context, **options)

    async def run_until_idle(
        self, settings: Settings | None = None, **options: Any
    ) -> list[JobReport]:
        async with self.agent(settings, exit_when_idle=True, **options) as agent:
            return await agent.run()

    async def requests(self, job: int) -> list[tuple[str, str, int]]:
        """(method, path after /v1/jobs/{job}, status) of the calls on one job, in the
        order the server answered them. Left out: plain reads of the job (the tests'
        and the agent's cancel checks) and downloads of its outputs (the tests' own).

        Every call answered before this one is in the log: a read of the job is sent
        and waited for in the log first (the real server writes its access log line
        as it answers, so a line could trail the answer by a moment)."""
        plain = f"/v1/jobs/{job}"
        reads = sum(1 for r in self.server.request_log() if r.path == plain)
        await self.admin.get_job(job)
        with anyio.fail_after(5):
            while sum(1 for r in self.server.request_log() if r.path == plain) <= reads:
                await anyio.sleep(0.02)
        prefix = plain + "/"
        return [
            (r.method, r.path[len(prefix) - 1 :], r.status)
            for r in self.server.request_log()
            if r.path.startswith(prefix) and not _output_download(r.method, r.path)
        ]

    async def calls(self, job: int) -> list[str]:
        """The paths of :meth:`requests`, e.g. ``["/acquire", "/start", ...]``."""
        return [path for _, path, _ in await self.requests(job)]


def _output_download(method: str, path: str) -> bool:
    """``GET /v1/jobs/{pk}/outputs/{name}/{type}`` (not ``.../info``)."""
    parts = path.strip("/").split("/")
    return method == "GET" and len(parts) == 6 and parts[3] == "outputs"


@asynccontextmanager
async def harness(server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    credentials = server.admin
    async with ServerClient(
        server.url, credentials.username, credentials.password, policies=FAST
    ) as admin:
        yield Harness(server, admin, tmp_path / "state")


async def submit_while_busy(h: Harness, analysis: dict[str, object]) -> int:
    """Submit while an agent talks to the server: the real backend's SQLite may answer
    "database is locked" (a 500, or a 400 on a template import); a job is created once
    its answer is 201."""
    for _ in range(10):
        try:
            return await h.submit(analysis)
        except (ServerFault, BadRequest) as exc:
            if not (server_busy(exc) and "database is locked" in str(exc)):
                raise
            await anyio.sleep(0.2)
    raise AssertionError("the server stayed locked")
