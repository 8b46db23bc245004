"""The agent's side of a Slurm cluster: partition limits for the fit, and what a
restarted agent does with a Slurm job an earlier life of it submitted.

With ``run.executor = "slurm"`` a node slot is a job in flight, not local cores: a job
fits when its partition could ever run it (:func:`~executors.slurm_state.why_partition_refuses`
on limits read with ``scontrol``), so an impossible job is left to other agents instead
of pending in Slurm for ever.
"""

from __future__ import annotations

import time

import structlog

from agent.journal import JournalEntry
from agent.server import Job
from agent.spec import RunSpec
from executors.base import NodeError
from executors.slurm import SlurmCommands
from executors.slurm_state import (
    Partition,
    parse_node_cpus,
    parse_partitions,
    why_partition_refuses,
)

logger = structlog.get_logger("agent.cluster")

#: Seconds partition limits are trusted before they are read again.
PARTITIONS_TTL = 300.0


async def read_partitions(commands: SlurmCommands) -> list[Partition]:
    """The cluster's partitions with their limits; :class:`NodeError` when Slurm
    cannot be asked."""
    parts = await commands.call([commands.scontrol, "-o", "show", "partition"])
    if parts.returncode != 0:
        raise NodeError(f"scontrol show partition: {parts.stderr.strip() or 'failed'}")
    nodes = await commands.call([commands.scontrol, "-o", "show", "node"])
    node_cpus = parse_node_cpus(nodes.stdout) if nodes.returncode == 0 else None
    return parse_partitions(parts.stdout, node_cpus)


async def slurm_version(commands: SlurmCommands) -> str:
    """``slurm-wlm 22.05.8`` (``scontrol --version``); :class:`NodeError` without Slurm."""
    answer = await commands.call([commands.scontrol, "--version"])
    if answer.returncode != 0:
        raise NodeError(f"scontrol --version: {answer.stderr.strip() or 'failed'}")
    return answer.stdout.strip()


class PartitionBook:
    """Partition limits, read at most every :data:`PARTITIONS_TTL` seconds."""

    def __init__(self, commands: SlurmCommands, default_partition: str | None) -> None:
        self.commands = commands
        self.default_partition = default_partition
        self.partitions: list[Partition] | None = None
        """None until read once: then every job is submitted and Slurm judges."""
        self._read_at = float("-inf")
        self._failing = False

    async def refresh(self) -> None:
        """Read the limits when they are older than the TTL; a failure is logged once
        and the old limits are kept."""
        if time.monotonic() - self._read_at < PARTITIONS_TTL:
            return
        self._read_at = time.monotonic()
        try:
            self.partitions = await read_partitions(self.commands)
        except NodeError as exc:
            if not self._failing:
                logger.warning("cannot read Slurm's partitions", error=str(exc))
            self._failing = True
            return
        if self._failing:
            logger.info("Slurm's partitions read again")
        self._failing = False

    def why_refused(self, spec: RunSpec) -> str | None:
        """Why Slurm could never run ``spec`` here; None when it could (or when the
        limits are not known)."""
        if self.partitions is None:
            return None
        return why_partition_refuses(
            self.partitions,
            spec.queue or self.default_partition,
            mpi=spec.use_mpi,
            ranks=spec.ranks,
            cpus=spec.cores,
            walltime=spec.walltime,
            memory_mb=spec.memory_mb,
        )


def follows_again(entry: JournalEntry, job: Job, node: int) -> bool:
    """Whether a restarted agent follows the journal's Slurm job instead of giving the
    job back: it was submitted, and the server still sees the job started on this node."""
    return (
        entry.slurm_job is not None
        and entry.started
        and entry.workspace is not None
        and job.pk == entry.job
        and job.node == node
        and job.phase == "STARTED"
    )
