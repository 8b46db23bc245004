"""The executor registry and the package face."""

from __future__ import annotations

import pytest

import executors
from executors import (
    Executor,
    MpiExecutor,
    PreparedRun,
    RunHandle,
    SubprocessExecutor,
    get,
    names,
    register,
    select_executor_name,
)


@pytest.mark.parametrize(("use_mpi", "name"), [(True, "mpi"), (False, "subprocess")])
def test_select_executor_name(use_mpi: bool, name: str) -> None:
    assert select_executor_name(use_mpi) == name
    assert get(name).name == name


def test_get_builds_with_options() -> None:
    executor = get("mpi", mpiexec="/opt/mpi/bin/mpiexec", flavor="mpich")
    assert isinstance(executor, MpiExecutor)
    assert isinstance(get("subprocess"), SubprocessExecutor)


def test_unknown_name() -> None:
    with pytest.raises(LookupError, match="kubernetes"):
        get("kubernetes")


def test_slurm_is_registered() -> None:
    assert "slurm" in names()
    assert get("slurm", cpus=4).name == "slurm"


def test_register_a_new_executor() -> None:
    class Echo:
        name = "echo-test"

        async def start(self, run: PreparedRun) -> RunHandle:
            raise NotImplementedError

    def factory() -> Executor:
        return Echo()

    register("echo-test", factory)
    assert "echo-test" in names()
    assert get("echo-test").name == "echo-test"


def test_public_names_resolve() -> None:
    for name in executors.__all__:
        assert getattr(executors, name) is not None
