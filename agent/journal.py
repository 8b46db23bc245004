"""The recovery journal: which job each node slot holds, on disk.

Written (atomically, fsync'd) once when a slot acquires a job, naming the job directory
it is about to get, and for a Slurm job again when ``sbatch`` accepts it; removed once
the server has been told how the job ended. If the agent dies hard (SIGKILL, OOM,
power), the next start finds the entry, kills what is left of the job's processes by
their marker, removes the job directory and gives the job back, asking the server
whether it was started (see :mod:`agent.recovery`); a Slurm job it follows again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

logger = structlog.get_logger("agent.journal")

_WRITE_NEW = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


@dataclass(frozen=True)
class JournalEntry:
    node: int
    job: int
    marker: str
    started: bool
    """Whether the job was started on the server when this was written (what recovery
    does with it asks the server instead; only a Slurm job's entry says True)."""
    workspace: str | None = None
    slurm_job: str | None = None
    """The job's Slurm job id once ``sbatch`` accepted it: a restart follows it again."""
    log_start: int = 0
    """Bytes the job's log had when the Slurm job was submitted (pre-process output)."""


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, node: int) -> Path:
        return self.directory / f"node-{node}.json"

    def record(self, entry: JournalEntry) -> None:
        """Write the node's entry: a temp file, fsync'd, renamed over the old one. The
        directory is made when it is missing (the first entry, or one an operator
        removed)."""
        target = self._path(entry.node)
        temp = target.with_name(f".{target.name}.tmp")
        data = json.dumps(asdict(entry)).encode()
        try:
            fd = os.open(temp, _WRITE_NEW, 0o666)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, _WRITE_NEW, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(fd)
        os.replace(temp, target)

    def read(self, node: int) -> JournalEntry | None:
        try:
            data = json.loads(self._path(node).read_text(encoding="utf-8"))
            return JournalEntry(**data)
        except (OSError, ValueError, TypeError):
            return None

    def clear(self, node: int) -> None:
        """Forget the node's entry; a journal that cannot be written is logged, not fatal
        (recording the next job fails too, and that job is given back)."""
        try:
            self._path(node).unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("cannot clear the recovery journal", node=node, error=str(exc))
