from __future__ import annotations

import os
import socket
import tarfile
from functools import partial
from pathlib import Path

import anyio
import pytest

from agent.outputs import CollectedOutput, collect_output, collect_outputs, upload_output
from agent.server import ServerClient
from agent.spec import OutputSpec
from executors.safefiles import NotRegularFile


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    (tmp_path / "packed").mkdir()
    return path


def test_single_file(run_dir: Path) -> None:
    (run_dir / "model.bin").write_bytes(b"m")
    item = collect_output(
        OutputSpec("model", "bin", "model.bin"), run_dir, run_dir.parent / "packed"
    )
    assert item.problem is None and item.file is not None
    assert item.file.read_bytes() == b"m"


def test_glob_with_several_matches_becomes_one_tarball(run_dir: Path) -> None:
    for rank in range(3):
        (run_dir / f"rank-{rank}.txt").write_text(str(rank))
    item = collect_output(
        OutputSpec("ranks", "tar.gz", "rank-*.txt"), run_dir, run_dir.parent / "packed"
    )
    assert item.file is not None and item.file.name.endswith(".tar.gz")
    with tarfile.open(item.file) as tar:
        assert sorted(tar.getnames()) == ["rank-0.txt", "rank-1.txt", "rank-2.txt"]


def test_missing(run_dir: Path) -> None:
    item = collect_output(
        OutputSpec("model", "bin", "model.bin"), run_dir, run_dir.parent / "packed"
    )
    assert item.problem == "missing"
    assert (
        collect_output(OutputSpec("x", "y", "*.none"), run_dir, run_dir.parent / "packed").problem
        == "missing"
    )


@pytest.mark.parametrize("path", ["../secret.txt", "link.txt", "linkdir/secret.txt"])
def test_paths_leading_out_are_refused(run_dir: Path, path: str) -> None:
    secret = run_dir.parent / "secret.txt"
    secret.write_text("do not upload")
    os.symlink(secret, run_dir / "link.txt")
    os.symlink(run_dir.parent, run_dir / "linkdir")
    item = collect_output(OutputSpec("leak", "txt", path), run_dir, run_dir.parent / "packed")
    assert item.file is None
    assert item.problem is not None and item.problem.startswith("refused")


def test_directory_tarball_skips_symlinks_leading_out(run_dir: Path) -> None:
    (run_dir / "results").mkdir()
    (run_dir / "results" / "a.txt").write_text("a")
    (run_dir.parent / "secret.txt").write_text("s")
    os.symlink(run_dir.parent / "secret.txt", run_dir / "results" / "leak.txt")
    item = collect_output(
        OutputSpec("results", "tar.gz", "results"), run_dir, run_dir.parent / "packed"
    )
    assert item.file is not None
    with tarfile.open(item.file) as tar:
        assert sorted(tar.getnames()) == ["results", "results/a.txt"]


def test_a_symlink_loop_is_refused_not_fatal(run_dir: Path) -> None:
    os.symlink(run_dir / "b", run_dir / "a")
    os.symlink(run_dir / "a", run_dir / "b")
    item = collect_output(OutputSpec("loop", "txt", "a"), run_dir, run_dir.parent / "packed")
    assert item.file is None
    assert item.problem is not None and item.problem.startswith("refused")


@pytest.mark.anyio
async def test_a_loop_inside_a_packed_directory_is_not_fatal(run_dir: Path) -> None:
    (run_dir / "results").mkdir()
    secret = run_dir / "results" / "locked.txt"
    secret.write_text("x")
    os.symlink(run_dir / "results" / "x", run_dir / "results" / "y")
    os.symlink(run_dir / "results" / "y", run_dir / "results" / "x")
    collected = await collect_outputs(
        (OutputSpec("results", "tar.gz", "results"),), run_dir, run_dir.parent / "packed"
    )
    (item,) = collected
    assert item.file is not None
    with tarfile.open(item.file) as tar:
        assert sorted(tar.getnames()) == ["results", "results/locked.txt"]


# ------------------------------------------------------------ what a hostile job leaves


async def collect_promptly(spec: OutputSpec, run_dir: Path) -> CollectedOutput:
    """Collect one output; a FIFO that blocked the agent would fail here, not hang."""
    with anyio.fail_after(5):
        (item,) = await collect_outputs((spec,), run_dir, run_dir.parent / "packed")
    return item


@pytest.mark.anyio
@pytest.mark.parametrize("pattern", ["out.txt", "out.*"])
async def test_a_fifo_output_is_refused_promptly(run_dir: Path, pattern: str) -> None:
    os.mkfifo(run_dir / "out.txt")
    item = await collect_promptly(OutputSpec("out", "txt", pattern), run_dir)
    assert item.file is None
    assert item.problem == "refused: 'out.txt' is a FIFO"


@pytest.mark.anyio
async def test_a_socket_output_is_refused(run_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(run_dir / "out.sock"))
        item = await collect_promptly(OutputSpec("out", "bin", "out.sock"), run_dir)
    assert item.file is None and item.problem == "refused: 'out.sock' is a socket"


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero"])
async def test_a_symlink_to_a_file_of_the_host_is_refused(run_dir: Path, target: str) -> None:
    os.symlink(target, run_dir / "out.txt")
    item = await collect_promptly(OutputSpec("out", "txt", "out.txt"), run_dir)
    assert item.file is None
    assert item.problem == "refused: 'out.txt' leads outside the job directory"


@pytest.mark.anyio
async def test_a_symlink_to_a_file_inside_is_uploaded_as_that_file(run_dir: Path) -> None:
    (run_dir / "data.txt").write_text("inside")
    os.symlink("data.txt", run_dir / "out.txt")
    item = await collect_promptly(OutputSpec("out", "txt", "out.txt"), run_dir)
    assert item.file == (run_dir / "data.txt").resolve() and item.within == run_dir.resolve()


@pytest.mark.anyio
async def test_a_packed_directory_keeps_only_regular_files_from_inside(run_dir: Path) -> None:
    results = run_dir / "results"
    (results / "sub").mkdir(parents=True)
    (results / "a.txt").write_text("a")
    (results / "sub" / "b.txt").write_text("b")
    os.mkfifo(results / "fifo")
    os.symlink("/etc/passwd", results / "passwd")
    os.symlink("/dev/zero", results / "zero")
    os.symlink("/etc", results / "etc")
    os.symlink("a.txt", results / "alias.txt")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(results / "sock"))
        item = await collect_promptly(OutputSpec("results", "tar.gz", "results"), run_dir)
    assert item.file is not None and item.within == run_dir.parent / "packed"
    with tarfile.open(item.file) as tar:
        assert sorted(tar.getnames()) == [
            "results",
            "results/a.txt",
            "results/alias.txt",
            "results/sub",
            "results/sub/b.txt",
        ]
        alias = tar.extractfile("results/alias.txt")
        assert alias is not None and alias.read() == b"a"


def test_the_archive_is_never_written_through_a_symlink(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    packed = run_dir.parent / "packed"
    os.symlink(victim, packed / "results.tar.gz.tar.gz")
    (run_dir / "results").mkdir()
    (run_dir / "results" / "a.txt").write_text("a")
    item = collect_output(OutputSpec("results", "tar.gz", "results"), run_dir, packed)
    assert item.file == packed / "results.tar.gz.tar.gz" and not item.file.is_symlink()
    assert victim.read_text() == "keep"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["fifo", "link", "dir"])
async def test_upload_refuses_what_is_no_regular_file_without_sending(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "out.txt"
    {"fifo": os.mkfifo, "link": partial(os.symlink, "/etc/passwd"), "dir": os.mkdir}[kind](path)
    async with ServerClient("http://127.0.0.1:9", "nobody", "nothing") as client:
        with anyio.fail_after(5), pytest.raises(NotRegularFile):
            await upload_output(client, 1, 1, "out", "txt", path)


def test_a_dangling_symlink_is_missing(run_dir: Path) -> None:
    os.symlink("nowhere.txt", run_dir / "out.txt")
    item = collect_output(OutputSpec("out", "txt", "out.txt"), run_dir, run_dir.parent / "packed")
    assert item.file is None and item.problem == "missing"
