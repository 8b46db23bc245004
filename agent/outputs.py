"""Declared outputs: find them in the job directory, pack them, upload them.

A declared ``path`` is a file, a directory or a glob relative to the job directory.
One matching file is sent as is; several matches (or a directory) are sent as one
``tar.gz`` with paths relative to the job directory. A path resolving outside the
job directory (``..``, a symlink pointing out) is refused and reported, never read;
inside a packed directory, symlinks leading out are left out.
"""

from __future__ import annotations

import glob
import tarfile
from dataclasses import dataclass
from pathlib import Path

import anyio

from agent.server import BadRequest, ServerClient
from agent.server.errors import NotFound
from agent.spec import OutputSpec
from agent.workspace import EscapesJobDir, inside


@dataclass(frozen=True)
class CollectedOutput:
    spec: OutputSpec
    file: Path | None
    """What to upload; None when there is a problem."""
    problem: str | None = None
    """"missing" or why it was refused."""


class OutputBlocked(Exception):
    """The server keeps a soft-deleted output of that name and type from an earlier
    attempt (``reset`` only soft-deletes), so this name can never be uploaded again."""


class OutputEmpty(Exception):
    """The file is empty, and the job server cannot store an empty file: the real one
    reads an upload without a body as no file at all (a 500), so none is sent."""


def _matches(run_dir: Path, pattern: str) -> list[Path]:
    if glob.has_magic(pattern):
        return sorted(run_dir.glob(pattern))
    candidate = run_dir / pattern
    return [candidate] if candidate.exists() or candidate.is_symlink() else []


def collect_output(spec: OutputSpec, run_dir: Path, packed_dir: Path) -> CollectedOutput:
    """Find one declared output and make it a single file ready for upload."""
    run_dir = run_dir.resolve()
    try:
        inside(run_dir, spec.path.rstrip("/") or ".")
    except EscapesJobDir as exc:
        return CollectedOutput(spec, None, f"refused: {exc}")
    matches = _matches(run_dir, spec.path)
    if not matches:
        return CollectedOutput(spec, None, "missing")
    for match in matches:
        try:
            inside(run_dir, str(match.relative_to(run_dir)))
        except EscapesJobDir as exc:
            return CollectedOutput(spec, None, f"refused: {exc}")
    if len(matches) == 1 and matches[0].is_file():
        return CollectedOutput(spec, matches[0].resolve())
    archive = packed_dir / f"{spec.name}.{spec.type}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for match in matches:
            _add_tree(tar, match, run_dir)
    return CollectedOutput(spec, archive)


def _add_tree(tar: tarfile.TarFile, path: Path, root: Path) -> None:
    """Add ``path`` (recursively), leaving out symlinks that lead out of ``root`` or loop."""
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):
        return
    if resolved != root and root not in resolved.parents:
        return
    arcname = str(path.relative_to(root))
    if path.is_dir() and not path.is_symlink():
        tar.add(path, arcname=arcname, recursive=False)
        for child in sorted(path.iterdir()):
            _add_tree(tar, child, root)
    elif path.is_file():
        tar.add(resolved, arcname=arcname, recursive=False)


async def collect_outputs(
    specs: tuple[OutputSpec, ...], run_dir: Path, packed_dir: Path
) -> list[CollectedOutput]:
    results = []
    for spec in specs:
        results.append(await anyio.to_thread.run_sync(_collect_safely, spec, run_dir, packed_dir))
    return results


def _collect_safely(spec: OutputSpec, run_dir: Path, packed_dir: Path) -> CollectedOutput:
    """What the job left can be strange (symlink loops, unreadable files): that is the
    job's problem, reported on the output, never the agent's crash."""
    try:
        return collect_output(spec, run_dir, packed_dir)
    except (OSError, RuntimeError, tarfile.TarError) as exc:
        return CollectedOutput(spec, None, f"refused: cannot be read ({exc})")


async def upload_output(
    client: ServerClient,
    job: int,
    node: int,
    name: str,
    type_: str,
    path: Path,
    filename: str | None = None,
) -> None:
    """Upload, treating "400 duplicate" of our own earlier attempt as done.

    An empty file is not sent (:class:`OutputEmpty`). A 400 is looked into with
    ``/info``: a live output of that name and type means an earlier attempt of ours got
    through (its answer was lost) and it counts as uploaded; a soft-deleted one raises
    :class:`OutputBlocked`; no output at all means the 400 was about something else and
    it is raised.
    """
    if (await anyio.Path(path).stat()).st_size == 0:
        raise OutputEmpty(
            f"output {name!r} ({type_}) is empty, and the job server cannot store an empty file"
        )
    try:
        await client.add_output(job, node, name, type_, path, filename=filename)
    except BadRequest as exc:
        try:
            info = await client.output_info(job, name, type_, node=node)
        except (BadRequest, NotFound):
            raise exc from None
        if info.deleted:
            raise OutputBlocked(
                f"output {name!r} ({type_}) is blocked by a deleted copy from an earlier "
                f"attempt of this job (the server's reset only soft-deletes outputs)"
            ) from exc
