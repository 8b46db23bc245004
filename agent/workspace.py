"""One directory per job: the job's working directory and the agent's files beside it.

```
<run.work_dir>/job-<pk>-<marker>/
    run/        the job's cwd and $AGENT_JOB_DIR: inputs, templates, its outputs
    job.log     stdout+stderr of pre-process, command and post-process (redacted, capped)
    progress    $AGENT_PROGRESS_FILE
    spec.json   the resolved run spec, for whoever debugs the job later
    packed/     tar.gz files built from multi-file outputs
```
The agent's own files sit outside ``run/`` so a job's ``*`` output glob never picks
them up. Paths a job names are checked with :func:`inside` before use.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executors.base import NodeError


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

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        return self.root / "job.log"

    @property
    def progress_file(self) -> Path:
        return self.root / "progress"

    @property
    def packed_dir(self) -> Path:
        return self.root / "packed"

    @classmethod
    def create(cls, work_dir: Path, name: str) -> Workspace:
        """Make the directories; a failure here is the node's problem."""
        workspace = cls(work_dir / name)
        try:
            workspace.run_dir.mkdir(parents=True, exist_ok=True)
            workspace.packed_dir.mkdir(exist_ok=True)
            workspace.log_path.touch()
        except OSError as exc:
            raise NodeError(
                f"cannot create job directory {workspace.root}: {exc.strerror}"
            ) from exc
        return workspace

    def write_json(self, name: str, data: Any) -> None:
        """Write ``name`` atomically (temp file, then rename)."""
        target = self.root / name
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(temp, target)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
