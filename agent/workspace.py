"""Two directories per job: the job's own, and the agent's files about it.

```
<run.work_dir>/                 0711 when jobs run as another user (enter, not list)
    job-<pk>-<marker>/          0700, owned by the job user: all a job may write
        run/                    its cwd and $AGENT_JOB_DIR: inputs, templates, its outputs
        progress                $AGENT_PROGRESS_FILE
<state_dir>/private/            0700, the agent's
    job-<pk>-<marker>/          0700
        job.log                 stdout+stderr of pre-process, command and post-process
        spec.json               the resolved run spec, for whoever debugs the job later
        packed/                 tar.gz files built from multi-file outputs (made then)
```
The agent's own files sit outside anything the job can write or read, so a job can
neither replace its log with a FIFO nor read another job's. Paths a job names are
checked with :func:`inside` before use; staged files are handed to the job user
(:meth:`Workspace.hand_over`) before any job code runs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executors.base import NodeError
from executors.identity import JobUser


class EscapesJobDir(ValueError):
    """A path named by the job leads outside its directory."""


def inside(base: Path, relative: str) -> Path:
    """``base / relative``, refused when it resolves (symlinks followed) outside ``base``."""
    if not relative or Path(relative).is_absolute():
        raise EscapesJobDir(f"{relative!r} is not a relative path")
    root = base.resolve()
    try:
        candidate = (root / relative).resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop, a name too long
        raise EscapesJobDir(f"{relative!r} cannot be resolved: {exc}") from None
    if candidate != root and root not in candidate.parents:
        raise EscapesJobDir(f"{relative!r} leads outside the job directory")
    return candidate


@dataclass(frozen=True)
class Workspace:
    root: Path
    """The job's directory (owned by the job user)."""
    private: Path
    """The agent's directory for this job (0700, the agent's)."""
    owner: JobUser | None = None
    """Who the job runs as, when that is another account than the agent's."""

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def progress_file(self) -> Path:
        return self.root / "progress"

    @property
    def log_path(self) -> Path:
        return self.private / "job.log"

    @property
    def packed_dir(self) -> Path:
        return self.private / "packed"

    @classmethod
    def create(
        cls, work_dir: Path, private_dir: Path, name: str, owner: JobUser | None = None
    ) -> Workspace:
        """Make both directories (``private_dir`` must exist, see
        :func:`agent.statedir.prepare`); a failure here is the node's problem."""
        workspace = cls(work_dir / name, private_dir / name, owner)
        made = (workspace.root, workspace.run_dir, workspace.progress_file)
        try:  # bare os calls: this runs for every job, a short job's cost is in them
            os.mkdir(workspace.root, 0o700)
            os.mkdir(workspace.run_dir, 0o755)
            _new_file(workspace.progress_file, 0o644)
            os.mkdir(workspace.private, 0o700)  # (packed/ only when an output is packed)
            _new_file(workspace.log_path, 0o600)
            workspace._give(made)  # all there is under it yet: no walk needed
        except OSError as exc:
            raise NodeError(
                f"cannot create job directory {workspace.root}: {exc.strerror}"
            ) from exc
        return workspace

    def hand_over(self) -> None:
        """Give everything under the job's directory to the job user (no link followed)."""
        self._give(self._everything())

    def _everything(self) -> Iterator[str | Path]:
        """The job's directory and all under it (walked only as it is consumed)."""
        yield self.root
        for directory, subdirs, files in os.walk(self.root):
            for name in (*subdirs, *files):
                yield os.path.join(directory, name)

    def _give(self, paths: Iterable[str | Path]) -> None:
        """``paths`` to the job user, when that is another account (no link followed);
        ``paths`` is not consumed otherwise."""
        owner = self.owner
        if owner is None or owner.is_current():
            return
        for path in paths:
            os.lchown(path, owner.uid, owner.gid)

    def log_size(self) -> int:
        """Bytes of the job's log as kept (0 when there is none)."""
        info = self._regular_log()
        return 0 if info is None else info.st_size

    def log_is_empty(self) -> bool:
        """Whether the job's log is a regular file with nothing in it (a log that is not
        a regular file is not empty: the upload looks at it and refuses it)."""
        info = self._regular_log()
        return info is not None and info.st_size == 0

    def _regular_log(self) -> os.stat_result | None:
        """The log's ``lstat``, or None when it is missing or not a regular file."""
        try:
            info = self.log_path.lstat()
        except OSError:
            return None
        return info if stat.S_ISREG(info.st_mode) else None

    def write_json(self, name: str, data: Any) -> None:
        """Write ``name`` into the private directory. Only the agent reaches it and only
        for this job, so no temp file and rename: a write cut short leaves a file only a
        person debugging the job reads, and the directory goes with the job."""
        (self.private / name).write_text(json.dumps(data, indent=2, default=str), "utf-8")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.private, ignore_errors=True)


def _new_file(path: Path, mode: int) -> None:
    """Create the empty file ``path`` (``mode``, less the umask); it must not exist."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode))
