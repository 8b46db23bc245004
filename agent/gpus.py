"""This host's GPUs: found with NVML (``nvidia-ml-py``) or named in ``node.gpus``.

``node.gpus = "auto"`` asks NVML for each device's index, UUID, name, total memory and
compute capability, and the driver version. A host without the library, without a
driver or without devices has no GPUs, said in one line (``agent check``), never an
error. A list in the config replaces NVML (containers without the driver's library,
or to hand jobs only some devices): ``[0, 1]``, or entries with ``memory``,
``compute_capability``, ``name`` and ``uuid``.

Jobs see their GPUs as ``CUDA_VISIBLE_DEVICES``: UUIDs when every assigned GPU has one
(they name the same device whatever the enumeration order, ``CUDA_DEVICE_ORDER`` or
MIG), else indices; ``NVIDIA_VISIBLE_DEVICES`` gets the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from agent.config import GpuDeclaration

DRIVER_VERSION_LIMIT = 16
"""The server's ``driver_version`` holds at most 16 characters."""


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str | None = None
    name: str = ""
    memory_bytes: int | None = None
    compute_capability: str | None = None


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...]
    driver_version: str | None
    how: str
    """How they were found, or why there are none (for ``agent check``)."""
    source: str = "config"
    """``nvml`` when NVML found them (it can then say how much memory is in use)."""

    def indices(self) -> list[int]:
        return [gpu.index for gpu in self.gpus]

    def subset(self, indices: tuple[int, ...] | None) -> Inventory:
        """These GPUs only (None: all of them)."""
        if indices is None:
            return self
        chosen = tuple(gpu for gpu in self.gpus if gpu.index in indices)
        return Inventory(chosen, self.driver_version, self.how, self.source)

    def by_index(self, index: int) -> Gpu:
        return next(gpu for gpu in self.gpus if gpu.index == index)


def declared(entries: Sequence[int | GpuDeclaration]) -> Inventory:
    """The GPUs ``node.gpus`` lists."""
    gpus = []
    for entry in entries:
        if isinstance(entry, int):
            gpus.append(Gpu(entry))
        else:
            memory = entry.memory if isinstance(entry.memory, int) else None
            gpus.append(Gpu(entry.index, entry.uuid, entry.name, memory, entry.compute_capability))
    gpus.sort(key=lambda gpu: gpu.index)
    return Inventory(tuple(gpus), None, f"{len(gpus)} declared in node.gpus")


NVML_LIBRARY = "libnvidia-ml.so.1"
"""The NVIDIA driver's NVML library, as ``nvidia-ml-py`` loads it on Linux."""


class NvmlLibraryMissing(Exception):
    """The NVML library cannot be loaded (no NVIDIA driver here)."""


def _load_nvml() -> ModuleType:
    """``nvidia-ml-py``, once the NVML library it needs loads: a host without the
    NVIDIA driver is told so without importing the module (7,500 lines, about 10 ms of
    each start of the agent); :class:`NvmlLibraryMissing` then."""
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError as exc:
        raise NvmlLibraryMissing(str(exc)) from None
    return importlib.import_module("pynvml")


def from_nvml(load: Any = _load_nvml) -> Inventory:
    """Ask NVML; no library, no driver or no device is an inventory without GPUs."""
    try:
        nvml = load()
    except ImportError:
        return Inventory((), None, "none: nvidia-ml-py is not installed")
    except NvmlLibraryMissing:  # the words nvidia-ml-py's nvmlInit() would have said
        return Inventory((), None, "none: NVML unavailable (NVML Shared Library Not Found)")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return Inventory((), None, f"none: NVML unavailable ({exc})")
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                Gpu(
                    index,
                    _text(nvml.nvmlDeviceGetUUID(handle)),
                    _text(nvml.nvmlDeviceGetName(handle)),
                    int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    f"{major}.{minor}",
                )
            )
    except nvml.NVMLError as exc:
        return Inventory((), None, f"none: NVML failed ({exc})")
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
    how = f"{len(gpus)} found by NVML (driver {driver})" if gpus else "none: NVML sees no GPU"
    return Inventory(tuple(gpus), driver, how, "nvml")


MEMORY_READ_SECONDS = 10.0
"""GPU memory in use is read from NVML at most this often (``/status``, ``/metrics``)."""


class MemoryMonitor:
    """Memory in use per GPU, from NVML, cached for :data:`MEMORY_READ_SECONDS`.

    Only GPUs found by NVML are read; declared GPUs (no NVML) report nothing."""

    def __init__(
        self,
        found: Inventory,
        load: Any = _load_nvml,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._found = found
        self._load = load
        self._clock = clock
        self._read_at: float | None = None
        self._used: dict[int, int] = {}

    @property
    def enabled(self) -> bool:
        return self._found.source == "nvml" and bool(self._found.gpus)

    def used(self) -> dict[int, int]:
        """Bytes in use per GPU index (empty without NVML)."""
        if not self.enabled:
            return {}
        now = self._clock()
        if self._read_at is not None and now - self._read_at < MEMORY_READ_SECONDS:
            return self._used
        self._read_at = now
        self._used = self._read()
        return self._used

    def _read(self) -> dict[int, int]:
        try:
            nvml = self._load()
        except (ImportError, NvmlLibraryMissing):
            return {}
        try:
            nvml.nvmlInit()
        except nvml.NVMLError:
            return {}
        try:
            return {
                gpu.index: int(
                    nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(gpu.index)).used
                )
                for gpu in self._found.gpus
            }
        except nvml.NVMLError:
            return {}
        finally:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def inventory(setting: Literal["auto"] | Sequence[int | GpuDeclaration]) -> Inventory:
    return from_nvml() if setting == "auto" else declared(setting)


def device_list(gpus: Sequence[Gpu]) -> str:
    """``CUDA_VISIBLE_DEVICES`` for ``gpus``: their UUIDs when all have one, else indices;
    empty for none (a CPU job then cannot open a GPU by accident)."""
    if gpus and all(gpu.uuid for gpu in gpus):
        return ",".join(str(gpu.uuid) for gpu in gpus)
    return ",".join(str(gpu.index) for gpu in gpus)


def gpu_env(gpus: Sequence[Gpu]) -> dict[str, str]:
    """What a job is told about its GPUs."""
    devices = device_list(gpus)
    return {
        "CUDA_VISIBLE_DEVICES": devices,
        "NVIDIA_VISIBLE_DEVICES": devices if gpus else "void",
        "AGENT_GPUS": str(len(gpus)),
    }


@dataclass(frozen=True)
class NodeFacts:
    """What a node registers about its GPUs (nulls for a CPU-only node)."""

    gpu_mem: int | None
    driver_version: str | None
    compute_capability: str | None


def node_facts(found: Inventory) -> NodeFacts:
    """A node owns all of this host's GPUs: it registers the smallest GPU's memory (what
    any job there can count on per GPU), the driver version (cut to the server's 16
    characters) and the lowest compute capability (its hardware generation)."""
    if not found.gpus:
        return NodeFacts(None, None, None)
    memories = [gpu.memory_bytes for gpu in found.gpus if gpu.memory_bytes is not None]
    capabilities = [gpu.compute_capability for gpu in found.gpus if gpu.compute_capability]
    lowest = min(capabilities, key=_capability_key) if capabilities else None
    driver = found.driver_version[:DRIVER_VERSION_LIMIT] if found.driver_version else None
    return NodeFacts(min(memories) if memories else None, driver, lowest)


def _capability_key(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)
