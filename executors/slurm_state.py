"""What Slurm says and what it means: pure parsing and decisions, no I/O.

:func:`sbatch_argv` and :func:`batch_script` are the submission; :func:`parse_scontrol`
and :func:`parse_sacct` read a job's state; :func:`slurm_ending` maps that state onto
the decision table (an exit code, a signal, the walltime, memory, a stop the agent
asked for, the node's fault); :func:`sbatch_refusal` tells whose fault a refused
submission is.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from executors.base import EndKind

#: States after which a job does not change any more.
ENDED_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)

#: Ends that are the cluster's trouble, not the job's: the job goes back to the queue.
NODE_FAULT_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "REVOKED", "SPECIAL_EXIT"})

#: Parts of sbatch/scontrol messages that mean Slurm itself cannot be reached.
UNREACHABLE_MARKERS = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "communication connection failure",
    "zero bytes were transmitted",
    "transport endpoint",
    "munge",
    "authentication",
    "slurm_persist_conn",
    "unable to establish",
    "no route to host",
)

_FIELD = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=")


def parse_fields(line: str) -> dict[str, str]:
    """The ``Key=value`` pairs of one ``scontrol -o`` line (values may hold spaces)."""
    matches = list(_FIELD.finditer(line))
    fields: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
        fields[match.group(1)] = line[match.end() : end].strip()
    return fields


@dataclass(frozen=True)
class JobState:
    """A Slurm job as ``scontrol show job`` (or the completion log) tells it."""

    state: str
    """The base state: ``PENDING``, ``RUNNING``, ``COMPLETED``, ``CANCELLED``..."""
    reason: str = "None"
    exit_code: int = 0
    signal: int = 0

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def parse_exit(text: str) -> tuple[int, int]:
    """``3:0`` → (3, 0); anything unreadable is (0, 0)."""
    code, _, sig = text.partition(":")
    try:
        return int(code), int(sig or 0)
    except ValueError:
        return 0, 0


def base_state(text: str) -> str:
    """``CANCELLED by 0`` or ``COMPLETING+`` → ``CANCELLED`` / ``COMPLETING``."""
    word = text.split(" ", 1)[0]
    return word.rstrip("+").upper()


def parse_scontrol(text: str) -> JobState | None:
    """The state in ``scontrol -o show job ID`` output; None when it has none."""
    for line in text.splitlines():
        fields = parse_fields(line)
        if "JobState" in fields:
            code, sig = parse_exit(fields.get("ExitCode", "0:0"))
            return JobState(base_state(fields["JobState"]), fields.get("Reason", "None"), code, sig)
    return None


def parse_sacct(text: str, job_id: str) -> JobState | None:
    """The job's line in ``sacct -c -P -n -o jobid,state,exitcode`` output (the
    completion log, read once slurmctld has forgotten the job); None when absent."""
    found: JobState | None = None
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or parts[0] != job_id:
            continue
        code, sig = parse_exit(parts[2])
        found = JobState(base_state(parts[1]), "None", code, sig)  # the last record wins
    return found


def unreachable(message: str) -> bool:
    """Whether a Slurm command's complaint means the controller cannot be reached."""
    lowered = message.lower()
    return any(marker in lowered for marker in UNREACHABLE_MARKERS)


def sbatch_refusal(stderr: str) -> tuple[bool, str]:
    """Whose fault a failed ``sbatch`` is: (job's fault, the message to give).

    A request Slurm judges and refuses (too many CPUs, a partition that does not exist,
    a time over the limit) is the job's; Slurm unreachable, or a failure that is no
    judgement of the request, is the node's."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else "sbatch failed without a message"
    message = message.removeprefix("sbatch: error: ")
    if unreachable(stderr):
        return False, message
    job_fault = "batch job submission failed" in stderr.lower()
    return job_fault, message


def time_limit(seconds: float) -> str:
    """``--time`` for a walltime in seconds, as ``D-HH:MM:SS`` (rounded up to a second)."""
    total = max(1, int(-(-seconds // 1)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02}:{minutes:02}:{secs:02}"


@dataclass(frozen=True)
class Request:
    """What one job asks of Slurm."""

    job_name: str
    workdir: Path
    output: Path
    mpi: bool = False
    ranks: int = 1
    cpus: int = 1
    """CPUs of a non-MPI job (``-c``); an MPI job gets one per rank."""
    gpus: int = 0
    memory_mb: int | None = None
    walltime: float | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    extra_args: Sequence[str] = ()


def sbatch_argv(request: Request, sbatch: str = "sbatch") -> list[str]:
    """The ``sbatch`` command line; the script comes on standard input.

    ``--export=ALL`` with sbatch's own environment set to exactly the job's: the job
    gets that (plus Slurm's ``SLURM_*``), and no value is on a command line."""
    argv = [
        sbatch,
        "--parsable",
        f"--job-name={request.job_name}",
        f"--chdir={request.workdir}",
        f"--output={request.output}",
        f"--error={request.output}",
        "--open-mode=append",
        "--export=ALL",
        "--no-requeue",
    ]
    if request.mpi:
        argv += [f"--ntasks={max(1, request.ranks)}", "--cpus-per-task=1"]
    else:
        argv += ["--ntasks=1", f"--cpus-per-task={max(1, request.cpus)}"]
    if request.walltime is not None:
        argv.append(f"--time={time_limit(request.walltime)}")
    if request.partition:
        argv.append(f"--partition={request.partition}")
    if request.memory_mb is not None:
        argv.append(f"--mem={request.memory_mb}M")
    if request.gpus > 0:
        argv.append(f"--gres=gpu:{request.gpus}")
    if request.account:
        argv.append(f"--account={request.account}")
    if request.qos:
        argv.append(f"--qos={request.qos}")
    argv += list(request.extra_args)
    return argv


def batch_script(command: str | Sequence[str], mpi: bool) -> str:
    """The batch script: the command (a string under ``/bin/sh -c``, an argv as is),
    under ``srun --mpi=pmi2`` for an MPI job so every rank joins one world."""
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    if mpi:
        argv = ["srun", "--mpi=pmi2", *argv]
    return "#!/bin/sh\nexec " + shlex.join(argv) + "\n"


@dataclass(frozen=True)
class SlurmEnding:
    """How an ended Slurm job reads in the agent's terms."""

    kind: EndKind
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    """The job's fault in words no :class:`EndKind` has (cancelled by someone else)."""
    node_fault: str | None = None
    """The cluster's fault: the job goes back to the queue with this text."""


def _reason(state: JobState) -> str:
    return "" if state.reason in ("None", "") else f" ({state.reason})"


def slurm_ending(state: JobState, stop_requested: bool) -> SlurmEnding:
    """The decision table for an ended job (``state.ended``)."""
    name = state.state
    if name in NODE_FAULT_STATES:
        return SlurmEnding(EndKind.EXITED, node_fault=f"Slurm ended the job {name}{_reason(state)}")
    if name == "TIMEOUT":
        return SlurmEnding(EndKind.WALLTIME, signal=state.signal or None)
    if name == "OUT_OF_MEMORY":
        return SlurmEnding(EndKind.MEMORY, signal=state.signal or None)
    if name == "CANCELLED":
        if stop_requested:
            return SlurmEnding(EndKind.STOPPED, signal=state.signal or None)
        return SlurmEnding(
            EndKind.EXITED,
            error=f"cancelled in Slurm, not by the agent{_reason(state)}",
        )
    if name == "DEADLINE":
        return SlurmEnding(EndKind.EXITED, error=f"Slurm deadline reached{_reason(state)}")
    if state.signal:
        return SlurmEnding(EndKind.SIGNALED, signal=state.signal)
    if name == "FAILED" and state.exit_code == 0:
        return SlurmEnding(EndKind.EXITED, error=f"failed in Slurm{_reason(state)}")
    return SlurmEnding(EndKind.EXITED, exit_code=state.exit_code)


# ------------------------------------------------------------------ partitions


@dataclass(frozen=True)
class Partition:
    """A partition's limits, from ``scontrol -o show partition`` and its nodes."""

    name: str
    default: bool = False
    state: str = "UP"
    max_time: float | None = None
    """Seconds; None: unlimited."""
    max_nodes: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None
    total_cpus: int = 0
    node_cpus: int = 0
    """The most CPUs one of its nodes has."""
    nodes: str = ""


def parse_duration(text: str) -> float | None:
    """Slurm's ``MaxTime`` (``UNLIMITED``, ``30``, ``1:00:00``, ``2-00:00:00``) in
    seconds; None for unlimited or unreadable."""
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
    parts = [int(part) for part in text.split(":")]
    if len(parts) == 1:  # minutes
        seconds = parts[0] * 60
    elif len(parts) == 2:  # minutes:seconds
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return float(days * 86400 + seconds)


def _limit(text: str | None) -> int | None:
    if text is None or not text[:1].isdigit():
        return None
    return int(re.sub(r"\D.*$", "", text))


def parse_partitions(
    partitions_text: str, node_cpus: Mapping[str, int] | None = None
) -> list[Partition]:
    """Partitions from ``scontrol -o show partition``; ``node_cpus`` (partition name →
    the most CPUs of one of its nodes, from :func:`parse_node_cpus`) refines the
    per-node CPU limit."""
    found: list[Partition] = []
    for line in partitions_text.splitlines():
        fields = parse_fields(line)
        name = fields.get("PartitionName")
        if not name:
            continue
        try:
            max_time = parse_duration(fields.get("MaxTime", "UNLIMITED"))
        except ValueError:
            max_time = None
        total = _limit(fields.get("TotalCPUs")) or 0
        found.append(
            Partition(
                name=name,
                default=fields.get("Default") == "YES",
                state=fields.get("State", "UP"),
                max_time=max_time,
                max_nodes=_limit(fields.get("MaxNodes")),
                max_cpus_per_node=_limit(fields.get("MaxCPUsPerNode")),
                max_mem_per_node_mb=_limit(fields.get("MaxMemPerNode")),
                total_cpus=total,
                node_cpus=(node_cpus or {}).get(name, total),
                nodes=fields.get("Nodes", ""),
            )
        )
    return found


def parse_node_cpus(nodes_text: str) -> dict[str, int]:
    """Partition name → the most CPUs one of its nodes has, from ``scontrol -o show node``."""
    most: dict[str, int] = {}
    for line in nodes_text.splitlines():
        fields = parse_fields(line)
        cpus = _limit(fields.get("CPUTot"))
        if cpus is None:
            continue
        for name in fields.get("Partitions", "").split(","):
            if name and name != "(null)":
                most[name] = max(most.get(name, 0), cpus)
    return most


def pick_partition(partitions: Sequence[Partition], name: str | None) -> Partition | None:
    """The named partition, or the default one when no name is given."""
    for partition in partitions:
        if (name is None and partition.default) or partition.name == name:
            return partition
    return None


def why_partition_refuses(
    partitions: Sequence[Partition],
    name: str | None,
    *,
    mpi: bool,
    ranks: int,
    cpus: int,
    walltime: float | None,
    memory_mb: int | None,
) -> str | None:
    """Why Slurm could never run this job in the partition (it would pend for ever or be
    refused): the job is left to other agents. None when it could run."""
    partition = pick_partition(partitions, name)
    if partition is None:
        if name is None:
            return None  # no default partition known: let sbatch judge
        return f"Slurm has no partition {name!r}"
    per_node = partition.node_cpus or partition.total_cpus
    if partition.max_cpus_per_node is not None:
        per_node = min(per_node, partition.max_cpus_per_node) if per_node else per_node
    if mpi:
        nodes = partition.max_nodes
        most = partition.total_cpus
        if nodes is not None and per_node:
            most = min(most, nodes * per_node)
        if most and ranks > most:
            return f"needs {ranks} ranks, Slurm partition {partition.name!r} has {most} CPUs"
    elif per_node and cpus > per_node:
        return (
            f"needs {cpus} cores on one node, Slurm partition {partition.name!r}"
            f" has at most {per_node} per node"
        )
    if walltime is not None and partition.max_time is not None and walltime > partition.max_time:
        return (
            f"needs a walltime of {time_limit(walltime)}, Slurm partition"
            f" {partition.name!r} allows {time_limit(partition.max_time)}"
        )
    limit = partition.max_mem_per_node_mb
    if memory_mb is not None and limit is not None and memory_mb > limit:
        return f"needs {memory_mb} MiB, Slurm partition {partition.name!r} allows {limit} MiB"
    return None
