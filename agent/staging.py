"""Staging: put a job's files in place before it starts.

Inputs are downloaded streaming (relative URLs from the job server with the agent's
auth, absolute ones without), checked against md5/sha256 and unpacked when asked;
template files are rendered with the job's ``${variables}``; Sahara mains and libs and
pre/post-process script files are written (executable). What goes wrong is sorted
once: a missing input or a bad checksum or archive is the job's fault
(:class:`JobFault`), a full disk or an unreachable server the node's
(:class:`~executors.base.NodeError`).
"""

from __future__ import annotations

import errno
import hashlib
import stat
import tarfile
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

import anyio

from agent.server.errors import ServerError, ServerFault, ServerUnreachable
from agent.spec import FileSource, InputFile, RunSpec, substitute
from agent.workspace import EscapesJobDir, Workspace, inside
from executors.base import NodeError

Fetch = Callable[[str, Path], Awaitable[int]]
"""Download a URL into a file; returns the byte count. Raises the client's errors."""

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
HASH_CHUNK = 1024 * 1024


class JobFault(Exception):
    """The job's own definition or data is at fault: it ends ERRORED with this text."""


async def stage(spec: RunSpec, workspace: Workspace, fetch: Fetch) -> None:
    """Download inputs, render templates, write extra files into ``workspace.run_dir``."""
    run_dir = workspace.run_dir
    for index, item in enumerate(spec.input_files):
        await _stage_input(item, index, run_dir, fetch)
    for task in spec.template_tasks:
        target = _target(run_dir, task.processed_filename, "templateTasks")
        text = await _source_text(task.source, target, fetch, "template")
        await _write(target, substitute(text, spec.variables).encode())
    executables = list(spec.extra_files)
    for script in (spec.pre_process, spec.post_process):
        if script is not None and script.file is not None and script.filename:
            executables.append((script.filename, script.file))
    for relative, source in executables:
        target = _target(run_dir, relative, "file")
        await _materialise(source, target, fetch, "file")
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)


def _target(run_dir: Path, relative: str, what: str) -> Path:
    try:
        target = inside(run_dir, relative)
    except EscapesJobDir as exc:
        raise JobFault(f"{what} {relative!r}: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


async def _stage_input(item: InputFile, index: int, run_dir: Path, fetch: Fetch) -> None:
    target = _target(run_dir, item.relative_path, f"inputFiles[{index}]")
    label = f"input {item.relative_path!r}"
    await _fetch(fetch, item.download_url, target, label)
    await anyio.to_thread.run_sync(_verify, target, item, label)
    if item.decompress:
        await anyio.to_thread.run_sync(unpack, target, target.parent, label)


async def _fetch(fetch: Fetch, url: str, target: Path, label: str) -> None:
    try:
        await fetch(url, target)
    except (ServerUnreachable, ServerFault) as exc:
        raise NodeError(f"{label}: cannot download {url}: {exc}") from exc
    except ServerError as exc:
        raise JobFault(f"{label}: download of {url} failed: {exc.status} {exc.detail}") from exc
    except OSError as exc:
        raise _os_error(label, exc) from exc


def _os_error(label: str, exc: OSError) -> NodeError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NodeError(f"{label}: disk full while staging")
    return NodeError(f"{label}: {exc.strerror or exc}")


async def _source_text(source: FileSource, target: Path, fetch: Fetch, what: str) -> str:
    if source.content is not None:
        return source.content
    await _materialise(source, target, fetch, what)
    return await anyio.Path(target).read_text(encoding="utf-8", errors="replace")


async def _materialise(source: FileSource, target: Path, fetch: Fetch, what: str) -> None:
    if source.content is not None:
        await _write(target, source.content.encode())
    elif source.download_url is not None:
        await _fetch(fetch, source.download_url, target, f"{what} {target.name!r}")


async def _write(target: Path, data: bytes) -> None:
    try:
        await anyio.Path(target).write_bytes(data)
    except OSError as exc:
        raise _os_error(f"file {target.name!r}", exc) from exc


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


def unpack(archive: Path, dest: Path, label: str = "archive") -> None:
    """Unpack a tar or zip archive into ``dest`` and remove it.

    Refuses (as the job's fault) archives with members that would land outside
    ``dest``: absolute names, ``..``, and links pointing out.
    """
    name = archive.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise JobFault(
            f"{label}: decompress asked but {archive.name!r} is not a tar or zip archive"
        )
    try:
        if name.endswith(".zip"):
            _unzip(archive, dest, label)
        else:
            _untar(archive, dest, label)
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


def _untar(archive: Path, dest: Path, label: str) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member.name, dest, label)
            if member.issym() or member.islnk():
                link = str(PurePosixPath(member.name).parent / member.linkname)
                if member.islnk():
                    link = member.linkname
                _check_member(link, dest, label)
            if member.isdev():
                raise JobFault(f"{label}: archive member {member.name!r} is a device; refused")
        # Members were checked above; the "data" filter refuses what slipped through.
        tar.extractall(dest, members=members, filter="data")


def _unzip(archive: Path, dest: Path, label: str) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            _check_member(name, dest, label)
        zipped.extractall(dest)  # noqa: S202 - every member was checked above
