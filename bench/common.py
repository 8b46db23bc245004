"""What the benches share: the machine line, temp dirs, servers and agents as separate
processes (CPU and RSS from psutil), an admin client, agent configs, and result rows."""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MIB = 1 << 20
GIB = 1 << 30

TEMPLATE_PARAMETERS = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
}


# ----------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table. ``passed`` None: a figure reported, no target."""

    bench: str
    figure: str
    floor: str = "—"
    ratio: str = "—"
    target: str = "report"
    passed: bool | None = None


@dataclass
class Outcome:
    """What one bench gives back: table rows and notes printed under the table."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(self.name, *args, **kwargs))

    def note(self, text: str) -> None:
        self.notes.append(text)


def verdict(passed: bool | None) -> str:
    return "—" if passed is None else ("pass" if passed else "MISS")


def table(rows: Sequence[Row]) -> str:
    header = ("bench", "figure", "floor", "ratio", "target", "pass/miss")
    cells = [
        header,
        *[(r.bench, r.figure, r.floor, r.ratio, r.target, verdict(r.passed)) for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            model = found.group(1).strip()
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0))
    memory = psutil.virtual_memory().total / GIB
    return (
        f"machine: {model}, {os.cpu_count()} cores ({usable} usable), {memory:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"running as {'root (jobs as the job user)' if os.geteuid() == 0 else 'a normal user'}"
    )


def compile_agent() -> str:
    """Byte-compile the agent's packages where Python will look for them, as ``pip
    install`` does for an installed agent. A checkout installed with ``pip install -e``
    (``make test``) has no bytecode until Python writes it, and under
    ``PYTHONDONTWRITEBYTECODE`` it never does: every ``agent run`` would then compile
    about 70 modules at start-up (0.1 to 0.2 s of CPU here), a cost no installed agent
    pays. Returns what was done, for the report."""
    folders = []
    for package in ("agent", "executors"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folders.extend(spec.submodule_search_locations)
    ok = all(compileall.compile_dir(folder, quiet=1) for folder in folders)
    return f"agent bytecode: compiled in {', '.join(folders)}{'' if ok else ' (with errors)'}"


# ----------------------------------------------------------------- files


@contextmanager
def bench_dir(name: str) -> Iterator[Path]:
    """A temp dir the job user can pass through (0711), removed afterwards (kept, and
    named on stderr, with ``BENCH_KEEP=1``)."""
    path = Path(tempfile.mkdtemp(prefix=f"agent-bench-{name}-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def shared_dir(parent: Path) -> Path:
    """A directory jobs may write to whoever they run as."""
    path = parent / "shared"
    path.mkdir(exist_ok=True)
    path.chmod(0o1777)
    return path


def agent_config(
    folder: Path,
    url: str,
    username: str,
    password: str,
    *,
    ip: str = "127.0.0.4",
    slots: int = 1,
    poll: float = 1.0,
    **sections: dict[str, object],
) -> Path:
    """An agent config in its own folder (state in ``folder/state``): the agent's
    defaults except what a bench needs (no health port, JSON logs, one poll second)."""
    folder.mkdir(mode=0o711, parents=True, exist_ok=True)
    values: dict[str, dict[str, object]] = {
        "server": {"url": url, "username": username, "password": password},
        "node": {"ip": ip, "slots": slots},
        "poll": {"interval": poll},
        "health": {"listen": ""},
        "log": {"format": "json", "level": "info"},
    }
    for name, extra in sections.items():
        values[name] = {**values.get(name, {}), **extra}
    lines = [f'state_dir = "{folder / "state"}"']
    for name, keys in values.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in keys.items())
    path = folder / "agent.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}


# ----------------------------------------------------------------- servers


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    node: str | None = None
    time: float = 0.0


class Server(Protocol):
    url: str
    admin: tuple[str, str]
    node: tuple[str, str]
    kind: str

    def requests(self) -> list[Seen]: ...

    def cpu_seconds(self) -> float: ...


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children."""
    try:
        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:2])
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        with suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


class DevServerProcess:
    """``bench/devserver_proc.py`` (the reference server) as a child process."""

    kind = "devserver"
    admin = ("admin", "admin")
    node = ("node", "node")

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.devserver_proc", "--db", str(db)],
            cwd=REPO,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"devserver did not start: {line!r}")
        self.url = line.split()[-1]
        self._lock = threading.Lock()

    def requests(self) -> list[Seen]:
        """The requests answered since the last call."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        with self._lock:
            self.process.stdin.write("log\n")
            self.process.stdin.flush()
            rows = json.loads(self.process.stdout.readline())
        if rows is None:
            raise RuntimeError("the devserver's request log overflowed")
        return [Seen(m, p, s, n, t) for m, p, s, n, t in rows]

    def cpu_seconds(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


@contextmanager
def devserver(folder: Path) -> Iterator[DevServerProcess]:
    folder.mkdir(mode=0o711, parents=True, exist_ok=True)
    server = DevServerProcess(folder / "devserver.sqlite3")
    try:
        yield server
    finally:
        server.stop()


class UfdlServer:
    """The real backend (``tests.servers.UfdlBackend``), reset on entry."""

    kind = "ufdl"
    admin = ("admin", "admin")
    node = ("node", "nodepass")

    def __init__(self, folder: Path) -> None:
        sys.path.insert(0, str(REPO))
        from tests.servers import UfdlBackend, ufdl_backend_dir  # noqa: PLC0415

        backend_dir = ufdl_backend_dir()
        if backend_dir is None:
            raise RuntimeError("no real backend: ../shared/ufdl-backend is not beside this clone")
        self.backend = UfdlBackend(backend_dir, folder / "data")
        self.backend.start()
        self.url = self.backend.url

    def requests(self) -> list[Seen]:
        seen = self.backend.request_log()
        self.backend._log_offset = self.backend.output.stat().st_size
        return [Seen(s.method, s.path, s.status) for s in seen]

    def cpu_seconds(self) -> float:
        process = self.backend._process
        return process_cpu(process.pid) if process is not None else 0.0

    def reset(self) -> None:
        self.backend.reset()

    def stop(self) -> None:
        self.backend.stop()


# ----------------------------------------------------------------- admin


class Admin:
    """The bench's own (synchronous) admin client: template, jobs, cancel, records."""

    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=60)
        name, password = server.admin
        reply = self.http.post("/v1/auth/obtain", json={"username": name, "password": password})
        reply.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {reply.json()['access']}"
        body = {
            "name": f"bench-{time.monotonic_ns()}",
            "scope": "public",
            "licence": "Apache 2.0",
            "specific": {
                "job_type": "Export",
                "executor_class": "agent.analysis",
                "required_packages": "",
                "parameters": TEMPLATE_PARAMETERS,
            },
        }
        reply = self.http.post("/v1/job-templates/import", json=body)
        reply.raise_for_status()
        self.template = int(reply.json()["pk"])

    def create_job(self, command: str, outputs: list[dict[str, str]] | None = None) -> int:
        analysis = {"command": command, "hardware": {"coresPerSlot": 1}}
        values: dict[str, Any] = {"analysis": {"value": analysis, "type": "JSON"}}
        if outputs:
            values["outputs"] = {"value": outputs, "type": "JSON"}
        body = {"input_values": {}, "parameter_values": values, "description": "bench"}
        reply = self.http.post(f"/v1/job-templates/{self.template}/create-job", json=body)
        reply.raise_for_status()
        return int(reply.json()["pk"])

    def job(self, pk: int) -> dict[str, Any]:
        reply = self.http.get(f"/v1/jobs/{pk}")
        reply.raise_for_status()
        record: dict[str, Any] = reply.json()
        return record

    def cancel(self, pk: int) -> None:
        self.http.delete(f"/v1/jobs/{pk}/cancel").raise_for_status()

    def wait_started(self, pk: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.job(pk)
            if record.get("start_time"):
                return record
            time.sleep(0.01)
        raise TimeoutError(f"job {pk} did not start in {timeout} s")

    def close(self) -> None:
        self.http.close()


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------- processes


def _hwm(pid: int) -> int:
    """VmHWM (peak RSS) in bytes; 0 once the memory is gone (zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def is_spawn_helper(process: psutil.Process) -> bool:
    """Whether ``process`` is an agent's spawn helper (not a job)."""
    try:
        return any("spawnhelper" in part for part in process.cmdline())
    except psutil.Error:
        return False


class Measured:
    """A child process watched from outside: wall time to its exit (exact: ``waitid``
    without reaping), its own CPU (user + system, read from the zombie before it is
    reaped, so nothing is missed) plus that of its spawn helper (the agent's process
    that starts the jobs of another user: sampled, and read again as the agent ends),
    its reaped children's CPU, its peak RSS (VmHWM) and the peak RSS of it plus its live
    children (sampled)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log: Path | None = None,
        sample: float = 0.05,
        with_children: bool = False,
        trace: bool = False,
    ) -> None:
        self._stderr = log.open("wb") if log is not None else subprocess.DEVNULL
        self.started = time.perf_counter()
        self.started_epoch = time.time()
        self.process = subprocess.Popen(
            list(args),
            cwd=REPO,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.ps = psutil.Process(self.process.pid)
        self.ended: float | None = None
        self.peak_rss = 0
        self.peak_tree_rss = 0
        self.final_cpu: Any = None
        self._with_children = with_children
        self._looked_at: set[int] = set()
        self._helpers: dict[int, psutil.Process] = {}
        self._helper_cpu: dict[int, float] = {}
        self.trace: list[tuple[float, int, float]] | None = [] if trace else None
        """With ``trace``: (epoch, own RSS, own CPU seconds) at each sample."""
        self._period = sample
        self._exited = threading.Event()
        self._stop = threading.Event()
        threading.Thread(target=self._wait, daemon=True).start()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        _STARTED.append(self)

    def _wait(self) -> None:
        os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT)
        self.ended = time.perf_counter()
        try:
            self.final_cpu = self.ps.cpu_times()
        except psutil.Error:
            self.final_cpu = None
        self._sample_helpers()
        self._exited.set()

    def _sample_helpers(self) -> None:
        """Find the spawn helper among the children (once each) and note its CPU."""
        with suppress(psutil.Error):
            for child in self.ps.children():
                if child.pid not in self._looked_at:
                    self._looked_at.add(child.pid)
                    if is_spawn_helper(child):
                        self._helpers[child.pid] = child
        for pid, helper in self._helpers.items():
            with suppress(psutil.Error):
                times = helper.cpu_times()
                self._helper_cpu[pid] = times.user + times.system

    def _sample(self) -> None:
        while not self._exited.is_set() and not self._stop.is_set():
            self.sample_now()
            self._exited.wait(self._period)

    def sample_now(self) -> None:
        self._sample_helpers()
        try:
            rss = self.ps.memory_info().rss
            self.peak_rss = max(self.peak_rss, _hwm(self.process.pid), rss)
            if self.trace is not None:
                times = self.ps.cpu_times()
                self.trace.append((time.time(), rss, times.user + times.system))
            if self._with_children:
                for child in self.ps.children(recursive=True):
                    with suppress(psutil.Error):
                        rss += child.memory_info().rss
            self.peak_tree_rss = max(self.peak_tree_rss, rss)
        except psutil.Error:
            pass

    def cpu(self) -> float:
        """Its own CPU seconds and its spawn helper's so far (or in all, once it has
        exited)."""
        return self.own_cpu() + self.helper_cpu()

    def helper_cpu(self) -> float:
        """CPU seconds of its spawn helper, as last sampled."""
        if not self._exited.is_set():
            self._sample_helpers()
        return float(sum(self._helper_cpu.values()))

    def own_cpu(self) -> float:
        """Its own CPU seconds so far (or in all, once it has exited)."""
        if self._exited.is_set() and self.final_cpu is not None:
            return float(self.final_cpu.user + self.final_cpu.system)
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            final = self.final_cpu
            return 0.0 if final is None else float(final.user + final.system)
        return float(times.user + times.system)

    def children_cpu(self) -> float:
        """CPU seconds of the children it has reaped (known once it has exited)."""
        if self.final_cpu is None:
            return 0.0
        return float(self.final_cpu.children_user + self.final_cpu.children_system)

    def rss(self) -> int:
        try:
            return int(self.ps.memory_info().rss)
        except psutil.Error:
            return 0

    def wait(self, timeout: float) -> int:
        if not self._exited.wait(timeout):
            self.kill()
            raise TimeoutError(f"{self.describe()} did not exit within {timeout} s")
        return self._reap()

    def _reap(self) -> int:
        self._stop.set()
        code = self.process.wait()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()  # type: ignore[union-attr]
        return code

    @property
    def wall(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def signal(self, signum: int) -> None:
        if not self._exited.is_set():
            with suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then (drain over) a second SIGTERM, then SIGKILL."""
        self.signal(signal.SIGTERM)
        if not self._exited.wait(timeout / 2):
            self.signal(signal.SIGTERM)
            if not self._exited.wait(timeout / 2):
                self.kill()
        self._exited.wait(10)
        return self._reap()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def describe(self) -> str:
        return " ".join(self.process.args[2:5]) if isinstance(self.process.args, list) else "?"


_STARTED: list[Measured] = []


def kill_leftovers() -> list[str]:
    """SIGKILL every measured process still running (a bench that failed half-way must
    not leave an agent polling behind the next benches); what was killed."""
    running = [proc for proc in _STARTED if proc.running]
    for proc in running:
        proc.kill()
    _STARTED.clear()
    return [proc.describe() for proc in running]


def agent(config: Path, *, idle_exit: bool = True, **kwargs: Any) -> Measured:
    """``agent run --config FILE [--exit-when-idle]``, its JSON log in ``agent.log`` beside."""
    args = [PYTHON, "-m", "agent", "run", "--config", str(config)]
    if idle_exit:
        args.append("--exit-when-idle")
    return Measured(args, log=config.parent / "agent.log", **kwargs)


def agent_events(config: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The agent's JSON log records (of one event when given)."""
    records: list[dict[str, Any]] = []
    path = config.parent / "agent.log"
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record.get("event") == event:
                records.append(record)
    return records


EXPECTED_WARNINGS = ("MPI jobs will be left to other agents", "stopping: no new jobs")
"""Warnings every bench agent logs (no MPI here; the bench's SIGTERM): not problems."""


def agent_problems(config: Path) -> list[str]:
    """Warnings and errors the agent logged (a bench that went wrong says why)."""
    path = config.parent / "agent.log"
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    found = []
    for line in lines:
        if not line.startswith("{"):
            if line.strip():
                found.append(line.strip())
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = str(record.get("event"))
        if event.startswith(EXPECTED_WARNINGS):
            continue
        if record.get("level") in {"warning", "error", "critical"}:
            found.append(f"{record.get('level')}: {record.get('event')}")
    return found


# ----------------------------------------------------------------- request logs

_JOB_PATH = re.compile(r"^/v1/jobs/(\d+)/(\w+)")


def call_kind(path: str) -> str:
    """A request path reduced to its kind: ``/v1/jobs/12/start`` → ``jobs/start``."""
    parts = [p for p in path.split("/") if p and p != "v1"]
    kind = [p for p in parts if not p.isdigit()]
    if len(kind) >= 2 and kind[0] == "jobs" and kind[1] == "progress":
        return "jobs/progress"
    if len(kind) >= 2 and kind[0] == "jobs" and kind[1] == "outputs":
        return "jobs/outputs"
    return "/".join(kind[:2])


def per_job_calls(seen: Sequence[Seen], jobs: int) -> str:
    counts = Counter(call_kind(s.path) for s in seen)
    parts = [f"{kind} {count / jobs:.2f}" for kind, count in counts.most_common()]
    return ", ".join(parts)


def job_calls(seen: Sequence[Seen], action: str, status: int = 200) -> Counter[int]:
    """How many answered ``status`` calls of ``/v1/jobs/{pk}/{action}`` each job got."""
    counts: Counter[int] = Counter()
    for s in seen:
        found = _JOB_PATH.match(s.path)
        if found and found.group(2) == action and s.status == status:
            counts[int(found.group(1))] += 1
    return counts


def wait_for(predicate: Any, timeout: float, period: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}\u00d7"


ROUNDS = 3
"""Rounds of the benches whose figure moves most from run to run on a small VM (overhead,
throughput, noisy, log, upload, contention): floor and agent measured in turn, the table
shows the median round."""

_R = TypeVar("_R")


def median_round(rounds: Sequence[_R], ratio: Callable[[_R], float]) -> _R:
    """The round whose ``ratio`` is the median (the lower of the middle two for an even
    number of rounds)."""
    ordered = sorted(rounds, key=ratio)
    return ordered[(len(ordered) - 1) // 2]


def fmt_ratios(values: Sequence[float]) -> str:
    """Each round's ratio, in the order measured."""
    return ", ".join(fmt_ratio(value) for value in values)
