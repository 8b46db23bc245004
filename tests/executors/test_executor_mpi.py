"""The MPI executor: flavour detection and command lines (tables), real mpiexec runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from agent.jobuser import DEFAULT_JOB_USER
from executors import (
    EndKind,
    MpiExecutor,
    MpiFlavor,
    MpiNotFoundError,
    PreparedRun,
    RunResult,
    build_mpi_command,
    detect_flavor,
    find_mpiexec,
)
from executors.identity import lookup_user
from executors.mpi import exportable, flavor_of, launcher_env, parse_flavor, threads_per_rank

MakeRun = Callable[..., PreparedRun]

OPENMPI_VERSION = (
    "mpiexec (Open MPI) 5.0.11\n\nReport bugs to https://www.open-mpi.org/community/help/\n"
)
OPENMPI4_VERSION = (
    "mpiexec (OpenRTE) 4.1.2\n\nReport bugs to http://www.open-mpi.org/community/help/\n"
)
MPICH_VERSION = "HYDRA build details:\n    Version:                                 5.0.2\n"
INTEL_VERSION = (
    "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619 (id: c2e19c2f3e)\n"
    "Copyright 2003-2023, Intel Corporation.\n"
)


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("text", "flavor"),
    [
        (OPENMPI_VERSION, MpiFlavor.OPENMPI),
        (OPENMPI4_VERSION, MpiFlavor.OPENMPI),
        (MPICH_VERSION, MpiFlavor.MPICH),
        ("MPICH Version: 3.3a2\n", MpiFlavor.MPICH),
        (INTEL_VERSION, MpiFlavor.INTEL),
        (INTEL_VERSION + "HYDRA build details:\n", MpiFlavor.INTEL),
    ],
)
def test_detect_flavor(text: str, flavor: MpiFlavor) -> None:
    assert detect_flavor(text) is flavor


@pytest.mark.parametrize("text", ["", "mpirun (Unknown MPI) 1.0"])
def test_detect_unknown_flavor(text: str) -> None:
    with pytest.raises(MpiNotFoundError, match=r"mpi\.flavor"):
        detect_flavor(text)


@pytest.mark.parametrize(
    ("name", "flavor"),
    [
        ("auto", None),
        ("openmpi", MpiFlavor.OPENMPI),
        ("mpich", MpiFlavor.MPICH),
        ("intel", MpiFlavor.INTEL),
    ],
)
def test_parse_flavor(name: str, flavor: MpiFlavor | None) -> None:
    assert parse_flavor(name) is flavor


def test_parse_unknown_flavor() -> None:
    with pytest.raises(ValueError, match="lam"):
        parse_flavor("lam")


ENV = {"FOO": "secret value", "AGENT_JOB_MARKER": "m"}
X = ["-x", "FOO", "-x", "AGENT_JOB_MARKER"]
GENVLIST = ["-genvlist", "FOO,AGENT_JOB_MARKER"]
SH = ["/bin/sh", "-c", "echo hi"]


@pytest.mark.parametrize(
    ("flavor", "ranks", "cores", "command", "hostfile", "extra", "as_root", "expected"),
    [
        pytest.param(
            MpiFlavor.OPENMPI, 2, [0, 1], "echo hi", None, [], False,
            ["-n", "2", *X, "--map-by", "pe-list=0,1:ordered", "--bind-to", "core", *SH],
            id="openmpi-bound",
        ),
        pytest.param(
            MpiFlavor.OPENMPI, 2, [2, 5], ["./a.out", "x y"], "hosts", ["--mca", "x", "y"], True,
            ["-n", "2", "--allow-run-as-root", *X, "--map-by", "pe-list=2,5:ordered",
             "--bind-to", "core", "--hostfile", "hosts", "--mca", "x", "y", "./a.out", "x y"],
            id="openmpi-root-hostfile-extra-argv",
        ),
        pytest.param(
            MpiFlavor.OPENMPI, 3, [0, 1], "echo hi", None, [], False,
            ["-n", "3", *X, "--map-by", "pe-list=0,1:ordered", "--bind-to",
             "core:overload-allowed", "--oversubscribe", *SH],
            id="openmpi-oversubscribed",
        ),
        pytest.param(
            MpiFlavor.OPENMPI, 2, [], "echo hi", None, [], False,
            ["-n", "2", *X, "--bind-to", "none", "--oversubscribe", *SH],
            id="openmpi-unpinned",
        ),
        pytest.param(
            MpiFlavor.MPICH, 2, [0, 1], "echo hi", None, [], True,
            ["-n", "2", *GENVLIST, "-bind-to", "user:0,1", *SH],
            id="mpich-bound-root-is-fine",
        ),
        pytest.param(
            MpiFlavor.MPICH, 4, [], ["prog"], "hosts", ["-v"], False,
            ["-n", "4", *GENVLIST, "-f", "hosts", "-v", "prog"],
            id="mpich-unpinned-hostfile",
        ),
        pytest.param(
            MpiFlavor.INTEL, 2, [3, 4], "echo hi", "hosts", [], True,
            ["-n", "2", *GENVLIST, "-genv", "I_MPI_PIN_PROCESSOR_LIST", "3,4", "-f", "hosts", *SH],
            id="intel-bound",
        ),
        pytest.param(
            MpiFlavor.INTEL, 2, [], "echo hi", None, [], False,
            ["-n", "2", *GENVLIST, "-genv", "I_MPI_PIN", "0", *SH],
            id="intel-unpinned",
        ),
    ],
)  # fmt: skip
def test_build_mpi_command(
    flavor: MpiFlavor,
    ranks: int,
    cores: list[int],
    command: str | list[str],
    hostfile: str | None,
    extra: list[str],
    as_root: bool,
    expected: list[str],
) -> None:
    argv = build_mpi_command(
        flavor, "/opt/mpi/mpiexec", ranks, ENV, cores, command, hostfile, extra, as_root
    )
    assert argv == ["/opt/mpi/mpiexec", *expected]
    assert "secret value" not in argv  # values travel in the environment, never in argv


def test_exportable_names() -> None:
    assert exportable(["PATH", "A_1", "BASH_FUNC_f%%", "1X", "a=b"]) == ["PATH", "A_1"]


@pytest.mark.parametrize(
    ("cores", "ranks", "threads"), [(4, 4, 1), (8, 2, 4), (0, 2, 1), (3, 2, 1), (2, 0, 2)]
)
def test_threads_per_rank(cores: int, ranks: int, threads: int) -> None:
    assert threads_per_rank(cores, ranks) == threads


def test_launcher_env_gives_open_mpi_a_home() -> None:
    assert "HOME" in launcher_env(MpiFlavor.OPENMPI, {"A": "1"})
    assert launcher_env(MpiFlavor.OPENMPI, {"HOME": "/job"})["HOME"] == "/job"
    assert launcher_env(MpiFlavor.MPICH, {"A": "1"}) == {"A": "1"}


def test_unusable_mpiexec_is_a_node_error(tmp_path: Path) -> None:
    broken = tmp_path / "mpiexec"
    broken.write_text("#!/bin/sh\necho 'mpirun (Unknown MPI) 1.0'\n")
    broken.chmod(0o755)
    with pytest.raises(MpiNotFoundError, match=r"mpi\.flavor"):
        flavor_of(str(broken))
    with pytest.raises(MpiNotFoundError, match="--version failed"):
        flavor_of(str(tmp_path / "missing"))


def test_find_mpiexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_mpiexec(str(fake)) == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_mpiexec(None) == str(fake)
    with pytest.raises(MpiNotFoundError, match=r"mpi\.mpiexec"):
        find_mpiexec(str(tmp_path / "nope"))
    # Neither on PATH nor beside the Python running the agent (`make demo` puts MPICH's
    # mpiexec beside the venv's python, so point that at an empty folder too).
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty" / "python"))
    with pytest.raises(MpiNotFoundError, match="no mpiexec"):
        find_mpiexec(None)


def test_find_mpiexec_beside_the_agents_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service started by absolute path finds the `[mpi]` extra's mpiexec without PATH."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    beside = venv_bin / "mpiexec"
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert find_mpiexec(None) == str(beside)


@pytest.mark.anyio
async def test_missing_mpiexec_is_a_node_error(make_run: MakeRun, tmp_path: Path) -> None:
    with pytest.raises(MpiNotFoundError):
        await MpiExecutor(mpiexec=str(tmp_path / "nope")).start(make_run("true", ranks=2))


# --------------------------------------------------------------------- real mpiexec


@pytest.fixture(params=["mpich", "openmpi"])
def mpiexec(request: pytest.FixtureRequest) -> tuple[str, MpiFlavor]:
    path: str = request.getfixturevalue(f"{request.param}_mpiexec")
    return path, MpiFlavor(request.param)


@pytest.mark.anyio
@pytest.mark.mpi
async def test_flavor_detected_from_the_real_mpiexec(mpiexec: tuple[str, MpiFlavor]) -> None:
    path, flavor = mpiexec
    with anyio.fail_after(30):
        assert await MpiExecutor(mpiexec=path).flavor_for(path) is flavor
    assert flavor_of(path) is flavor
    assert flavor_of(path, "intel") is MpiFlavor.INTEL


@pytest.mark.anyio
@pytest.mark.mpi
@pytest.mark.usefixtures("no_leftovers")
async def test_two_ranks_write_their_files(
    mpiexec: tuple[str, MpiFlavor], make_run: MakeRun, tmp_path: Path
) -> None:
    path, _ = mpiexec
    command = 'echo "$MY_VALUE" > "rank-${PMI_RANK:-$OMPI_COMM_WORLD_RANK}.txt"'
    run = make_run(command, ranks=2, cores=frozenset(), job_env={"MY_VALUE": "from-the-job"})
    with anyio.fail_after(60):
        result = await (await MpiExecutor(mpiexec=path).start(run)).wait()
    assert result.succeeded, (tmp_path / "job.log").read_text()
    for rank in (0, 1):
        assert (tmp_path / f"rank-{rank}.txt").read_text() == "from-the-job\n"


@pytest.mark.anyio
@pytest.mark.mpi
async def test_ranks_are_bound_to_the_allocated_cores(
    mpiexec: tuple[str, MpiFlavor], make_run: MakeRun
) -> None:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        pytest.skip("needs two usable cores")
    path, _ = mpiexec
    cores = frozenset(available[:2])
    lines: list[str] = []
    script = "import os; print(sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'])"
    run = make_run(["python3", "-c", script], ranks=2, cores=cores, on_line=lines.append)
    with anyio.fail_after(60):
        result = await (await MpiExecutor(mpiexec=path).start(run)).wait()
    assert result.succeeded, lines
    assert sorted(lines) == sorted(f"[{core}] 1" for core in cores)


@pytest.mark.anyio
@pytest.mark.mpi
@pytest.mark.usefixtures("no_leftovers")
async def test_stop_leaves_no_rank_alive(
    mpiexec: tuple[str, MpiFlavor],
    make_run: MakeRun,
    is_alive: Callable[[int], bool],
    marked: Callable[[str], list[int]],
) -> None:
    path, _ = mpiexec
    rank_pids: list[int] = []
    ready = anyio.Event()

    def on_line(line: str) -> None:
        if line.startswith("ready "):
            rank_pids.append(int(line.split()[1]))
            if len(rank_pids) == 2:
                ready.set()

    run = make_run("echo ready $$; exec sleep 1000", ranks=2, on_line=on_line, kill_grace=2.0)
    handle = await MpiExecutor(mpiexec=path).start(run)
    results: list[RunResult] = []

    async def wait() -> None:
        results.append(await handle.wait())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await ready.wait()
            assert all(is_alive(pid) for pid in rank_pids)
            began = time.monotonic()
            await handle.stop()
    assert results[0].kind is EndKind.STOPPED
    assert time.monotonic() - began < 10
    assert not [pid for pid in rank_pids if is_alive(pid)]
    assert marked(run.marker) == []


HELLO_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, sum = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d sum %d\n", rank, size, sum);
    MPI_Finalize();
    return 0;
}
"""


@pytest.mark.anyio
@pytest.mark.mpi
async def test_a_real_mpi_program_communicates(
    mpiexec: tuple[str, MpiFlavor], make_run: MakeRun, tmp_path: Path
) -> None:
    path, _ = mpiexec
    mpicc = Path(path).with_name("mpicc")
    source = tmp_path / "hello.c"
    source.write_text(HELLO_C)
    with anyio.fail_after(120):
        built = await anyio.run_process(
            [str(mpicc), str(source), "-o", str(tmp_path / "hello")], check=False
        )
    if built.returncode != 0:
        pytest.skip(f"cannot build an MPI program with {mpicc}: {built.stderr.decode()[-300:]}")
    lines: list[str] = []
    run = make_run(["./hello"], ranks=2, on_line=lines.append)
    with anyio.fail_after(60):
        result = await (await MpiExecutor(mpiexec=path).start(run)).wait()
    assert result.succeeded, lines
    assert sorted(lines) == ["rank 0 of 2 sum 1", "rank 1 of 2 sum 1"]


def test_mpiexec_beside_the_agents_python_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pip install 'node-agent[mpi]'` puts mpiexec next to python, maybe not on PATH."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "mpiexec"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    assert find_mpiexec(None) == str(fake)
    with pytest.raises(MpiNotFoundError):
        find_mpiexec("/nonexistent/mpiexec")


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root runs ranks as another user")
async def test_ranks_run_as_the_job_user(
    mpiexec: tuple[str, MpiFlavor], make_run: MakeRun, tmp_path: Path
) -> None:
    """mpiexec, its proxies and every rank run as the job account (Open MPI then needs
    no --allow-run-as-root, and would refuse to run as root without it)."""
    path, _ = mpiexec
    user = lookup_user(DEFAULT_JOB_USER)
    cwd = tmp_path / "job"
    cwd.mkdir()
    os.chown(cwd, user.uid, user.gid)
    lines: list[str] = []
    run = make_run(
        'echo "uid=$(id -u) gid=$(id -g) home=$HOME" | tee "rank-$$"',
        ranks=2,
        cwd=cwd,
        user=user,
        on_line=lines.append,
    )
    with anyio.fail_after(60):
        result = await (await MpiExecutor(mpiexec=path).start(run)).wait()
    assert result.succeeded, lines
    assert lines == [f"uid={user.uid} gid={user.gid} home={user.home}"] * 2
    assert {file.stat().st_uid for file in cwd.iterdir()} == {user.uid}
