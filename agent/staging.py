"""Staging: put a job's files in place before it starts.

Inputs are downloaded streaming (relative URLs from the job server with the agent's
auth, absolute ones without), checked against md5/sha256 and unpacked when asked;
template files are rendered with the job's ``${variables}``; Sahara mains and libs and
pre/post-process script files are written (executable). What goes wrong is sorted
once: a missing input or a bad checksum or archive is the job's fault
(:class:`JobFault`), an unreachable server the node's
(:class:`~executors.base.NodeError`).

Every byte staged for a job, downloaded or unpacked, is counted against
``run.max_input_bytes`` (:class:`InputBudget`) while it is written, never from what an
archive or a ``Content-Length`` claims. Going past it is the job's fault
(:class:`InputsTooLarge`). A full disk (ENOSPC, EDQUOT) is the job's fault once the job
has bytes on it (its own inputs filled it), the node's when nothing of the job was
written yet.
"""

from __future__ import annotations

import errno
import hashlib
import stat
import tarfile
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anyio

from agent.server.errors import ServerError, ServerFault, ServerUnreachable, TooLarge
from agent.spec import FileSource, InputFile, RunSpec, substitute
from agent.workspace import EscapesJobDir, Workspace, inside
from executors.base import NodeError

Fetch = Callable[[str, Path, int | None], Awaitable[int]]
"""Download a URL into a file, at most the given number of bytes (:class:`TooLarge`
past it); returns the byte count. Raises the client's errors."""

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
HASH_CHUNK = 1024 * 1024
COPY_CHUNK = 1024 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class JobFault(Exception):
    """The job's own definition or data is at fault: it ends ERRORED with this text."""


class InputsTooLarge(JobFault):
    """The job's inputs, downloaded and unpacked, went past ``run.max_input_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"inputs exceed run.max_input_bytes ({size} > {limit} bytes)")


class DiskFullByJob(JobFault):
    """The disk filled up with the job's own bytes."""


@dataclass
class InputBudget:
    """Bytes a job may stage, counted as they are written."""

    limit: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def take(self, size: int) -> None:
        """Count ``size`` more bytes; :class:`InputsTooLarge` past the limit."""
        self.used += size
        if self.used > self.limit:
            raise InputsTooLarge(self.used, self.limit)


def why_inputs_cannot_fit(spec: RunSpec, max_input_bytes: int, free_bytes: int) -> str | None:
    """Why this agent leaves a job to others before taking it: the sizes its inputs
    declare (Rescale's ``decryptedSize``) add up to more than ``run.max_input_bytes`` or
    than the work directory has free. Undeclared sizes count as 0 (they are capped while
    staging); None when the job may be taken."""
    declared = sum(item.declared_size or 0 for item in spec.input_files)
    if declared > max_input_bytes:
        return (
            f"its inputs declare {declared} bytes, "
            f"more than run.max_input_bytes ({max_input_bytes})"
        )
    if declared > free_bytes:
        return (
            f"its inputs declare {declared} bytes, more than the {free_bytes} free in run.work_dir"
        )
    return None


async def stage(
    spec: RunSpec, workspace: Workspace, fetch: Fetch, budget: InputBudget | None = None
) -> bool:
    """Download inputs, render templates, write extra files into ``workspace.run_dir``,
    counting every byte against ``budget`` (default: unlimited). Whether anything was
    written (then the job directory has files to hand over to the job user)."""
    budget = budget or InputBudget(1 << 62)
    run_dir = workspace.run_dir
    for index, item in enumerate(spec.input_files):
        await _stage_input(item, index, run_dir, fetch, budget)
    for task in spec.template_tasks:
        target = _target(run_dir, task.processed_filename, "templateTasks")
        text = await _source_text(task.source, target, fetch, "template", budget)
        await _write(target, substitute(text, spec.variables).encode(), budget)
    executables = list(spec.extra_files)
    for script in (spec.pre_process, spec.post_process):
        if script is not None and script.file is not None and script.filename:
            executables.append((script.filename, script.file))
    for relative, source in executables:
        target = _target(run_dir, relative, "file")
        await _materialise(source, target, fetch, "file", budget)
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
    return bool(spec.input_files or spec.template_tasks or executables)


def _target(run_dir: Path, relative: str, what: str) -> Path:
    try:
        target = inside(run_dir, relative)
    except EscapesJobDir as exc:
        raise JobFault(f"{what} {relative!r}: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


async def _stage_input(
    item: InputFile, index: int, run_dir: Path, fetch: Fetch, budget: InputBudget
) -> None:
    target = _target(run_dir, item.relative_path, f"inputFiles[{index}]")
    label = f"input {item.relative_path!r}"
    await _fetch(fetch, item.download_url, target, label, budget)
    await anyio.to_thread.run_sync(_verify, target, item, label)
    if item.decompress:
        try:
            await anyio.to_thread.run_sync(unpack, target, target.parent, label, budget)
        except OSError as exc:
            raise disk_error(f"{label}: unpacking", exc, budget) from exc


async def _fetch(fetch: Fetch, url: str, target: Path, label: str, budget: InputBudget) -> None:
    try:
        written = await fetch(url, target, budget.left)
    except TooLarge as exc:
        raise InputsTooLarge(budget.used + exc.size, budget.limit) from None
    except (ServerUnreachable, ServerFault) as exc:
        raise NodeError(f"{label}: cannot download {url}: {exc}") from exc
    except ServerError as exc:
        raise JobFault(f"{label}: download of {url} failed: {exc.status} {exc.detail}") from exc
    except OSError as exc:
        budget.used += _size_of(target)  # what of it reached the disk before it failed
        raise disk_error(f"{label}: downloading", exc, budget) from exc
    budget.take(written)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def disk_error(doing: str, exc: OSError, budget: InputBudget) -> JobFault | NodeError:
    """Whose fault a failed write while staging is: a full disk is the job's once its
    own bytes are on it (``budget.used``), else the node's; any other error the node's."""
    if exc.errno in DISK_FULL:
        if budget.used > 0:
            return DiskFullByJob(
                f"no space left on device while {doing} "
                f"(the job's inputs had reached {budget.used} bytes)"
            )
        return NodeError(f"{doing}: no space left on device before any input was written")
    return NodeError(f"{doing}: {exc.strerror or exc}")


async def _source_text(
    source: FileSource, target: Path, fetch: Fetch, what: str, budget: InputBudget
) -> str:
    if source.content is not None:
        return source.content
    await _materialise(source, target, fetch, what, budget)
    return await anyio.Path(target).read_text(encoding="utf-8", errors="replace")


async def _materialise(
    source: FileSource, target: Path, fetch: Fetch, what: str, budget: InputBudget
) -> None:
    if source.content is not None:
        await _write(target, source.content.encode(), budget)
    elif source.download_url is not None:
        await _fetch(fetch, source.download_url, target, f"{what} {target.name!r}", budget)


async def _write(target: Path, data: bytes, budget: InputBudget) -> None:
    budget.take(len(data))
    try:
        await anyio.Path(target).write_bytes(data)
    except OSError as exc:
        raise disk_error(f"writing file {target.name!r}", exc, budget) from exc


def _verify(path: Path, item: InputFile, label: str) -> None:
    wanted = [
        (name, value.lower())
        for name, value in (("md5", item.md5), ("sha256", item.sha256))
        if value
    ]
    if not wanted:
        return
    digests = {name: hashlib.new(name) for name, _ in wanted}
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            for digest in digests.values():
                digest.update(chunk)
    for name, value in wanted:
        actual = digests[name].hexdigest()
        if actual != value:
            raise JobFault(f"{label}: {name} mismatch (expected {value}, got {actual})")


def unpack(
    archive: Path, dest: Path, label: str = "archive", budget: InputBudget | None = None
) -> None:
    """Unpack a tar or zip archive into ``dest`` and remove it.

    Refuses (as the job's fault) archives with members that would land outside
    ``dest``: absolute names, ``..``, and links pointing out. Members are unpacked one
    by one, each counted against ``budget`` before (tar: exactly its size is written)
    or while (zip: its bytes as they come out) it is written; nothing is scanned ahead,
    so a bomb stops at the budget, not at the end of its stream.
    """
    budget = budget or InputBudget(1 << 62)
    name = archive.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise JobFault(
            f"{label}: decompress asked but {archive.name!r} is not a tar or zip archive"
        )
    try:
        if name.endswith(".zip"):
            _unzip(archive, dest, label, budget)
        else:
            _untar(archive, dest, label, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise JobFault(f"{label}: cannot unpack {archive.name!r}: {exc}") from None
    archive.unlink()


def _check_member(name: str, dest: Path, label: str) -> None:
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise JobFault(f"{label}: archive member {name!r} escapes the job directory; refused")
    try:
        inside(dest, name)
    except EscapesJobDir:
        raise JobFault(
            f"{label}: archive member {name!r} escapes the job directory; refused"
        ) from None


def _untar(archive: Path, dest: Path, label: str, budget: InputBudget) -> None:
    with tarfile.open(archive) as tar:
        for member in tar:  # read lazily: a bomb is not decompressed ahead of the budget
            _check_member(member.name, dest, label)
            if member.issym() or member.islnk():
                link = str(PurePosixPath(member.name).parent / member.linkname)
                if member.islnk():
                    link = member.linkname
                _check_member(link, dest, label)
            if member.isdev():
                raise JobFault(f"{label}: archive member {member.name!r} is a device; refused")
            # Its size (tar writes exactly that), and a header's worth for every entry:
            # a million empty files cost inodes and time too.
            budget.take(max(member.size if member.isreg() else 0, tarfile.BLOCKSIZE))
            # Checked above; the "data" filter refuses what slipped through.
            tar.extract(member, dest, filter="data")
            vars(tar)["members"].clear()  # do not keep every header of a huge archive


def _unzip(archive: Path, dest: Path, label: str, budget: InputBudget) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            _check_member(info.filename, dest, label)
        for info in zipped.infolist():
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as source, target.open("wb") as sink:
                while chunk := source.read(COPY_CHUNK):
                    budget.take(len(chunk))  # what comes out, not the header's file_size
                    sink.write(chunk)
