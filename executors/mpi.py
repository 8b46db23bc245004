"""The MPI executor: the job's command under ``mpiexec``, one rank per allocated core.

Which flags to give depends on the MPI flavour; :func:`detect_flavor` reads it from
``mpiexec --version`` and :func:`build_mpi_command` is the pure decision of the command
line. Environment values never go on the command line (where any user could read them):
Open MPI gets ``-x NAME`` and hydra (MPICH, Intel MPI) ``-genvlist NAME,...``, and both
take the values from mpiexec's own environment, which is the job's. Ranks started on
this host inherit that environment anyway, marker included, and mpiexec runs in a
session of its own, so stopping the run stops every local rank.

Binding, per flavour (``cores`` are the allocated core ids):

- Open MPI 5: ``--map-by pe-list=0,1:ordered --bind-to core`` puts rank i on the i-th
  core (``--cpu-set`` binds every rank to the whole set instead). With more ranks than
  cores, ``--oversubscribe`` and ``--bind-to core:overload-allowed``. With no cores,
  ``--bind-to none`` (Open MPI would otherwise bind to cores 0..n-1, the same ones for
  every job on the node). As root it needs ``--allow-run-as-root``. It refuses to start
  without ``HOME``, so the launcher gets one when the job's environment has none.
- MPICH (hydra): ``-bind-to user:0,1`` (round robin when ranks exceed cores).
- Intel MPI (hydra): ``-genv I_MPI_PIN_PROCESSOR_LIST 0,1``; ``-genv I_MPI_PIN 0`` when
  there are no cores (it pins by default).

Tuning in containers: Open MPI 5 (PRRTE/PMIx) and MPICH run single-node jobs with only
the loopback interface, as long as it is up; with no interface at all PRRTE stops with
"unable to find network interfaces". Settings such as ``OMPI_MCA_*``, ``PRTE_MCA_*`` and
``PMIX_MCA_*`` are read by mpiexec from its environment, which is the job's: add the
patterns to ``run.inherit_env`` (set them in the agent's environment) or to a job's
envVars; per-node launcher flags (``--mca btl self,sm``, ``-iface lo``) go in
``mpi.extra_args``.
"""

from __future__ import annotations

import enum
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from executors.base import MpiNotFoundError, NodeError, PreparedRun, RunHandle
from executors.env import is_credential, run_environment
from executors.local import check_cwd
from executors.process import command_argv, spawn_off_loop

#: Seconds ``mpiexec --version`` may take.
VERSION_TIMEOUT = 30.0

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MpiFlavor(enum.Enum):
    """The MPI implementations whose ``mpiexec`` the agent knows how to drive."""

    OPENMPI = "openmpi"
    MPICH = "mpich"
    INTEL = "intel"


def parse_flavor(name: str) -> MpiFlavor | None:
    """The configured flavour: ``"auto"`` is None (detect), else a :class:`MpiFlavor` value."""
    if name == "auto":
        return None
    try:
        return MpiFlavor(name)
    except ValueError:
        known = ", ".join(["auto", *(f.value for f in MpiFlavor)])
        raise ValueError(f"unknown MPI flavor {name!r} (one of {known})") from None


def detect_flavor(version_text: str) -> MpiFlavor:
    """The flavour from the output of ``mpiexec --version``.

    Intel MPI is checked first: its hydra-based launcher may also mention hydra.
    Raises :class:`MpiNotFoundError` for an unknown launcher.
    """
    if "Intel(R) MPI" in version_text:
        return MpiFlavor.INTEL
    if "Open MPI" in version_text or "OpenRTE" in version_text:
        return MpiFlavor.OPENMPI
    if "HYDRA" in version_text or "MPICH" in version_text:
        return MpiFlavor.MPICH
    first = version_text.strip().splitlines()[0] if version_text.strip() else "(no output)"
    raise MpiNotFoundError(
        f"unrecognised mpiexec (--version says {first!r}); set mpi.flavor to one of "
        + ", ".join(f.value for f in MpiFlavor)
    )


def find_mpiexec(configured: str | None) -> str:
    """The mpiexec to use: the configured path or name, else ``mpiexec`` on PATH, else the
    one beside the agent's Python (``pip install 'node-agent[mpi]'`` puts MPICH's there,
    and a service started by absolute path does not have that directory on PATH)."""
    wanted = configured or "mpiexec"
    found = shutil.which(wanted)
    if found is None and not configured:
        found = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if found is None:
        where = f"mpi.mpiexec = {configured!r} is not" if configured else "no mpiexec"
        raise MpiNotFoundError(
            f"{where} found or executable on this node: install MPI (e.g. pip install "
            "'node-agent[mpi]' for MPICH) or set mpi.mpiexec to the full path of mpiexec"
        )
    return found


def exportable(names: Sequence[str]) -> list[str]:
    """The variable names an MPI launcher can forward (plain identifiers)."""
    return [name for name in names if _NAME.fullmatch(name)]


def _core_list(cores: Sequence[int]) -> str:
    return ",".join(str(core) for core in cores)


def _openmpi_flags(
    ranks: int, names: Sequence[str], cores: Sequence[int], hostfile: str | None, as_root: bool
) -> list[str]:
    flags = ["--allow-run-as-root"] if as_root else []
    for name in names:
        flags += ["-x", name]
    oversubscribed = ranks > len(cores)
    if cores:
        bind = "core:overload-allowed" if oversubscribed else "core"
        flags += ["--map-by", f"pe-list={_core_list(cores)}:ordered", "--bind-to", bind]
    else:
        flags += ["--bind-to", "none"]
    if oversubscribed:
        flags.append("--oversubscribe")
    if hostfile:
        flags += ["--hostfile", hostfile]
    return flags


def _hydra_flags(
    flavor: MpiFlavor, names: Sequence[str], cores: Sequence[int], hostfile: str | None
) -> list[str]:
    flags = ["-genvlist", ",".join(names)]
    if flavor is MpiFlavor.INTEL:
        if cores:
            flags += ["-genv", "I_MPI_PIN_PROCESSOR_LIST", _core_list(cores)]
        else:
            flags += ["-genv", "I_MPI_PIN", "0"]
    elif cores:
        flags += ["-bind-to", f"user:{_core_list(cores)}"]
    if hostfile:
        flags += ["-f", hostfile]
    return flags


def build_mpi_command(
    flavor: MpiFlavor,
    mpiexec: str,
    ranks: int,
    env: Mapping[str, str],
    cores: Sequence[int],
    command: str | Sequence[str],
    hostfile: str | None,
    extra_args: Sequence[str],
    as_root: bool,
) -> list[str]:
    """The full ``mpiexec`` command line for one run (see the module docstring)."""
    names = exportable(list(env))
    if flavor is MpiFlavor.OPENMPI:
        flags = _openmpi_flags(ranks, names, cores, hostfile, as_root)
    else:
        flags = _hydra_flags(flavor, names, cores, hostfile)
    return [mpiexec, "-n", str(ranks), *flags, *extra_args, *command_argv(command)]


def launcher_env(flavor: MpiFlavor, env: Mapping[str, str]) -> dict[str, str]:
    """mpiexec's own environment: the job's, plus what the launcher cannot start without.

    Open MPI fails in ``opal_init`` when ``HOME`` is unset; it gets the agent user's home.
    """
    result = dict(env)
    if flavor is MpiFlavor.OPENMPI and "HOME" not in result:
        result["HOME"] = _home()
    return result


def _home() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def threads_per_rank(cores: int, ranks: int) -> int:
    """Threads each rank may use so that all ranks together fit the cores (at least 1)."""
    return max(1, cores // max(1, ranks))


#: Flavours detected so far, by mpiexec path: ``--version`` runs once per path.
_DETECTED: dict[str, MpiFlavor] = {}


def _version_failed(mpiexec: str, exc: Exception) -> MpiNotFoundError:
    return MpiNotFoundError(f"{mpiexec} --version failed: {exc}")


async def read_version(mpiexec: str) -> str:
    """Output of ``mpiexec --version`` (stdout and stderr); MpiNotFoundError if it fails."""
    try:
        with anyio.fail_after(VERSION_TIMEOUT):
            done = await anyio.run_process(
                [mpiexec, "--version"], check=False, stderr=subprocess.STDOUT, env=_probe_env()
            )
    except (OSError, TimeoutError) as exc:
        raise _version_failed(mpiexec, exc) from exc
    return done.stdout.decode(errors="replace")


def read_version_blocking(mpiexec: str) -> str:
    """:func:`read_version` for synchronous callers (``agent check``)."""
    try:
        done = subprocess.run(
            [mpiexec, "--version"],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_probe_env(),
            timeout=VERSION_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _version_failed(mpiexec, exc) from exc
    return done.stdout.decode(errors="replace")


def flavor_of(mpiexec: str, configured: str = "auto") -> MpiFlavor:
    """The configured flavour, or the one detected for ``mpiexec`` (blocking; cached)."""
    chosen = parse_flavor(configured)
    if chosen is not None:
        return chosen
    if mpiexec not in _DETECTED:
        _DETECTED[mpiexec] = detect_flavor(read_version_blocking(mpiexec))
    return _DETECTED[mpiexec]


def _probe_env() -> dict[str, str]:
    """The agent's environment without its credentials, for running ``--version``."""
    return {name: value for name, value in os.environ.items() if not is_credential(name)}


class MpiExecutor:
    """Runs a command as ``run.ranks`` MPI ranks bound to the run's cores."""

    name = "mpi"

    def __init__(
        self,
        mpiexec: str | None = None,
        flavor: str = "auto",
        extra_args: Sequence[str] = (),
        hostfile: str | None = None,
        agent_env: Mapping[str, str] | None = None,
    ) -> None:
        """Configured like the ``mpi`` config section; ``flavor`` "auto" detects it.

        ``agent_env`` is where inherited variables come from (default: ``os.environ``).
        """
        self._mpiexec = mpiexec
        self._flavor = parse_flavor(flavor)
        self._extra_args = tuple(extra_args)
        self._hostfile = hostfile
        self._agent_env = agent_env

    async def flavor_for(self, mpiexec: str) -> MpiFlavor:
        """The configured flavour, or the one detected for ``mpiexec`` (run once per path)."""
        if self._flavor is not None:
            return self._flavor
        if mpiexec not in _DETECTED:
            _DETECTED[mpiexec] = detect_flavor(await read_version(mpiexec))
        return _DETECTED[mpiexec]

    async def start(self, run: PreparedRun) -> RunHandle:
        """Start mpiexec in its own session; raises NodeError when MPI is unusable here."""
        mpiexec = find_mpiexec(self._mpiexec)
        flavor = await self.flavor_for(mpiexec)
        check_cwd(run.cwd)
        env = run_environment(
            run, self._agent_env, threads=threads_per_rank(len(run.cores), run.ranks)
        )
        argv = build_mpi_command(
            flavor,
            mpiexec,
            run.ranks,
            env,
            sorted(run.cores),
            run.command,
            self._hostfile,
            self._extra_args,
            as_root=(run.user.uid if run.user is not None else os.geteuid()) == 0,
        )
        try:
            return await spawn_off_loop(argv, launcher_env(flavor, env), run, pin=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NodeError(f"cannot start {mpiexec}: {exc}") from exc
