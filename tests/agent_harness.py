"""An agent and the reference server on 127.0.0.1, wired for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Settings, load_config
from agent.daemon import Agent
from agent.devserver import DevServer
from agent.jobrun import AgentContext, JobReport
from agent.journal import Journal
from agent.redact import Redactor
from agent.server import Job, RetryPolicies, RetryPolicy, ServerClient

FAST_RETRY = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.05, wait_max=0.2, wait_jitter=0.0)
FAST = RetryPolicies(quick=FAST_RETRY, normal=FAST_RETRY, long=FAST_RETRY)

TEMPLATE_PARAMETERS = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
    "greeting": {"types": ["str"], "default": "hello", "help": "a variable"},
}


def agent_settings(server_url: str, state_dir: Path, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {
        "server": {"url": server_url, "username": "node", "password": "node"},
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
    server: DevServer
    admin: ServerClient
    state_dir: Path
    template: int = 0

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

    def settings(self, **sections: dict[str, Any]) -> Settings:
        return agent_settings(self.server.url, self.state_dir, **sections)

    @asynccontextmanager
    async def agent(self, settings: Settings | None = None, **options: Any) -> AsyncIterator[Agent]:
        settings = settings or self.settings()
        redactor = Redactor(settings.run.redact, secrets=[settings.password])
        async with ServerClient(
            settings.server.url,
            settings.server.username,
            settings.password,
            policies=FAST,
            redactor=redactor,
        ) as client:
            context = AgentContext(
                settings, client, redactor, Journal(settings.state_dir / "journal")
            )
            yield Agent(context, **options)

    async def run_until_idle(
        self, settings: Settings | None = None, **options: Any
    ) -> list[JobReport]:
        async with self.agent(settings, exit_when_idle=True, **options) as agent:
            return await agent.run()

    def requests(self, job: int) -> list[tuple[str, str, int]]:
        """(method, path after /v1/jobs/{job}, status) of the calls on one job (its plain
        reads, the tests' and the agent's cancel checks, left out)."""
        prefix = f"/v1/jobs/{job}/"
        return [
            (r.method, r.path[len(prefix) - 1 :], r.status)
            for r in self.server.request_log()
            if r.path.startswith(prefix)
        ]


@asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    with DevServer(port=0, db_path=tmp_path / "db.sqlite3") as server:
        async with ServerClient(server.url, "admin", "admin", policies=FAST) as admin:
            yield Harness(server, admin, tmp_path / "state")
