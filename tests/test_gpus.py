"""GPUs: the inventory (declared, and NVML where it is absent), what jobs see
(``CUDA_VISIBLE_DEVICES``), fit, and what nodes register on both job servers.

No GPU is needed: GPUs are declared in ``node.gpus``; each job writes down what it sees.
The NVML path runs against the real ``nvidia-ml-py`` on this host, which has no driver.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pynvml
import pytest

from agent.config import GpuDeclaration, load_config
from agent.gpus import (
    Gpu,
    Inventory,
    MemoryMonitor,
    declared,
    device_list,
    from_nvml,
    gpu_env,
    node_facts,
)
from agent.slots import slot_plans, why_no_slot_takes
from tests.agent_harness import Harness, harness, job_writable
from tests.cli_process import agent_process, write_config
from tests.servers import ServerUnderTest

pytestmark = pytest.mark.anyio

TWO_GPUS = [
    {
        "index": 0,
        "uuid": "GPU-aaaa",
        "memory": "80GiB",
        "compute_capability": "9.0",
        "name": "H100",
    },
    {
        "index": 1,
        "uuid": "GPU-bbbb",
        "memory": "80GiB",
        "compute_capability": "9.0",
        "name": "H100",
    },
]


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def seen_by(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8").strip()


def gpu_job(folder: Path, name: str, gpus: int, seconds: float = 0) -> dict[str, Any]:
    command = (
        f'echo "$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$AGENT_GPUS" > {folder}/{name};'
        f" sleep {seconds}"
    )
    hardware: dict[str, Any] = {"coresPerSlot": 1}
    if gpus:
        hardware["gpusPerSlot"] = gpus
    return {"command": command, "hardware": hardware}


# ------------------------------------------------------------ what jobs see


async def test_two_gpu_jobs_run_at_once_on_disjoint_gpus_and_a_cpu_job_sees_none(
    h: Harness, tmp_path: Path
) -> None:
    folder = job_writable(tmp_path)
    first = await h.submit(gpu_job(folder, "first", 1, seconds=1.5))
    second = await h.submit(gpu_job(folder, "second", 1, seconds=1.5))
    cpu = await h.submit(gpu_job(folder, "cpu", 0))
    settings = h.settings(node={"slots": 3, "cores": 2, "gpus": TWO_GPUS})
    reports = await h.run_until_idle(settings)
    assert sorted(report.job for report in reports) == sorted([first, second, cpu])
    assert all(report.outcome.reason.value == "succeeded" for report in reports)
    one, two = seen_by(folder, "first"), seen_by(folder, "second")
    assert {one, two} == {"GPU-aaaa|GPU-aaaa|1", "GPU-bbbb|GPU-bbbb|1"}
    assert seen_by(folder, "cpu") == "|void|0"
    a, b = await h.job(first), await h.job(second)
    assert a.start_time and b.start_time and a.end_time and b.end_time
    assert a.start_time < b.end_time and b.start_time < a.end_time  # at the same time


async def test_a_two_gpu_job_gets_both_and_a_three_gpu_job_is_left_to_others(
    h: Harness, tmp_path: Path
) -> None:
    folder = job_writable(tmp_path)
    too_big = await h.submit(gpu_job(folder, "three", 3))
    both = await h.submit(gpu_job(folder, "both", 2))
    settings = h.settings(node={"gpus": [0, 1]})  # indices only: no UUIDs to give
    async with h.agent(settings, exit_when_idle=True) as agent:
        reports = await agent.run()
    assert [report.job for report in reports] == [both]
    assert seen_by(folder, "both") == "0,1|0,1|2"
    assert agent.why_not_taken(too_big) == "needs 3 gpus, this agent has 2"
    assert [gpu["index"] for gpu in agent.status()["gpus"]] == [0, 1]  # type: ignore[index,union-attr]
    assert b"agent_gpus 2.0" in agent.context.metrics.render()
    left = await h.job(too_big)
    assert left.phase == "CREATED" and left.node is None


@pytest.mark.mpi
async def test_every_mpi_rank_sees_the_jobs_gpus(h: Harness, tmp_path: Path) -> None:
    mpiexec = os.environ.get("AGENT_TEST_MPICH_MPIEXEC")
    if not mpiexec:
        pytest.skip("no mpiexec: set AGENT_TEST_MPICH_MPIEXEC (CI installs the mpich wheel)")
    folder = job_writable(tmp_path)
    job = await h.submit(
        {
            "command": f'echo "$CUDA_VISIBLE_DEVICES" > {folder}/rank-$PMI_RANK',
            "useMpi": True,
            "hardware": {"coresPerSlot": 2, "gpusPerSlot": 1},
        }
    )
    settings = h.settings(node={"cores": 2, "gpus": TWO_GPUS}, mpi={"mpiexec": mpiexec})
    [report] = await h.run_until_idle(settings)
    assert report.job == job and report.outcome.reason.value == "succeeded"
    assert seen_by(folder, "rank-0") == seen_by(folder, "rank-1") == "GPU-aaaa"


# ------------------------------------------------------------ registration


async def generation_pk(h: Harness, capability: str) -> int:
    async with httpx.AsyncClient(base_url=h.server.url, timeout=30) as http:
        login = await http.post(
            "/v1/auth/obtain",
            json={"username": h.server.admin.username, "password": h.server.admin.password},
        )
        reply = await http.post(
            "/v1/hardware/list",
            json={},
            headers={"Authorization": f"Bearer {login.json()['access']}"},
        )
    for row in reply.json():
        if row["min_compute_capability"] <= float(capability) < row["max_compute_capability"]:
            return int(row["pk"])
    raise AssertionError(f"no generation for {capability}: {reply.text}")


async def test_nodes_register_their_gpus_and_update_them_when_they_change(h: Harness) -> None:
    hopper = await generation_pk(h, "9.0")
    gpu_settings = h.settings(
        node={"ip": "127.0.0.31", "slots": 2, "gpus": TWO_GPUS, "memory": 4096}
    )
    async with h.agent(gpu_settings) as agent:
        await agent.register()
    nodes = [await h.admin.get_node(slot.node) for slot in agent.slots]
    assert [node.index for node in nodes] == [0, 1]
    for node in nodes:
        assert node.gpu_mem == 80 * 2**30
        assert node.hardware_generation == hopper
        assert node.cpu_mem == 4096 * 2**20

    ampere = await generation_pk(h, "8.0")
    changed = [{**gpu, "memory": "40GiB", "compute_capability": "8.0"} for gpu in TWO_GPUS]
    async with h.agent(
        h.settings(node={**gpu_settings.node.model_dump(), "gpus": changed})
    ) as again:
        await again.register()
    assert [slot.node for slot in again.slots] == [slot.node for slot in agent.slots]
    for slot in again.slots:
        node = await h.admin.get_node(slot.node)
        assert node.gpu_mem == 40 * 2**30 and node.hardware_generation == ampere


async def test_a_cpu_only_node_registers_nulls(h: Harness) -> None:
    async with h.agent(h.settings(node={"ip": "127.0.0.32", "gpus": []})) as agent:
        await agent.register()
    node = await h.admin.get_node(agent.slots[0].node)
    assert node.gpu_mem is None and node.hardware_generation is None
    assert node.driver_version in (None, "")


async def test_an_unknown_compute_capability_registers_without_a_generation(h: Harness) -> None:
    odd = [{"index": 0, "memory": 2**30, "compute_capability": "99.0"}]
    async with h.agent(h.settings(node={"ip": "127.0.0.33", "gpus": odd})) as agent:
        await agent.register()
    node = await h.admin.get_node(agent.slots[0].node)
    assert node.gpu_mem == 2**30 and node.hardware_generation is None


# ------------------------------------------------------------ the inventory


def test_declared_gpus_from_the_config() -> None:
    settings = load_config(None, overrides={"node": {"gpus": [1, {"index": 0, "memory": "16GB"}]}})
    found = declared(settings.node.gpus)  # type: ignore[arg-type]
    assert found.indices() == [0, 1]
    assert found.by_index(0).memory_bytes == 16 * 10**9
    assert found.how == "2 declared in node.gpus"


def test_nvml_without_a_driver_finds_no_gpu_cleanly() -> None:
    found = from_nvml()  # the real nvidia-ml-py; this host has no NVIDIA driver
    assert found.gpus == () and found.how.startswith("none: NVML unavailable")
    # In the words nvidia-ml-py itself has for it, without importing it.
    with pytest.raises(pynvml.NVMLError) as raised:
        pynvml.nvmlInit()
    assert found.how == f"none: NVML unavailable ({raised.value})"

    def not_installed() -> Any:
        raise ImportError("No module named 'pynvml'")

    assert from_nvml(not_installed).how == "none: nvidia-ml-py is not installed"


def test_nvml_devices_become_gpus() -> None:
    """The NVML calls as nvidia-ml-py names them, answered by a stand-in for a 2-GPU host."""

    class NVMLError(Exception):
        pass

    devices = [
        ("GPU-1111", b"NVIDIA A100", 40 * 2**30, (8, 0)),
        ("GPU-2222", "H100", 80 * 2**30, (9, 0)),
    ]
    nvml = SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: "550.54.15",
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda index: devices[index],
        nvmlDeviceGetUUID=lambda handle: handle[0],
        nvmlDeviceGetName=lambda handle: handle[1],
        nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=handle[2]),
        nvmlDeviceGetCudaComputeCapability=lambda handle: handle[3],
    )
    found = from_nvml(lambda: nvml)
    assert found.source == "nvml"
    reads = []
    used = {0: 5 * 2**30, 1: 7 * 2**30}

    def memory_info(handle: Any) -> SimpleNamespace:
        reads.append(handle[0])
        index = [d[0] for d in devices].index(handle[0])
        return SimpleNamespace(total=handle[2], used=used[index])

    now = [100.0]
    monitor = MemoryMonitor(
        found,
        lambda: SimpleNamespace(**{**vars(nvml), "nvmlDeviceGetMemoryInfo": memory_info}),
        clock=lambda: now[0],
    )
    assert monitor.used() == {0: 5 * 2**30, 1: 7 * 2**30}
    used[0] = 0
    now[0] = 109.0
    assert monitor.used()[0] == 5 * 2**30 and len(reads) == 2  # read at most every 10 s
    now[0] = 110.5
    assert monitor.used()[0] == 0 and len(reads) == 4
    assert MemoryMonitor(declared([0, 1])).used() == {}  # declared GPUs: no NVML to ask
    assert found.gpus == (
        Gpu(0, "GPU-1111", "NVIDIA A100", 40 * 2**30, "8.0"),
        Gpu(1, "GPU-2222", "H100", 80 * 2**30, "9.0"),
    )
    assert found.how == "2 found by NVML (driver 550.54.15)"
    facts = node_facts(found)
    assert (facts.gpu_mem, facts.driver_version, facts.compute_capability) == (
        40 * 2**30,
        "550.54.15",
        "8.0",
    )


def test_device_lists_and_node_facts() -> None:
    with_uuids = [Gpu(0, "GPU-a"), Gpu(3, "GPU-b")]
    assert device_list(with_uuids) == "GPU-a,GPU-b"
    assert device_list([Gpu(0, "GPU-a"), Gpu(3)]) == "0,3"  # UUIDs only when all have one
    assert gpu_env([]) == {
        "CUDA_VISIBLE_DEVICES": "",
        "NVIDIA_VISIBLE_DEVICES": "void",
        "AGENT_GPUS": "0",
    }
    long_driver = Inventory(
        (
            Gpu(0, memory_bytes=1, compute_capability="10.0"),
            Gpu(1, memory_bytes=2, compute_capability="9.0"),
        ),
        "535.104.05-custom-build",
        "x",
    )
    facts = node_facts(long_driver)
    assert facts.driver_version == "535.104.05-custom"[:16] and len(facts.driver_version) == 16
    assert facts.compute_capability == "9.0" and facts.gpu_mem == 1
    assert node_facts(Inventory((), None, "none")) == type(facts)(None, None, None)
    assert GpuDeclaration(index=0, memory="512MiB").memory == 512 * 2**20


# ------------------------------------------------------------ the per-gpu layout


def test_slot_plans() -> None:
    shared = slot_plans(3, 5, [0, 1])
    assert [(plan.index, plan.gpus) for plan in shared] == [(0, None), (1, None), (2, None)]
    per_gpu = slot_plans("per-gpu", 2, [3, 1])
    assert [(plan.index, plan.gpus) for plan in per_gpu] == [(1, (1,)), (3, (3,)), (4, ()), (5, ())]
    assert [plan.takes(0) for plan in per_gpu] == [False, False, True, True]
    assert [plan.takes(1) for plan in per_gpu] == [True, True, False, False]
    assert why_no_slot_takes(per_gpu, 2) == "needs 2 gpus, and each per-gpu slot has 1"
    assert why_no_slot_takes(slot_plans("per-gpu", 0, [0]), 0) == (
        "a CPU job, and this agent has no CPU slots (node.slots = per-gpu, cpu_slots = 0)"
    )
    assert why_no_slot_takes(shared, 7) is None  # the GPU count is checked elsewhere


async def test_per_gpu_slots_register_one_node_per_gpu_and_run_jobs_there(
    h: Harness, tmp_path: Path
) -> None:
    hopper = await generation_pk(h, "9.0")
    folder = job_writable(tmp_path)
    two = await h.submit(gpu_job(folder, "two", 2))
    first = await h.submit(gpu_job(folder, "first", 1, seconds=1))
    second = await h.submit(gpu_job(folder, "second", 1, seconds=1))
    cpu = await h.submit(gpu_job(folder, "cpu", 0))
    settings = h.settings(
        node={"ip": "127.0.0.34", "slots": "per-gpu", "cpu_slots": 1, "gpus": TWO_GPUS, "cores": 2}
    )
    async with h.agent(settings, exit_when_idle=True) as agent:
        reports = await agent.run()
    nodes = {slot.index: await h.admin.get_node(slot.node) for slot in agent.slots}
    assert sorted(nodes) == [0, 1, 2]  # node index = GPU index, then the CPU slot
    assert nodes[0].gpu_mem == nodes[1].gpu_mem == 80 * 2**30
    assert nodes[0].hardware_generation == nodes[1].hardware_generation == hopper
    assert nodes[2].gpu_mem is None and nodes[2].hardware_generation is None
    assert sorted(report.job for report in reports) == sorted([first, second, cpu])
    assert agent.why_not_taken(two) == "needs 2 gpus, and each per-gpu slot has 1"
    index_of = {node.pk: index for index, node in nodes.items()}
    for pk, name in ((first, "first"), (second, "second")):
        index = index_of[(await h.job(pk)).node]  # type: ignore[index]
        uuid = TWO_GPUS[index]["uuid"]
        assert seen_by(folder, name) == f"{uuid}|{uuid}|1"  # the GPU of its node's index
    assert (await h.job(cpu)).node == nodes[2].pk
    assert seen_by(folder, "cpu") == "|void|0"


async def test_per_gpu_without_gpus_or_cpu_slots_is_one_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "agent.toml",
        "http://127.0.0.1:9",
        "node",
        "node",
        node={"slots": "per-gpu", "gpus": []},
    )
    result = agent_process("run", "--config", str(config), timeout=60)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if not line.startswith("{")] == [
        "agent: node.slots = per-gpu, but no GPU (0 declared in node.gpus) and"
        " node.cpu_slots = 0: this agent would have no slot"
    ]
