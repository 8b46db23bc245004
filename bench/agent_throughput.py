"""Per-job cost of the whole agent: N `true` jobs through acquire, start, progress,
log upload and finish against the reference server (a separate process), and the
agent's CPU while idle-polling.

Run: .venv/bin/python bench/agent_throughput.py [jobs] [slots]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.daemon import Agent
from agent.jobrun import AgentContext
from agent.journal import Journal
from agent.logs import configure_logging
from agent.redact import Redactor
from agent.server import ServerClient
from tests.agent_harness import TEMPLATE_PARAMETERS, agent_settings
from tests.devserver_process import devserver_process

IDLE_SECONDS = 10.0


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


async def main(jobs: int, slots: int) -> None:
    configure_logging("console", "warning")
    with tempfile.TemporaryDirectory() as tmp, devserver_process(Path(tmp) / "db") as url:
        async with ServerClient(url, "admin", "admin") as admin:
            template = await admin.import_template("bench", "agent.analysis", TEMPLATE_PARAMETERS)
            analysis = {"command": "true", "hardware": {"coresPerSlot": 1}}
            for _ in range(jobs):
                await admin.create_job(
                    template.pk, {"analysis": {"value": analysis, "type": "JSON"}}
                )
        settings = agent_settings(
            url, Path(tmp) / "state", node={"slots": slots}, poll={"interval": 1.0}
        )
        redactor = Redactor(settings.run.redact, [settings.password])
        async with ServerClient(url, "node", "node", redactor=redactor) as client:
            context = AgentContext(
                settings, client, redactor, Journal(settings.state_dir / "journal")
            )
            agent = Agent(context, exit_when_idle=True)
            cpu, started = cpu_seconds(), time.perf_counter()
            reports = await agent.run()
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu

            idle = Agent(context)
            idle_cpu = cpu_seconds()
            async with anyio.create_task_group() as group:
                group.start_soon(idle.run)
                await anyio.sleep(IDLE_SECONDS)
                idle.stop_now()
            idle_cpu = cpu_seconds() - idle_cpu
    ok = sum(1 for report in reports if report.outcome.reason.value == "succeeded")
    print(
        f"{ok}/{jobs} `true` jobs in {seconds:.2f} s with {slots} slot(s): "
        f"{jobs / seconds:.1f} jobs/s, {seconds / jobs * 1000:.0f} ms per job, "
        f"agent CPU {cpu / jobs * 1000:.0f} ms per job"
    )
    print(
        f"idle (poll.interval = 1 s): agent CPU {idle_cpu / IDLE_SECONDS * 100:.2f}% "
        f"of one core over {IDLE_SECONDS:.0f} s, {idle.idle_polls} polls"
    )


if __name__ == "__main__":
    anyio.run(
        main,
        int(sys.argv[1]) if len(sys.argv) > 1 else 50,
        int(sys.argv[2]) if len(sys.argv) > 2 else 1,
    )
