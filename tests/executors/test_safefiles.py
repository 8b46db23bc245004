"""Opening files a job could have touched: FIFOs, devices, sockets, directories and
symlinks are refused by name, at once; a swapped directory component is caught."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
import pytest

from executors.safefiles import (
    NotRegularFile,
    OutsideDirectory,
    describe_mode,
    open_regular,
    read_bounded,
    read_regular,
)

pytestmark = pytest.mark.anyio

T = TypeVar("T")

READ = os.O_RDONLY
APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


async def promptly(call: Callable[[], T]) -> T:
    """``call()`` in a thread, failing the test (not hanging it) if it blocks."""
    with anyio.fail_after(5):
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


async def refusal(path: Path, flags: int, beneath: Path | None = None) -> str:
    with pytest.raises(NotRegularFile) as caught:
        await promptly(partial(open_regular, path, flags, beneath=beneath))
    return caught.value.reason


@pytest.mark.parametrize("flags", [READ, APPEND], ids=["read", "append"])
async def test_a_fifo_is_refused_without_blocking(tmp_path: Path, flags: int) -> None:
    os.mkfifo(tmp_path / "fifo")
    assert await refusal(tmp_path / "fifo", flags) == "is a FIFO"


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd"])
@pytest.mark.parametrize("flags", [READ, APPEND], ids=["read", "append"])
async def test_a_symlink_is_refused(tmp_path: Path, target: str, flags: int) -> None:
    os.symlink(target, tmp_path / "link")
    assert await refusal(tmp_path / "link", flags) == "is a symbolic link"


async def test_a_dangling_symlink_is_not_followed_to_create_a_file(tmp_path: Path) -> None:
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    assert await refusal(tmp_path / "link", APPEND) == "is a symbolic link"
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("flags", [READ, APPEND], ids=["read", "append"])
async def test_a_directory_is_refused(tmp_path: Path, flags: int) -> None:
    (tmp_path / "dir").mkdir()
    assert await refusal(tmp_path / "dir", flags) == "is a directory"


@pytest.mark.parametrize("flags", [READ, APPEND], ids=["read", "append"])
async def test_a_socket_is_refused(tmp_path: Path, flags: int) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
        listener.listen()
        assert await refusal(tmp_path / "sock", flags) == "is a socket"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
async def test_a_device_node_is_refused(tmp_path: Path) -> None:
    os.mknod(tmp_path / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
    assert await refusal(tmp_path / "zero", READ) == "is a character device"


async def test_a_directory_component_swapped_for_a_symlink_is_caught(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "passwd").write_text("mine")
    fd = open_regular(run / "sub" / "passwd", beneath=run)  # what the agent checked
    os.close(fd)
    (run / "sub" / "passwd").unlink()
    (run / "sub").rmdir()
    os.symlink("/etc", run / "sub")  # what the job did next
    with pytest.raises(OutsideDirectory):
        await promptly(partial(open_regular, run / "sub" / "passwd", beneath=run))


async def test_symlinked_directories_inside_are_fine(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "real").mkdir(parents=True)
    (run / "real" / "data").write_text("ok")
    os.symlink(run / "real", run / "alias")
    assert read_regular(run / "alias" / "data", 100, beneath=run) == b"ok"


async def test_a_regular_file_opens_blocking_and_is_created_private(tmp_path: Path) -> None:
    fd = open_regular(tmp_path / "log", APPEND)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
        assert not os.get_inheritable(fd)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        os.write(fd, b"line\n")
    finally:
        os.close(fd)
    assert (tmp_path / "log").read_bytes() == b"line\n"


async def test_missing_files_are_plain_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "none")


async def test_reads_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"0123456789")
    assert read_regular(path, 4) == b"0123"
    assert read_regular(path, 100) == b"0123456789"
    fd = open_regular(path)
    try:
        assert read_bounded(fd, 3, chunk=2) == b"012"
        assert read_bounded(fd, 100) == b"3456789"
    finally:
        os.close(fd)


def test_modes_are_described() -> None:
    assert describe_mode(stat.S_IFIFO) == "is a FIFO"
    assert describe_mode(stat.S_IFBLK) == "is a block device"
    assert describe_mode(stat.S_IFREG) == "is a regular file"
