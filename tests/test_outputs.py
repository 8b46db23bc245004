from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from agent.outputs import collect_output, collect_outputs
from agent.spec import OutputSpec


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
