"""``agent check``: is this host ready to run jobs?

Checks, in order: config, work and state directories, the job user (it exists, it is
not root unless allowed, it can reach the work directory; a warning when jobs run as the
agent's own user or as root), server reachable, login,
the node slots (found, or would be created), resources (cores, memory), executors
(subprocess; mpiexec and its flavor; with ``run.executor = "slurm"``: Slurm's
version and partitions instead of mpiexec). Prints one line per finding; exit 0 only if
nothing failed, 6 when the server cannot be reached, 7 when the login is refused, else 1.
A missing mpiexec is a warning unless ``mpi.mpiexec`` names one: MPI jobs are then given
back by this node.
"""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio

from agent.cluster import read_partitions, slurm_version
from agent.commands.common import make_client, make_redactor, settings_or_exit
from agent.config import Settings, config_path
from agent.gpus import Inventory, inventory
from agent.host import available_cores, host_ip, usable_cores, usable_memory_mb
from agent.jobuser import JobUserError, exposure_warning, resolve_job_user
from agent.outcome import ExitCode
from agent.redact import MIN_LITERAL_LENGTH
from agent.server import AuthError, ServerError, ServerUnreachable
from agent.slots import SlotPlan, slot_plans
from agent.statedir import work_dir_problem
from executors import mpi as mpi_executor
from executors.base import NodeError
from executors.cgroup import detect_cgroup
from executors.slurm import SlurmCommands
from executors.slurm_state import Partition, time_limit


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    text: str
    code: ExitCode = ExitCode.JOB_FAILED
    """The exit code a FAIL stands for (1 unless it is the server's or the login's)."""

    def render(self) -> str:
        return f"[{self.level.value:>4}] {self.topic}: {self.text}"


def check_dir(topic: str, path: Path) -> Finding:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".agent-check"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        return Finding(Level.FAIL, topic, f"{path} is not writable: {exc.strerror}")
    return Finding(Level.OK, topic, f"{path} writable")


def check_job_user(settings: Settings) -> list[Finding]:
    """Who jobs run as, what that exposes, and whether it can reach its directories."""
    try:
        user = resolve_job_user(settings.run)
    except JobUserError as exc:
        return [Finding(Level.FAIL, "job user", str(exc).removeprefix("config: "))]
    findings = [Finding(Level.OK, "job user", f"jobs run as {user.name} (uid {user.uid})")]
    exposure = exposure_warning(user)
    if exposure is not None:
        findings.append(Finding(Level.WARN, "job user", exposure))
    problem = work_dir_problem(settings.work_dir, user)
    if problem is not None:
        findings.append(Finding(Level.FAIL, "work_dir", problem.removeprefix("run.work_dir: ")))
    return findings


def check_memory_guard() -> Finding:
    """How jobs' memory limits will be enforced (detection only: nothing is moved)."""
    found = detect_cgroup()
    if found.base is not None:
        return Finding(Level.OK, "memory guard", f"{found.reason}: a cgroup per job")
    return Finding(
        Level.OK, "memory guard", f"RSS sampled every 0.5 s (no usable cgroup v2: {found.reason})"
    )


def check_resources(settings: Settings, plans: list[SlotPlan]) -> list[Finding]:
    cores = usable_cores(settings.node)
    allowed = available_cores()
    findings = [
        Finding(
            Level.OK, "cores", f"{len(cores)} usable {cores} (this process may use {len(allowed)})"
        ),
        Finding(Level.OK, "memory", f"{usable_memory_mb(settings.node)} MiB usable"),
    ]
    if isinstance(settings.node.cores, int) and settings.node.cores > len(allowed):
        findings.append(
            Finding(
                Level.WARN,
                "cores",
                f"node.cores = {settings.node.cores} but only {len(allowed)} are available",
            )
        )
    missing = sorted(set(cores) - set(allowed))
    if missing:
        findings.append(
            Finding(
                Level.FAIL, "cores", f"node.cores names cores {missing} this process may not use"
            )
        )
    slots = len(plans)
    if slots > len(cores):
        findings.append(
            Finding(
                Level.WARN,
                "slots",
                f"{slots} slots but only {len(cores)} cores: some slots will wait",
            )
        )
    if slots == 0:
        findings.append(
            Finding(
                Level.FAIL,
                "slots",
                "node.slots = per-gpu, no GPU found and node.cpu_slots = 0: no slot at all",
            )
        )
    return findings


def check_gpus(found: Inventory) -> Finding:
    """What GPUs jobs may use, and how they were found (NVML or ``node.gpus``)."""
    details = [
        " ".join(
            part
            for part in (
                f"#{gpu.index}",
                gpu.name,
                f"{gpu.memory_bytes / 2**30:.0f} GiB" if gpu.memory_bytes else "",
                f"cc {gpu.compute_capability}" if gpu.compute_capability else "",
            )
            if part
        )
        for gpu in found.gpus
    ]
    return Finding(Level.OK, "gpus", found.how + (f": {'; '.join(details)}" if details else ""))


def check_password(settings: Settings) -> Finding | None:
    """A warning when the agent's password is too short to be masked as a bare word."""
    if len(settings.password) >= MIN_LITERAL_LENGTH:
        return None
    return Finding(
        Level.WARN,
        "password",
        f"shorter than {MIN_LITERAL_LENGTH} characters: weak, and not masked as a bare word "
        "in logs (only after a keyword such as password=)",
    )


def partition_text(partition: Partition) -> str:
    """``partition debug (default): up, 2 CPUs, at most 2 per node, any number of nodes,
    no time limit``."""
    default = " (default)" if partition.default else ""
    per_node = partition.node_cpus or partition.total_cpus
    if partition.max_cpus_per_node is not None:
        per_node = min(per_node, partition.max_cpus_per_node)
    nodes = (
        "any number of nodes"
        if partition.max_nodes is None
        else (f"at most {partition.max_nodes} nodes")
    )
    time = (
        "no time limit"
        if partition.max_time is None
        else (f"time limit {time_limit(partition.max_time)}")
    )
    memory = (
        ""
        if partition.max_mem_per_node_mb is None
        else (f", at most {partition.max_mem_per_node_mb} MiB per node")
    )
    return (
        f"partition {partition.name}{default}: {partition.state.lower()},"
        f" {partition.total_cpus} CPUs, at most {per_node} per node, {nodes}, {time}{memory}"
    )


async def check_slurm(settings: Settings) -> list[Finding]:
    """With ``run.executor = "slurm"``: the version, and each partition with its limits
    (one line when Slurm cannot be reached)."""
    commands = SlurmCommands()
    try:
        version = await slurm_version(commands)
        partitions = await read_partitions(commands)
    except NodeError as exc:
        return [Finding(Level.FAIL, "slurm", f"cannot reach Slurm: {exc}")]
    findings = [Finding(Level.OK, "slurm", version)]
    findings.extend(Finding(Level.OK, "slurm", partition_text(part)) for part in partitions)
    wanted = settings.slurm.partition
    if wanted is not None and wanted not in {part.name for part in partitions}:
        findings.append(Finding(Level.FAIL, "slurm", f"slurm.partition {wanted!r} does not exist"))
    return findings


def check_mpi(settings: Settings) -> Finding:
    try:
        path = mpi_executor.find_mpiexec(settings.mpi.mpiexec)
        flavor = mpi_executor.flavor_of(path, settings.mpi.flavor)
    except NodeError as exc:
        level = Level.FAIL if settings.mpi.mpiexec else Level.WARN
        return Finding(level, "mpi", f"{exc} (MPI jobs will be given back by this node)")
    return Finding(Level.OK, "mpi", f"{path} ({flavor.value})")


async def check_server(settings: Settings, plans: list[SlotPlan]) -> list[Finding]:
    findings: list[Finding] = []
    redactor = make_redactor(settings)
    ip = settings.node.ip or host_ip(settings.server.url)
    async with make_client(settings, redactor) as client:
        try:
            await client.obtain()
        except ServerUnreachable as exc:
            return [
                Finding(
                    Level.FAIL,
                    "server",
                    f"{settings.server.url} unreachable: {exc.__cause__ or exc}",
                    ExitCode.SERVER_UNAVAILABLE,
                )
            ]
        except AuthError as exc:
            return [
                Finding(Level.OK, "server", f"{settings.server.url} answers"),
                Finding(Level.FAIL, "auth", exc.detail, ExitCode.REFUSED),
            ]
        except ServerError as exc:
            return [
                Finding(
                    Level.FAIL,
                    "server",
                    f"{settings.server.url}: {exc}",
                    ExitCode.SERVER_UNAVAILABLE,
                )
            ]
        findings.append(Finding(Level.OK, "server", f"{settings.server.url} answers"))
        findings.append(Finding(Level.OK, "auth", f"logged in as {settings.server.username!r}"))
        for index in (plan.index for plan in plans):
            try:
                node = await client.find_node(ip, index)
            except (ServerError, ServerUnreachable) as exc:
                findings.append(Finding(Level.FAIL, "nodes", f"cannot list nodes: {exc}"))
                break
            if node is None:
                findings.append(
                    Finding(
                        Level.OK,
                        f"node {index}",
                        f"({ip}, {index}) not registered yet: would be created",
                    )
                )
            else:
                busy = f", holds job {node.current_job}" if node.current_job else ""
                findings.append(
                    Finding(Level.OK, f"node {index}", f"({ip}, {index}) is node {node.pk}{busy}")
                )
    return findings


def run_check(config: str | None) -> int:
    path, _ = config_path(config, os.environ)
    settings = settings_or_exit(config)
    shown = path if path.exists() else f"{path} (absent: built-in defaults)"
    findings = [Finding(Level.OK, "config", str(shown))]
    findings.append(check_dir("work_dir", settings.work_dir))
    findings.append(check_dir("state_dir", settings.state_dir))
    findings.extend(check_job_user(settings))
    weak = check_password(settings)
    if weak is not None:
        findings.append(weak)
    found = inventory(settings.node.gpus)
    plans = slot_plans(settings.node.slots, settings.node.cpu_slots, found.indices())
    findings.extend(anyio.run(check_server, settings, plans))
    findings.extend(check_resources(settings, plans))
    findings.append(check_gpus(found))
    findings.append(check_memory_guard())
    findings.append(Finding(Level.OK, "subprocess", "available"))
    if settings.run.executor == "slurm":
        findings.extend(anyio.run(check_slurm, settings))
    else:
        findings.append(check_mpi(settings))
    for finding in findings:
        stream = sys.stderr if finding.level is Level.FAIL else sys.stdout
        print(finding.render(), file=stream)
    failed = [finding for finding in findings if finding.level is Level.FAIL]
    print("agent check: " + (f"{len(failed)} problem(s)" if failed else "all well"))
    return check_exit_code(failed)


def check_exit_code(failed: list[Finding]) -> ExitCode:
    """0 when nothing failed; the server's or login's own code when that failed (6, 7);
    else 1."""
    if not failed:
        return ExitCode.SUCCESS
    specific = [finding.code for finding in failed if finding.code is not ExitCode.JOB_FAILED]
    return specific[0] if specific else ExitCode.JOB_FAILED
