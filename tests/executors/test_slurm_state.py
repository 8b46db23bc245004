"""What Slurm says and what it means: the pure half of the Slurm executor.

The sample lines are what Slurm 22.05 printed on the CI cluster (``../shared/slurm``)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from agent.cluster import follows_again
from agent.journal import JournalEntry
from agent.server import Job
from executors.base import EndKind
from executors.slurm_state import (
    JobState,
    Request,
    batch_script,
    parse_duration,
    parse_fields,
    parse_node_cpus,
    parse_partitions,
    parse_sacct,
    parse_scontrol,
    sbatch_argv,
    sbatch_refusal,
    slurm_ending,
    time_limit,
    why_partition_refuses,
)

FAILED_LINE = (
    "JobId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 "
    "RunTime=00:00:00 TimeLimit=UNLIMITED Partition=debug AllocNode:Sid=localhost:9250 "
    "NumNodes=1 NumCPUs=1 CPUs/Task=1 Command=(null) WorkDir=/tmp "
    "StdErr=/tmp/slurm-2.out StdIn=/dev/null StdOut=/tmp/slurm-2.out Power= "
)
PARTITION_LINE = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
    "Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 "
    "Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO "
    "MaxCPUsPerNode=UNLIMITED Nodes=localhost PriorityJobFactor=1 PriorityTier=1 RootOnly=NO "
    "ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=2 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=23622M,node=1,billing=2"
)
SHORT_LINE = (
    "PartitionName=short Default=NO MaxNodes=2 MaxTime=00:10:00 MaxCPUsPerNode=4 "
    "Nodes=n[1-4] State=UP TotalCPUs=64 TotalNodes=4 MaxMemPerNode=8000"
)
NODE_LINES = (
    "NodeName=n1 Arch=x86_64 CoresPerSocket=8 CPUAlloc=0 CPUTot=16 CPULoad=0.0 "
    "Partitions=short,long RealMemory=64000\n"
    "NodeName=n2 Arch=x86_64 CoresPerSocket=4 CPUAlloc=0 CPUTot=8 Partitions=short\n"
)


def test_fields_keep_values_with_spaces() -> None:
    fields = parse_fields("JobId=5 Reason=Some reason here ExitCode=0:15 AllocNode:Sid=h:1")
    assert fields == {
        "JobId": "5",
        "Reason": "Some reason here",
        "ExitCode": "0:15",
        "AllocNode:Sid": "h:1",
    }


def test_scontrol_state_of_a_failed_job() -> None:
    assert parse_scontrol(FAILED_LINE) == JobState("FAILED", "NonZeroExitCode", 3, 0)
    assert parse_scontrol("slurm_load_jobs error: Invalid job id specified") is None


def test_sacct_completion_log_line() -> None:
    text = "2|FAILED|3:0\n3|CANCELLED by 0|0:0\n30|COMPLETED|0:0\n"
    assert parse_sacct(text, "3") == JobState("CANCELLED", "None", 0, 0)
    assert parse_sacct(text, "2") == JobState("FAILED", "None", 3, 0)
    assert parse_sacct(text, "4") is None


@pytest.mark.parametrize(
    ("state", "stop", "expected"),
    [
        (JobState("COMPLETED"), False, (EndKind.EXITED, 0, None, None, None)),
        (JobState("FAILED", "NonZeroExitCode", 3, 0), False, (EndKind.EXITED, 3, None, None, None)),
        (JobState("FAILED", "None", 0, 9), False, (EndKind.SIGNALED, None, 9, None, None)),
        (JobState("TIMEOUT", "TimeLimit", 0, 15), False, (EndKind.WALLTIME, None, 15, None, None)),
        (
            JobState("OUT_OF_MEMORY", "OutOfMemory", 0, 125),
            False,
            (EndKind.MEMORY, None, 125, None, None),
        ),
        (JobState("CANCELLED", "None", 0, 15), True, (EndKind.STOPPED, None, 15, None, None)),
        (
            JobState("CANCELLED", "None", 0, 15),
            False,
            (EndKind.EXITED, None, None, "cancelled in Slurm, not by the agent", None),
        ),
        (
            JobState("FAILED", "JobLaunchFailure", 0, 0),
            False,
            (EndKind.EXITED, None, None, "failed in Slurm (JobLaunchFailure)", None),
        ),
        (
            JobState("NODE_FAIL", "NodeDown"),
            False,
            (EndKind.EXITED, None, None, None, "Slurm ended the job NODE_FAIL (NodeDown)"),
        ),
        (
            JobState("PREEMPTED"),
            True,
            (EndKind.EXITED, None, None, None, "Slurm ended the job PREEMPTED"),
        ),
        (JobState("COMPLETED"), True, (EndKind.EXITED, 0, None, None, None)),
    ],
)
def test_endings_follow_the_decision_table(
    state: JobState, stop: bool, expected: tuple[object, ...]
) -> None:
    ending = slurm_ending(state, stop)
    assert (
        ending.kind,
        ending.exit_code,
        ending.signal,
        ending.error,
        ending.node_fault,
    ) == expected


def test_refusals_are_the_jobs_fault_unless_slurm_is_away() -> None:
    impossible = (
        "sbatch: error: Batch job submission failed: More processors requested than permitted\n"
    )
    assert sbatch_refusal(impossible) == (
        True,
        "Batch job submission failed: More processors requested than permitted",
    )
    partition = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    assert sbatch_refusal(partition)[0] is True
    away = (
        "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
        "(connect failure)"
    )
    assert sbatch_refusal(away)[0] is False
    assert sbatch_refusal("Segmentation fault")[0] is False


def test_time_limit() -> None:
    assert time_limit(60) == "0-00:01:00"
    assert time_limit(0.5) == "0-00:00:01"
    assert time_limit(90061) == "1-01:01:01"


def test_sbatch_argv_for_a_threaded_job() -> None:
    request = Request(
        job_name="ufdl-job-7",
        workdir=Path("/shared/job-7/run"),
        output=Path("/shared/job-7/slurm.out"),
        cpus=4,
        gpus=2,
        memory_mb=2048,
        walltime=3600,
        partition="gpu",
        account="lab",
        qos="high",
        extra_args=("--constraint=a100",),
    )
    assert sbatch_argv(request) == [
        "sbatch",
        "--parsable",
        "--job-name=ufdl-job-7",
        "--chdir=/shared/job-7/run",
        "--output=/shared/job-7/slurm.out",
        "--error=/shared/job-7/slurm.out",
        "--open-mode=append",
        "--export=ALL",
        "--no-requeue",
        "--ntasks=1",
        "--cpus-per-task=4",
        "--time=0-01:00:00",
        "--partition=gpu",
        "--mem=2048M",
        "--gres=gpu:2",
        "--account=lab",
        "--qos=high",
        "--constraint=a100",
    ]


def test_sbatch_argv_for_an_mpi_job_asks_one_cpu_per_rank() -> None:
    request = Request("j", Path("/w/run"), Path("/w/slurm.out"), mpi=True, ranks=8, cpus=8)
    argv = sbatch_argv(request)
    assert "--ntasks=8" in argv and "--cpus-per-task=1" in argv
    assert not any(arg.startswith(("--time", "--partition", "--mem", "--gres")) for arg in argv)


def test_batch_script_runs_the_command_and_mpi_ranks_under_srun() -> None:
    script = batch_script("echo 'hi' $X", mpi=False)
    assert script.startswith("#!/bin/sh\n")
    assert shlex.split(script.splitlines()[1]) == ["exec", "/bin/sh", "-c", "echo 'hi' $X"]
    mpi = batch_script(["python3", "rank.py"], mpi=True)
    assert shlex.split(mpi.splitlines()[1]) == ["exec", "srun", "--mpi=pmi2", "python3", "rank.py"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("UNLIMITED", None),
        ("30", 1800.0),
        ("1:30", 90.0),
        ("01:00:00", 3600.0),
        ("2-00:00:00", 172800.0),
    ],
)
def test_partition_time_limits(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_partitions_and_their_node_sizes() -> None:
    debug, short = parse_partitions(
        f"{PARTITION_LINE}\n{SHORT_LINE}\n", parse_node_cpus(NODE_LINES)
    )
    assert (debug.name, debug.default, debug.max_time, debug.max_cpus_per_node) == (
        "debug",
        True,
        None,
        None,
    )
    assert (debug.total_cpus, debug.node_cpus) == (2, 2)
    assert (short.max_nodes, short.max_time, short.max_cpus_per_node) == (2, 600.0, 4)
    assert (short.node_cpus, short.max_mem_per_node_mb) == (16, 8000)


def test_why_a_partition_refuses() -> None:
    parts = parse_partitions(f"{PARTITION_LINE}\n{SHORT_LINE}\n", parse_node_cpus(NODE_LINES))

    def why(name: str | None, **need: object) -> str | None:
        values: dict[str, object] = {
            "mpi": False,
            "ranks": 1,
            "cpus": 1,
            "walltime": None,
            "memory_mb": None,
        }
        values.update(need)
        return why_partition_refuses(parts, name, **values)  # type: ignore[arg-type]

    assert why(None, cpus=2) is None  # the default partition, debug
    assert why(None, cpus=3) == (
        "needs 3 cores on one node, Slurm partition 'debug' has at most 2 per node"
    )
    assert why(None, mpi=True, ranks=3) == "needs 3 ranks, Slurm partition 'debug' has 2 CPUs"
    assert why("short", cpus=5) == (
        "needs 5 cores on one node, Slurm partition 'short' has at most 4 per node"
    )
    assert why("short", mpi=True, ranks=8) is None
    assert why("short", mpi=True, ranks=9) == "needs 9 ranks, Slurm partition 'short' has 8 CPUs"
    assert why("short", walltime=601.0) == (
        "needs a walltime of 0-00:10:01, Slurm partition 'short' allows 0-00:10:00"
    )
    assert why("short", memory_mb=9000) == (
        "needs 9000 MiB, Slurm partition 'short' allows 8000 MiB"
    )
    assert why("gpu") == "Slurm has no partition 'gpu'"
    assert (
        why_partition_refuses([], None, mpi=False, ranks=1, cpus=64, walltime=None, memory_mb=None)
        is None
    )


def _job(phase_fields: dict[str, object]) -> Job:
    base: dict[str, object] = {
        "pk": 5,
        "template": {"pk": 1, "version": 1},
        "node": 3,
        "start_time": "2026-11-24T10:00:00Z",
    }
    base.update(phase_fields)
    return Job.model_validate(base)


def test_a_restarted_agent_follows_only_a_job_still_started_on_its_node() -> None:
    entry = JournalEntry(3, 5, "m" * 32, True, "/shared/job-5-m", slurm_job="12")
    started = _job({})
    assert started.phase == "STARTED"
    assert follows_again(entry, started, 3)
    assert not follows_again(entry, started, 4)
    assert not follows_again(JournalEntry(3, 5, "m" * 32, True, "/w"), started, 3)
    assert not follows_again(entry, _job({"node": None}), 3)
    cancelled = _job({"is_cancelled": True, "error_reason": "Cancelled"})
    assert cancelled.phase == "CANCELLED"
    assert not follows_again(entry, cancelled, 3)
