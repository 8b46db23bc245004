"""A cgroup v2 per run, when the agent has one delegated: memory limit, OOM, kill-all.

The agent can use cgroups when its own cgroup (the ``0::/path`` line of
``/proc/self/cgroup``, under a ``cgroup2`` mount) has the ``memory`` controller, is
writable, and is the agent's to manage: the root of a cgroup namespace (a container), or
marked delegated by systemd (``Delegate=yes`` sets the ``trusted.delegate`` xattr,
systemd ≥ 251). :func:`detect_cgroup` says whether that holds, and why not.

Using it (:func:`job_cgroup_base`, once per agent process): a cgroup that holds processes
cannot hand controllers to children ("no internal processes"), so the agent first moves
itself into the leaf ``<base>/agent``, then enables ``+memory`` in
``<base>/cgroup.subtree_control``. Each run then gets ``<base>/agent-job-<marker>``
(:class:`JobCgroup`) with ``memory.max`` = the limit, ``memory.swap.max`` = 0 (a limit
that may spill into swap is no limit) and ``memory.oom.group`` = 1 (an OOM kills the whole
run, never half of it). The spawned process is written into its ``cgroup.procs`` right
after ``Popen`` returns (see :func:`executors.process.place` for why), its children
are inherited from then on. ``memory.events`` ``oom_kill`` says the kernel killed the run
for memory, ``memory.peak`` (Linux ≥ 5.19) its peak, ``cpu.stat`` ``usage_usec`` the CPU of
everything that ran in it, and ``cgroup.kill`` (Linux ≥ 5.14) kills every process in it,
including ones that left the session and cleared the marker variable.

The parsers and :func:`choose_guard` are pure; the rest reads and writes cgroupfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MemoryGuard = Literal["cgroup", "rss"]
"""How a run's memory limit is enforced: the kernel (a cgroup) or RSS sampling."""

#: Name of the leaf the agent moves itself into inside its delegated cgroup.
AGENT_LEAF = "agent"

#: Prefix of the cgroup of one run (``agent-job-<marker>``).
JOB_PREFIX = "agent-job-"

#: Seconds :meth:`JobCgroup.remove` keeps trying while the cgroup still has processes.
REMOVE_TIMEOUT = 2.0

_DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")


# ---------------------------------------------------------------------- pure parts


def parse_proc_cgroup(text: str) -> str | None:
    """The cgroup v2 path in a ``/proc/PID/cgroup`` content (its ``0::/path`` line)."""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path
    return None


def parse_cgroup2_mounts(text: str) -> list[tuple[str, Path]]:
    """``(root, mount point)`` of each ``cgroup2`` mount in a ``/proc/PID/mountinfo``.

    A line is ``id parent major:minor root mountpoint options [optional...] - fstype
    source superoptions``; octal escapes (``\\040`` for a space) are decoded.
    """
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if not sep or len(fields) < 5 or after.split()[:1] != ["cgroup2"]:
            continue
        mounts.append((_unescape(fields[3]), Path(_unescape(fields[4]))))
    return mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def locate(path: str, mounts: Iterable[tuple[str, Path]]) -> Path | None:
    """Directory of cgroup ``path`` under the first mount whose root contains it."""
    for mount_root, mount_point in mounts:
        root = mount_root.rstrip("/") or "/"
        if root == "/":
            inside = path
        elif path == root or path.startswith(root + "/"):
            inside = path[len(root) :]
        else:
            continue
        return mount_point / inside.lstrip("/")
    return None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file (``memory.events``, ``cpu.stat``): ``key value`` lines."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def choose_guard(limit: int | None, cgroup_usable: bool) -> MemoryGuard | None:
    """How a run's memory limit is enforced: the kernel when a cgroup is usable, else
    sampling; no limit, no guard (a cgroup may still be used for kill-all and CPU)."""
    if limit is None:
        return None
    return "cgroup" if cgroup_usable else "rss"


def cgroup_name(marker: str) -> str:
    """The run's cgroup name: ``agent-job-<marker>``, with anything but ``[A-Za-z0-9._-]``
    replaced (a cgroup name is a directory name)."""
    return JOB_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", marker)[:200]


# ---------------------------------------------------------------------- detection


@dataclass(frozen=True)
class CgroupDetection:
    """Where the agent's delegated cgroup is, or why there is none."""

    base: Path | None
    reason: str
    """With ``base``: what was found; without: why cgroups are not used."""


def detect_cgroup(
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> CgroupDetection:
    """Whether this process may create cgroups with a memory controller, and where."""
    try:
        path = parse_proc_cgroup(proc_cgroup.read_text())
        mounts = parse_cgroup2_mounts(mountinfo.read_text())
    except OSError as exc:
        return CgroupDetection(None, f"cannot read {exc.filename}: {exc.strerror}")
    if path is None:
        return CgroupDetection(None, "no cgroup v2 hierarchy (no 0:: line in /proc/self/cgroup)")
    if not mounts:
        return CgroupDetection(None, "no cgroup2 file system is mounted")
    base = locate(path, mounts)
    if base is None or not base.is_dir():
        return CgroupDetection(None, f"the agent's cgroup {path} is not under a cgroup2 mount")
    problem = usability_problem(base, path)
    if problem is not None:
        return CgroupDetection(None, problem)
    return CgroupDetection(base, f"cgroup v2 delegated at {base}")


def usability_problem(base: Path, path: str) -> str | None:
    """Why the cgroup directory ``base`` (cgroup path ``path``) cannot hold job cgroups
    with a memory limit, or None."""
    try:
        controllers = (base / "cgroup.controllers").read_text().split()
    except OSError as exc:
        return f"cannot read {base / 'cgroup.controllers'}: {exc.strerror}"
    if "memory" not in controllers:
        have = " ".join(controllers) or "none"
        return f"the memory controller is not available in {base} (it has: {have})"
    for name in ("", "cgroup.subtree_control", "cgroup.procs"):
        if not os.access(base / name, os.W_OK):
            return f"{base / name} is not writable by the agent"
    if path != "/" and not _marked_delegated(base):
        return f"{base} is not delegated to the agent (systemd unit: Delegate=yes)"
    return None


def _marked_delegated(base: Path) -> bool:
    for name in _DELEGATE_XATTRS:
        try:
            if os.getxattr(base, name).strip() == b"1":
                return True
        except OSError:
            continue
    return False


def enable_memory(base: Path) -> str | None:
    """Make ``base`` hand the memory controller to its children; None, or why not.

    Moves this process into the leaf ``<base>/agent`` first when it is in ``base``
    itself (a cgroup with processes cannot enable controllers for children).
    """
    subtree = base / "cgroup.subtree_control"
    try:
        if "memory" in subtree.read_text().split():
            return None
        members = (base / "cgroup.procs").read_text().split()
        if str(os.getpid()) in members:
            leaf = base / AGENT_LEAF
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
        subtree.write_text("+memory")
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return f"other processes share {base}: cannot enable its memory controller"
        return f"cannot enable the memory controller in {base}: {exc.strerror or exc}"
    return None


_base_lock = threading.Lock()
_base: CgroupDetection | None = None


def job_cgroup_base() -> CgroupDetection:
    """The agent's delegated cgroup, made ready for job cgroups (detected and prepared
    once per process; blocking)."""
    global _base  # noqa: PLW0603 - one answer per process
    with _base_lock:
        if _base is None:
            found = detect_cgroup()
            if found.base is not None:
                problem = enable_memory(found.base)
                if problem is not None:
                    found = CgroupDetection(None, problem)
            _base = found
        return _base


# ---------------------------------------------------------------------- one run


class JobCgroup:
    """The cgroup of one run. Reads tolerate a cgroup that is gone (zeros, None)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._peak_seen = 0

    @classmethod
    def create(cls, base: Path, marker: str, limit: int | None) -> JobCgroup:
        """Create ``<base>/agent-job-<marker>`` with the memory limit (bytes) set, if
        any; raises :class:`OSError` (and leaves nothing behind) when that fails."""
        cgroup = cls(base / cgroup_name(marker))
        cgroup.path.mkdir()
        try:
            if limit is not None:
                cgroup._write("memory.max", str(limit))
                if (cgroup.path / "memory.swap.max").exists():
                    cgroup._write("memory.swap.max", "0")
                cgroup._write("memory.oom.group", "1")
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this cgroup."""
        self._write("cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """Pids of the processes in the cgroup."""
        try:
            return [int(pid) for pid in self._read("cgroup.procs").split()]
        except OSError:
            return []

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in the cgroup (``memory.events``)."""
        return self._flat("memory.events").get("oom_kill", 0)

    def sample_peak(self) -> None:
        """Note ``memory.current`` (the peak where ``memory.peak`` is missing)."""
        with contextlib.suppress(OSError, ValueError):
            self._peak_seen = max(self._peak_seen, int(self._read("memory.current")))

    def peak(self) -> int:
        """Highest memory use of the cgroup: ``memory.peak``, else the sampled maximum."""
        try:
            return max(self._peak_seen, int(self._read("memory.peak")))
        except (OSError, ValueError):
            self.sample_peak()
            return self._peak_seen

    def cpu_seconds(self) -> float | None:
        """CPU used by every process that ran in the cgroup (``cpu.stat`` usage_usec)."""
        usage = self._flat("cpu.stat").get("usage_usec")
        return None if usage is None else usage / 1e6

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup: ``cgroup.kill`` where the kernel has it
        (no process can fork its way out), else each pid of ``cgroup.procs``."""
        try:
            self._write("cgroup.kill", "1")
        except OSError:
            self.signal(signal.SIGKILL)

    def remove(self, timeout: float = REMOVE_TIMEOUT) -> bool:
        """Remove the cgroup, retrying while processes are still leaving it; False when
        it could not be removed (left for the next start's clean-up)."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                self.path.rmdir()
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            else:
                return True

    def _flat(self, name: str) -> dict[str, int]:
        try:
            return parse_flat_keyed(self._read(name))
        except OSError:
            return {}

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def _write(self, name: str, value: str) -> None:
        with open(self.path / name, "w") as handle:
            handle.write(value)
