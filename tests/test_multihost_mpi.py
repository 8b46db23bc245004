"""Multi-host MPI without Slurm: ``mpi.hostfile`` with two "hosts" on this machine.

Each host is a network namespace (its own interface and address on a bridge) and a UTS
namespace (its own hostname, so MPICH counts two nodes and its ranks talk over the
network rather than shared memory). MPICH's hydra reaches them through its ssh launcher;
the launcher executable (``mpi.extra_args``) enters the namespace of the host it is
asked for, where a real one would ssh. The job goes through the agent with the
hostfile, and its two ranks do an allreduce across the "hosts". Needs root (namespaces)
and the MPICH wheel with mpi4py beside it (``make test`` installs both)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.outcome import EndReason
from tests.agent_harness import Harness, harness
from tests.executors.conftest import mpiexec_for
from tests.servers import devserver_server

pytestmark = pytest.mark.anyio

SUBNET = "10.213.{}"

FAKE_SSH = """#!/bin/sh
# ssh stand-in for hydra: run the command on the "host" named, i.e. in its namespaces.
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
host=$1; shift
case "$host" in
{cases}
  *) echo "fake-ssh: unknown host $host" >&2; exit 255;;
esac
exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $ns; $*"
"""

RANK_PROGRAM = """
import socket
from mpi4py import MPI

world = MPI.COMM_WORLD
total = world.allreduce(world.rank + 1)
with open(f"rank-{world.rank}.txt", "w") as out:
    out.write(f"rank {world.rank} of {world.size} on {socket.gethostname()} sum {total}\\n")
"""


@dataclass(frozen=True)
class TwoHosts:
    local_address: str
    hostfile: Path
    launcher: Path
    names: tuple[str, str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces")
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (iproute2, util-linux)")
    tag = f"{os.getpid() % 100000}"
    net = SUBNET.format(os.getpid() % 200 + 20)
    bridge = f"agbr{tag}"
    names = (f"agA{tag}", f"agB{tag}")
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", f"{net}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        cases = []
        for number, name in enumerate(names, start=2):
            _ip("netns", "add", name)
            _ip("link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("link", "set", f"v{name}", "master", bridge, "up")
            _ip("-n", name, "addr", "add", f"{net}.{number}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
            cases.append(f"  {net}.{number}) ns={name};;")
        launcher = tmp_path / "fake-ssh"
        launcher.write_text(FAKE_SSH.replace("{cases}", "\n".join(cases)), encoding="utf-8")
        launcher.chmod(0o755)
        hostfile = tmp_path / "hosts"
        hostfile.write_text(f"{net}.2:1\n{net}.3:1\n", encoding="utf-8")
        yield TwoHosts(f"{net}.1", hostfile, launcher, names)
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)


@pytest.fixture
def mpich_mpiexec() -> str:
    return mpiexec_for("AGENT_TEST_MPICH_MPIEXEC", ("HYDRA", "MPICH"))


@pytest.fixture
def mpi_python(mpich_mpiexec: str) -> Path:
    """The Python beside MPICH's mpiexec, with mpi4py."""
    python = Path(mpich_mpiexec).parent / "python"
    found = subprocess.run(
        [str(python), "-c", "import mpi4py"], capture_output=True, check=False, timeout=60
    )
    if found.returncode != 0:
        pytest.skip(f"needs mpi4py beside {mpich_mpiexec} (make test installs it)")
    return python


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    with devserver_server(tmp_path / "devserver.sqlite3") as server:
        async with harness(server, tmp_path) as value:
            yield value


async def test_two_ranks_on_two_hosts_from_the_hostfile(
    h: Harness, two_hosts: TwoHosts, mpich_mpiexec: str, mpi_python: Path, tmp_path: Path
) -> None:
    python = mpi_python
    program = tmp_path / "ranks.py"
    program.write_text(RANK_PROGRAM, encoding="utf-8")
    job = await h.submit(
        {
            "command": f"{python} {program}",
            "useMpi": True,
            "hardware": {"coresPerSlot": 2},
        },
        outputs=[
            {"name": "rank0", "type": "txt", "path": "rank-0.txt"},
            {"name": "rank1", "type": "txt", "path": "rank-1.txt"},
        ],
    )
    settings = h.settings(
        # Entering a namespace needs root: the launcher runs as the job, so here the
        # job runs as root (a real site's ssh needs no privilege).
        run={"user": "root", "allow_root_jobs": True},
        mpi={
            "mpiexec": mpich_mpiexec,
            "flavor": "mpich",
            "hostfile": str(two_hosts.hostfile),
            "extra_args": [
                "-launcher",
                "ssh",
                "-launcher-exec",
                str(two_hosts.launcher),
                "-localhost",
                two_hosts.local_address,
            ],
        },
    )
    reports = await h.run_until_idle(settings)
    assert [r.outcome.reason for r in reports] == [EndReason.SUCCEEDED], reports
    first, second = two_hosts.names
    assert await h.output(job, "rank0", "txt") == f"rank 0 of 2 on {first} sum 3\n".encode()
    assert await h.output(job, "rank1", "txt") == f"rank 1 of 2 on {second} sum 3\n".encode()
