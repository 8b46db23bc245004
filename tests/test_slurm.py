"""Jobs through a real Slurm 22.05 (``../shared/slurm/start-slurm.sh``, as root).

Each scenario submits to the cluster the script starts on this host and checks what
Slurm and the job server record: the decision table's ends, a cancel on the server
reaching Slurm, and a kill -9 of the agent that a restarted agent rides out by
following the same Slurm job to its end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest

from agent.outcome import EndReason
from executors.base import PreparedRun
from executors.slurm import SlurmExecutor
from executors.slurm_state import parse_fields
from tests.agent_harness import Harness, harness, job_writable, prepared_job_user
from tests.cli_process import agent_process, server_config
from tests.servers import ServerUnderTest, devserver_server, free_port

pytestmark = pytest.mark.anyio

START_SLURM = Path(
    os.environ.get("AGENT_TEST_SLURM_START")
    or Path(__file__).resolve().parents[2] / "shared" / "slurm" / "start-slurm.sh"
)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The single-node Slurm cluster on this host, started when it is not up (root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start Slurm (../shared/slurm/start-slurm.sh)")
    if not START_SLURM.is_file():
        pytest.skip(f"needs {START_SLURM} to start Slurm")
    done = subprocess.run(
        ["bash", str(START_SLURM)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"start-slurm.sh failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


@pytest.fixture
async def h(
    slurm_cluster: None, any_server: ServerUnderTest, tmp_path: Path
) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


@pytest.fixture
async def hd(slurm_cluster: None, tmp_path: Path) -> AsyncIterator[Harness]:
    """On the reference server alone (the scenarios that take long or kill the agent)."""
    with devserver_server(tmp_path / "devserver.sqlite3") as server:
        async with harness(server, tmp_path) as value:
            yield value


def slurm_sections(tmp_path: Path) -> dict[str, dict[str, object]]:
    return {
        "run": {"executor": "slurm", "kill_grace": 1.0},
        "slurm": {"poll_interval": 0.3, "shared_dir": str(tmp_path / "shared")},
    }


def slurm_jobs_under(folder: Path) -> list[dict[str, str]]:
    """Slurm's records (``scontrol show job``) of the jobs whose work dir is in ``folder``."""
    text = subprocess.run(
        ["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=False
    ).stdout
    jobs = [parse_fields(line) for line in text.splitlines() if line.strip()]
    return [job for job in jobs if job.get("WorkDir", "").startswith(str(folder))]


def spawn_agent(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), *extra],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def slurm_ids(log: bytes) -> set[str]:
    return set(re.findall(rb"Slurm (?:as )?job (\d+)", log))  # type: ignore[arg-type]


async def test_two_rank_mpi_job_finishes_with_its_rank_files(h: Harness, tmp_path: Path) -> None:
    job = await h.submit(
        {
            "command": 'echo "rank $PMI_RANK of $PMI_SIZE" > "rank-$PMI_RANK.txt"; echo ok',
            "useMpi": True,
            "hardware": {"coresPerSlot": 2},
        },
        outputs=[
            {"name": "rank0", "type": "txt", "path": "rank-0.txt"},
            {"name": "rank1", "type": "txt", "path": "rank-1.txt"},
        ],
    )
    reports = await h.run_until_idle(h.settings(**slurm_sections(tmp_path)))
    assert [r.outcome.reason for r in reports] == [EndReason.SUCCEEDED]
    final = await h.job(job)
    assert final.phase == "FINISHED" and final.error_reason is None
    assert await h.output(job, "rank0", "txt") == b"rank 0 of 2\n"
    assert await h.output(job, "rank1", "txt") == b"rank 1 of 2\n"
    log = await h.output(job, "log", "str")
    assert log.count(b"ok\n") == 2 and len(slurm_ids(log)) == 1
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert record["JobState"] == "COMPLETED" and record["NumTasks"] == "2"
    assert record["JobName"] == f"ufdl-job-{job}"
    assert record["UserId"].startswith("agent-job(")  # submitted as the job user


async def test_exit_code_3_ends_errored(h: Harness, tmp_path: Path) -> None:
    job = await h.submit({"command": "echo failing; exit 3", "hardware": {"coresPerSlot": 1}})
    await h.run_until_idle(h.settings(**slurm_sections(tmp_path)))
    final = await h.job(job)
    assert final.phase == "ERRORED" and final.error_reason == "exit code 3"
    assert b"failing\n" in await h.output(job, "log", "str")
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "3:0")


async def test_the_job_sees_its_environment_and_no_credential(hd: Harness, tmp_path: Path) -> None:
    job = await hd.submit(
        {"command": "env | sort", "hardware": {"coresPerSlot": 2}, "envVars": {"MINE": "yes"}}
    )
    settings = hd.settings(**slurm_sections(tmp_path))
    await hd.run_until_idle(settings)
    user = prepared_job_user(settings)
    run = PreparedRun(
        "true",
        Path("."),
        Path("log"),
        "marker",
        job_env={
            "MINE": "yes",
            "AGENT_JOB_PK": "1",
            "AGENT_JOB_DIR": "",
            "AGENT_PROGRESS_FILE": "",
        },
        inherit_env=tuple(settings.run.inherit_env),
        user=user,
    )
    ours = set(SlurmExecutor(cpus=2).environment(run))
    log = (await hd.output(job, "log", "str")).decode()
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert env["MINE"] == "yes" and env["SLURM_CPUS_PER_TASK"] == "2"
    assert env["AGENT_JOB_PK"] == str(job) and env["OMP_NUM_THREADS"] == "2"
    # Exactly the job's environment, plus what Slurm adds for every batch job.
    added_by_slurm = {"ENVIRONMENT", "HOSTNAME", "TMPDIR", "PWD"}  # PWD: the shell's
    theirs = {name for name in env if not name.startswith("SLURM")} - added_by_slurm
    assert theirs == ours, theirs ^ ours


async def test_impossible_request_is_left_to_others_and_a_refused_one_is_the_jobs_fault(
    hd: Harness, tmp_path: Path
) -> None:
    too_wide = await hd.submit({"command": "true", "hardware": {"coresPerSlot": 64}})
    no_memory = await hd.submit(
        {"command": "true", "hardware": {"coresPerSlot": 1, "memory": 10_000_000}}
    )
    async with hd.agent(hd.settings(**slurm_sections(tmp_path)), exit_when_idle=True) as agent:
        reports = await agent.run()
        why = agent.why_not_taken(too_wide)
    assert why is not None and "Slurm partition 'debug' has at most" in why
    assert (await hd.job(too_wide)).phase == "CREATED"
    assert [r.job for r in reports] == [no_memory]
    refused = await hd.job(no_memory)
    assert refused.phase == "ERRORED"
    assert refused.error_reason is not None
    assert refused.error_reason.startswith("Slurm refused the job: ")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_cancel_on_the_server_cancels_in_slurm(hd: Harness, tmp_path: Path) -> None:
    pids = job_writable(tmp_path) / "pids"
    job = await hd.submit(
        {"command": f"sleep 1000 & echo $! >> {pids}; wait", "hardware": {"coresPerSlot": 1}}
    )
    async with hd.agent(hd.settings(**slurm_sections(tmp_path)), exit_when_idle=True) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            with anyio.fail_after(30):
                while not pids.exists() or not pids.read_text().strip():
                    await anyio.sleep(0.1)
            await hd.admin.cancel(job)
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert record["JobState"] == "CANCELLED"
    assert not _alive(int(pids.read_text().split()[0]))
    assert [r.outcome.reason for r in agent.reports] == [EndReason.CANCELLED]
    assert (await hd.job(job)).phase == "CANCELLED"


@pytest.mark.slow
async def test_walltime_is_slurms_time_limit(hd: Harness, tmp_path: Path) -> None:
    job = await hd.submit(
        {"command": "sleep 300", "hardware": {"coresPerSlot": 1, "walltime": "00:01:00"}}
    )
    with anyio.fail_after(150):
        await hd.run_until_idle(hd.settings(**slurm_sections(tmp_path)))
    final = await hd.job(job)
    assert final.phase == "ERRORED" and final.error_reason == "walltime 00:01:00 exceeded"
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert record["JobState"] == "TIMEOUT"


async def test_kill_9_of_the_agent_then_restart_follows_the_same_slurm_job(
    hd: Harness, tmp_path: Path
) -> None:
    flag = job_writable(tmp_path) / "go-on"
    running = job_writable(tmp_path) / "running"
    job = await hd.submit(
        {
            "command": f"echo started; touch {running}; "
            f"while [ ! -e {flag} ]; do sleep 0.2; done; echo finished",
            "hardware": {"coresPerSlot": 1},
        }
    )
    sections = slurm_sections(tmp_path)
    config = server_config(
        tmp_path / "agent.toml",
        hd.server,
        run=sections["run"],
        slurm=sections["slurm"],
        log={"format": "json"},
    )
    log = tmp_path / "agent.log"
    first = spawn_agent(config, log)
    try:
        with anyio.fail_after(30):
            while not running.exists():
                await anyio.sleep(0.1)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert record["JobState"] == "RUNNING"  # the agent died, the Slurm job did not
    second = spawn_agent(config, log, "--exit-when-idle")
    try:
        with anyio.fail_after(30):
            while "following the job's Slurm job again" not in log.read_text():
                await anyio.sleep(0.1)
        flag.touch()
        with anyio.fail_after(60):
            while second.poll() is None:
                await anyio.sleep(0.1)
    finally:
        if second.poll() is None:
            second.kill()
        second.wait()
    assert second.returncode == 0, log.read_text()[-3000:]
    final = await hd.job(job)
    assert final.phase == "FINISHED" and final.error_reason is None
    output = await hd.output(job, "log", "str")
    assert output.count(b"started\n") == 1 and output.count(b"finished\n") == 1
    assert len(slurm_ids(output)) == 1
    (record,) = slurm_jobs_under(tmp_path / "shared")  # still one: never submitted again
    assert record["JobState"] == "COMPLETED"
    calls = await hd.calls(job)
    assert calls.count("/acquire") == 1 and calls.count("/start") == 1
    assert calls[-1] == "/finish" and calls.count("/finish") == 1
    assert "/reset" not in calls and "/release" not in calls


async def test_agent_check_reports_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[server]\nurl = "http://127.0.0.1:9"\n'
        '[run]\nexecutor = "slurm"\n[health]\nlisten = ""\n',
        encoding="utf-8",
    )
    done = agent_process("check", "--config", str(config))
    lines = [line for line in done.stdout.splitlines() if "] slurm:" in line]
    assert lines[0].startswith("[  ok] slurm: slurm-wlm 22.05"), done.stdout
    assert re.fullmatch(
        r"\[  ok\] slurm: partition debug \(default\): up, (\d+) CPUs, at most \1 per node,"
        r" any number of nodes, no time limit",
        lines[1],
    ), lines


async def test_agent_check_says_when_slurm_cannot_be_reached(
    slurm_cluster: None, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[server]\nurl = "http://127.0.0.1:9"\n'
        '[run]\nexecutor = "slurm"\n[health]\nlisten = ""\n',
        encoding="utf-8",
    )
    away = unreachable_slurm_conf(tmp_path)
    done = agent_process("check", "--config", str(config), env={"SLURM_CONF": str(away)})
    (line,) = [line for line in done.stderr.splitlines() if "] slurm:" in line]
    assert line.startswith("[FAIL] slurm: cannot reach Slurm: scontrol show partition: ")
    assert "Unable to contact slurm controller" in line
    assert done.returncode != 0


def unreachable_slurm_conf(folder: Path) -> Path:
    """The cluster's own config with a controller port where nothing listens."""
    conf = Path("/etc/slurm/slurm.conf").read_text(encoding="utf-8")
    away = folder / "slurm-away.conf"
    away.write_text(
        "\n".join(line for line in conf.splitlines() if not line.startswith("SlurmctldPort"))
        + f"\nSlurmctldPort={free_port()}\nMessageTimeout=2\n",
        encoding="utf-8",
    )
    return away


async def test_slurm_unreachable_at_submit_gives_the_job_back(
    hd: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(unreachable_slurm_conf(tmp_path)))
    job = await hd.submit({"command": "true", "hardware": {"coresPerSlot": 1}})
    reports = await hd.run_until_idle(hd.settings(**slurm_sections(tmp_path)))
    (report,) = reports
    assert report.outcome.reason is EndReason.NODE_ERROR
    assert report.outcome.error is not None
    assert "sbatch failed" in report.outcome.error
    assert "Unable to contact slurm controller" in report.outcome.error
    assert (await hd.job(job)).phase == "CREATED"  # back in the queue
    assert slurm_jobs_under(tmp_path / "shared") == []


async def test_agent_stop_cancels_the_slurm_job_and_gives_the_job_back(
    hd: Harness, tmp_path: Path
) -> None:
    running = job_writable(tmp_path) / "running"
    job = await hd.submit(
        {"command": f"touch {running}; sleep 1000", "hardware": {"coresPerSlot": 1}}
    )
    async with hd.agent(hd.settings(**slurm_sections(tmp_path))) as agent:
        async with anyio.create_task_group() as group:
            group.start_soon(agent.run)
            with anyio.fail_after(30):
                while not running.exists():
                    await anyio.sleep(0.1)
            agent.stop_now()
    (record,) = slurm_jobs_under(tmp_path / "shared")
    assert record["JobState"] == "CANCELLED"
    assert [r.outcome.reason for r in agent.reports] == [EndReason.AGENT_STOP]
    assert (await hd.job(job)).phase == "CREATED"
    calls = await hd.calls(job)
    assert calls[-3:] == ["/finish", "/reset", "/release"]
