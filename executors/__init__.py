"""How a job's command runs: the executor interface, the registry and the executors.

A new executor (Slurm, containers) is one module with a class satisfying
:class:`Executor` and one :func:`register` call here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from executors.base import (
    MARKER_ENV,
    EndKind,
    Executor,
    LineCallback,
    LineFilter,
    MpiNotFoundError,
    NodeError,
    PreparedRun,
    RunHandle,
    RunResult,
)
from executors.env import job_environment
from executors.local import SubprocessExecutor
from executors.mpi import (
    MpiExecutor,
    MpiFlavor,
    build_mpi_command,
    detect_flavor,
    find_mpiexec,
)
from executors.slurm import SlurmExecutor

__all__ = [
    "MARKER_ENV",
    "EndKind",
    "Executor",
    "ExecutorFactory",
    "LineCallback",
    "LineFilter",
    "MpiExecutor",
    "MpiFlavor",
    "MpiNotFoundError",
    "NodeError",
    "PreparedRun",
    "RunHandle",
    "RunResult",
    "SlurmExecutor",
    "SubprocessExecutor",
    "build_mpi_command",
    "detect_flavor",
    "find_mpiexec",
    "get",
    "job_environment",
    "names",
    "register",
    "select_executor_name",
]

ExecutorFactory = Callable[..., Executor]
"""Builds an executor from keyword options (for MPI: the ``mpi`` config section)."""

_FACTORIES: dict[str, ExecutorFactory] = {}


def register(name: str, factory: ExecutorFactory) -> None:
    """Make an executor available under ``name`` (a later call replaces it)."""
    _FACTORIES[name] = factory


def get(name: str, **options: Any) -> Executor:
    """A new executor of the kind registered as ``name``, built with ``options``."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        known = ", ".join(sorted(_FACTORIES))
        raise LookupError(f"unknown executor {name!r} (known: {known})") from None
    return factory(**options)


def names() -> list[str]:
    """Names of the registered executors."""
    return sorted(_FACTORIES)


def select_executor_name(use_mpi: bool) -> str:
    """Which executor a run needs: ``"mpi"`` when the analysis asks for MPI."""
    return MpiExecutor.name if use_mpi else SubprocessExecutor.name


register(SubprocessExecutor.name, SubprocessExecutor)
register(MpiExecutor.name, MpiExecutor)
register(SlurmExecutor.name, SlurmExecutor)
