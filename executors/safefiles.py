"""Opening files a job could have touched, so that whatever it put there is harmless.

A job is hostile code. In place of a file the agent reads or writes it may leave a FIFO
(an open or a read that never returns), a device (``/dev/zero``: an endless stream), a
socket, a directory, or a symlink to a file it may not read itself (``/etc/shadow``).
:func:`open_regular` opens without following a final symlink and without blocking,
then checks with ``fstat`` on the opened descriptor (no check-then-open race) that it
is a regular file and, given ``beneath``, that it really lies inside that directory (a
directory component swapped for a symlink between a check and the open is caught by
where the descriptor points, ``/proc/self/fd``). :func:`read_bounded` reads at most a
given number of bytes, so a file that grows while it is read cannot grow the agent.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

__all__ = [
    "NotRegularFile",
    "OutsideDirectory",
    "UnsafeFile",
    "describe_mode",
    "open_regular",
    "read_bounded",
    "read_regular",
]

#: Errors an open with ``O_NOFOLLOW | O_NONBLOCK`` gives for something not a regular
#: file: a final symlink (ELOOP), a directory opened for writing (EISDIR), a FIFO
#: without a reader opened for writing or a socket (ENXIO), a busy device (EBUSY...).
_NOT_A_FILE_ERRNOS = frozenset({errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EBUSY, errno.ENODEV})


class UnsafeFile(OSError):
    """A path the agent refuses to read or write; ``reason`` says why, for humans."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"

    def __reduce__(self) -> tuple[type[UnsafeFile], tuple[str, str]]:
        return type(self), (self.path, self.reason)


class NotRegularFile(UnsafeFile):
    """Not a regular file: ``reason`` is "is a FIFO", "is a directory", "is a symbolic
    link", "is a character device", ..."""


class OutsideDirectory(UnsafeFile):
    """The opened file lies outside the directory it had to be in (a symlink on the way)."""


def describe_mode(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, as "is a ..." text."""
    kinds = (
        (stat.S_ISREG, "is a regular file"),
        (stat.S_ISDIR, "is a directory"),
        (stat.S_ISLNK, "is a symbolic link"),
        (stat.S_ISFIFO, "is a FIFO"),
        (stat.S_ISSOCK, "is a socket"),
        (stat.S_ISCHR, "is a character device"),
        (stat.S_ISBLK, "is a block device"),
    )
    for test, text in kinds:
        if test(mode):
            return text
    return "is not a regular file"


def open_regular(
    path: Path | str, flags: int = os.O_RDONLY, *, beneath: Path | None = None, mode: int = 0o600
) -> int:
    """Open ``path`` with ``flags`` (plus ``O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC``) and
    return the descriptor of a regular file, in blocking mode unless ``flags`` asked for
    ``O_NONBLOCK``; ``mode`` is used when ``flags`` has ``O_CREAT``.

    Raises :class:`NotRegularFile` when ``path`` is a symlink, FIFO, socket, device or
    directory, :class:`OutsideDirectory` when ``beneath`` is given and the opened file
    does not lie inside it (``beneath`` resolved), and :class:`OSError` otherwise (no
    such file, permission denied). The caller closes the descriptor.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in _NOT_A_FILE_ERRNOS:
            _raise_if_not_regular(path)
        raise
    try:
        _check_regular(fd, path)
        if beneath is not None:
            _check_beneath(fd, path, beneath)
        if not flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(fd: int, path: Path | str) -> None:
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        raise NotRegularFile(path, describe_mode(kind))


def _raise_if_not_regular(path: Path | str) -> None:
    """After a failed open: name what is there, when it is no regular file."""
    try:
        kind = os.lstat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(kind):
        raise NotRegularFile(path, describe_mode(kind)) from None


def _check_beneath(fd: int, path: Path | str, beneath: Path) -> None:
    root = beneath.resolve()
    where = Path(os.readlink(f"/proc/self/fd/{fd}"))
    if where != root and root not in where.parents:
        raise OutsideDirectory(path, f"leads outside {root}")


def read_bounded(fd: int, limit: int, chunk: int = 64 * 1024) -> bytes:
    """Up to ``limit`` bytes from ``fd``'s current position (fewer at end of file)."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        data = os.read(fd, min(chunk, left))
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def read_regular(path: Path | str, limit: int, *, beneath: Path | None = None) -> bytes:
    """The first bytes of the regular file ``path``: at most ``limit`` and at most the
    size it had when opened (:func:`open_regular` raises for anything else)."""
    fd = open_regular(path, os.O_RDONLY, beneath=beneath)
    try:
        return read_bounded(fd, min(limit, os.fstat(fd).st_size))
    finally:
        os.close(fd)
