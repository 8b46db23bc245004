"""Declared outputs: find them in the job directory, pack them, upload them.

A declared ``path`` is a file, a directory or a glob relative to the job directory.
One matching file is sent as is; several matches (or a directory) are sent as one
``tar.gz`` with paths relative to the job directory. A path resolving outside the
job directory (``..``, a symlink pointing out) is refused and reported, never read;
inside a packed directory, symlinks leading out are left out.

What the job left there is hostile: every file is read through a descriptor opened with
:func:`executors.safefiles.open_regular` (no final symlink followed, no blocking, checked
to be a regular file lying inside the job directory once open). A declared output that
is a FIFO, a socket or a device is refused and reported on that output; inside a
packed directory such entries are left out.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio

from agent.server import BadRequest, ServerClient
from agent.server.errors import NotFound
from agent.spec import OutputSpec
from agent.workspace import EscapesJobDir, inside
from executors.safefiles import UnsafeFile, open_regular


@dataclass(frozen=True)
class CollectedOutput:
    spec: OutputSpec
    file: Path | None
    """What to upload; None when there is a problem."""
    problem: str | None = None
    """"missing" or why it was refused."""
    within: Path | None = None
    """The directory ``file`` must still lie in when it is opened for the upload."""


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
    if len(matches) == 1:
        single = matches[0].resolve()
        if not single.exists():  # a dangling symlink
            return CollectedOutput(spec, None, "missing")
        if not stat.S_ISDIR(single.stat().st_mode):
            try:
                os.close(open_regular(single, os.O_RDONLY, beneath=run_dir))
            except UnsafeFile as exc:
                named = str(matches[0].relative_to(run_dir))
                return CollectedOutput(spec, None, f"refused: {named!r} {exc.reason}")
            return CollectedOutput(spec, single, within=run_dir)
    archive = packed_dir / f"{spec.name}.{spec.type}.tar.gz"
    packed_dir.mkdir(mode=0o700, exist_ok=True)  # the agent's: the job cannot reach it
    with (
        os.fdopen(_create_new(archive), "wb") as raw,
        tarfile.open(fileobj=raw, mode="w:gz") as tar,
    ):
        for match in matches:
            _add_tree(tar, match, run_dir)
    return CollectedOutput(spec, archive, within=packed_dir)


def _create_new(path: Path) -> int:
    """A new, empty file at ``path`` (0600), replacing a file but never following a
    link someone put there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _add_tree(tar: tarfile.TarFile, path: Path, root: Path) -> None:
    """Add ``path`` (recursively): directories, regular files, and symlinks to regular
    files inside ``root`` (as those files). Left out: FIFOs, sockets, devices, symlinks
    to directories, and symlinks that lead out of ``root`` or loop."""
    try:
        status = path.lstat()
    except OSError:
        return
    arcname = str(path.relative_to(root))
    if stat.S_ISDIR(status.st_mode):
        entry = tarfile.TarInfo(arcname)
        entry.type = tarfile.DIRTYPE
        entry.mode = stat.S_IMODE(status.st_mode)
        entry.mtime = int(status.st_mtime)
        tar.addfile(entry)
        for child in sorted(path.iterdir()):
            _add_tree(tar, child, root)
        return
    if stat.S_ISLNK(status.st_mode):
        try:
            path = path.resolve(strict=True)
        except (RuntimeError, OSError):
            return
    elif not stat.S_ISREG(status.st_mode):
        return
    try:
        fd = open_regular(path, os.O_RDONLY, beneath=root)
    except UnsafeFile:
        return
    with os.fdopen(fd, "rb") as handle:
        tar.addfile(tar.gettarinfo(arcname=arcname, fileobj=handle), handle)


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
    *,
    within: Path | None = None,
) -> None:
    """Upload, treating "400 duplicate" of our own earlier attempt as done.

    The file is opened once with :func:`~executors.safefiles.open_regular` (inside
    ``within`` when given) and sent from that descriptor, so what is checked is what is
    sent; anything but a regular file raises :class:`~executors.safefiles.UnsafeFile`.
    An empty file is not sent (:class:`OutputEmpty`). A 400 is looked into with
    ``/info``: a live output of that name and type means an earlier attempt of ours got
    through (its answer was lost) and it counts as uploaded; a soft-deleted one raises
    :class:`OutputBlocked`; no output at all means the 400 was about something else and
    it is raised.
    """
    fd = await anyio.to_thread.run_sync(partial(open_regular, path, os.O_RDONLY, beneath=within))
    try:
        await _upload_from(client, job, node, name, type_, fd, filename or path.name)
    finally:
        os.close(fd)


async def _upload_from(
    client: ServerClient, job: int, node: int, name: str, type_: str, fd: int, filename: str
) -> None:
    if os.fstat(fd).st_size == 0:
        raise OutputEmpty(
            f"output {name!r} ({type_}) is empty, and the job server cannot store an empty file"
        )
    try:
        await client.add_output(job, node, name, type_, fd, filename=filename)
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
