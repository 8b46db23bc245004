"""The subprocess executor with real processes and real signals."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import pytest

from executors import EndKind, NodeError, PreparedRun, RunHandle, RunResult, SubprocessExecutor

pytestmark = pytest.mark.anyio

MakeRun = Callable[..., PreparedRun]


class Lines:
    """A line callback that can be awaited for a line containing some text."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, text: str, count: int = 1) -> None:
        while sum(text in line for line in self.lines) < count:
            self._changed = anyio.Event()
            await self._changed.wait()


async def run_to_end(run: PreparedRun, seconds: float = 20) -> RunResult:
    with anyio.fail_after(seconds):
        handle = await SubprocessExecutor().start(run)
        return await handle.wait()


async def stop_after_ready(
    handle: RunHandle,
    lines: Lines,
    twice: bool = False,
    when_ready: Callable[[], None] = lambda: None,
) -> tuple[RunResult, float]:
    """Wait (in a task) for the "ready" line, call when_ready, stop (maybe twice).

    Returns the result and the seconds from the stop to the end.
    """
    result: list[RunResult] = []

    async def wait() -> None:
        result.append(await handle.wait())

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await lines.wait_for("ready")
            when_ready()
            began = time.monotonic()
            await handle.stop()
            if twice:
                await handle.stop()
    return result[0], time.monotonic() - began


# ----------------------------------------------------------------------- how runs end


async def test_exit_code(make_run: MakeRun) -> None:
    result = await run_to_end(make_run("echo hello; exit 3"))
    assert (result.kind, result.exit_code, result.signal) == (EndKind.EXITED, 3, None)
    assert not result.succeeded
    assert result.log_bytes == len(b"hello\n")


async def test_success(make_run: MakeRun, tmp_path: Path) -> None:
    result = await run_to_end(make_run(["/bin/echo", "from", "argv"]))
    assert result.succeeded
    assert (tmp_path / "job.log").read_text() == "from argv\n"


async def test_killed_by_signal(make_run: MakeRun) -> None:
    result = await run_to_end(make_run("kill -SEGV $$"))
    assert (result.kind, result.exit_code, result.signal) == (EndKind.SIGNALED, None, 11)


@pytest.mark.parametrize(
    "command", [["definitely-not-a-command-4711"], "definitely-not-a-command-4711"]
)
async def test_command_not_found_is_127(make_run: MakeRun, tmp_path: Path, command: object) -> None:
    result = await run_to_end(make_run(command))
    assert (result.kind, result.exit_code) == (EndKind.EXITED, 127)
    assert "definitely-not-a-command-4711" in (tmp_path / "job.log").read_text()


async def test_not_executable_is_126(make_run: MakeRun, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = await run_to_end(make_run([str(script)]))
    assert (result.kind, result.exit_code) == (EndKind.EXITED, 126)
    assert "cannot run" in (tmp_path / "job.log").read_text()


async def test_missing_cwd_is_a_node_error(make_run: MakeRun, tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="does not exist"):
        await SubprocessExecutor().start(make_run("true", cwd=tmp_path / "gone"))


async def test_unwritable_log_is_a_node_error(make_run: MakeRun, tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="job log"):
        await SubprocessExecutor().start(make_run("true", log_path=tmp_path / "no" / "log"))


async def test_walltime(make_run: MakeRun) -> None:
    result = await run_to_end(make_run("sleep 60", walltime=1.0))
    assert result.kind is EndKind.WALLTIME
    assert 1.0 <= result.duration < 5


# ------------------------------------------------------------------------- stopping


@pytest.mark.usefixtures("no_leftovers")
async def test_stop_kills_after_grace_a_job_ignoring_term(make_run: MakeRun) -> None:
    lines = Lines()
    run = make_run("trap '' TERM; echo ready; sleep 1000; echo survived", on_line=lines)
    handle = await SubprocessExecutor().start(run)
    result, seconds = await stop_after_ready(handle, lines, twice=True)
    assert result.kind is EndKind.STOPPED
    assert result.signal == 9
    assert 0.5 <= seconds < 5
    assert "survived" not in lines.lines


@pytest.mark.usefixtures("no_leftovers")
async def test_stop_ends_a_polite_job_before_the_grace(make_run: MakeRun) -> None:
    lines = Lines()
    handle = await SubprocessExecutor().start(
        make_run("echo ready; sleep 1000", on_line=lines, kill_grace=30)
    )
    result, seconds = await stop_after_ready(handle, lines)
    assert (result.kind, result.signal) == (EndKind.STOPPED, 15)
    assert seconds < 10


@pytest.mark.usefixtures("no_leftovers")
@pytest.mark.parametrize("daemon_traps", ["", "trap '' TERM;"], ids=["polite", "ignores-term"])
async def test_stop_kills_a_double_forked_daemon(
    make_run: MakeRun,
    tmp_path: Path,
    is_alive: Callable[[int], bool],
    marked: Callable[[str], list[int]],
    daemon_traps: str,
) -> None:
    lines = Lines()
    command = (
        f'setsid sh -c "{daemon_traps} sleep 1000 & echo \\$! > daemon.pid"; echo ready; sleep 1000'
    )
    run = make_run(command, on_line=lines)
    handle = await SubprocessExecutor().start(run)
    daemon: list[int] = []

    def note_daemon() -> None:
        daemon.append(int((tmp_path / "daemon.pid").read_text()))
        assert os.getsid(daemon[0]) != handle.pid  # it really left the session

    result, _ = await stop_after_ready(handle, lines, when_ready=note_daemon)
    assert result.kind is EndKind.STOPPED
    assert not is_alive(daemon[0])
    assert marked(run.marker) == []


@pytest.mark.usefixtures("no_leftovers")
async def test_leftovers_die_when_the_main_process_exits(
    make_run: MakeRun, tmp_path: Path, is_alive: Callable[[int], bool]
) -> None:
    command = (
        "setsid sh -c 'sleep 1000 & echo $! > daemon.pid'; sleep 1000 & echo $! > child.pid; exit 0"
    )
    result = await run_to_end(make_run(command))
    assert (result.kind, result.exit_code) == (EndKind.EXITED, 0)
    for name in ("daemon.pid", "child.pid"):
        assert not is_alive(int((tmp_path / name).read_text()))


async def test_stop_after_exit_is_harmless(make_run: MakeRun) -> None:
    with anyio.fail_after(20):
        handle = await SubprocessExecutor().start(make_run("exit 0"))
        first = await handle.wait()
        await handle.stop()
        await handle.stop()
        again = await handle.wait()
    assert first is again
    assert first.kind is EndKind.EXITED


@pytest.mark.usefixtures("no_leftovers")
async def test_stop_before_wait(make_run: MakeRun) -> None:
    with anyio.fail_after(20):
        handle = await SubprocessExecutor().start(make_run("sleep 1000"))
        await handle.stop()
        result = await handle.wait()
    assert result.kind is EndKind.STOPPED


async def cancel_wait_once_ready(make_run: MakeRun) -> RunResult:
    """Start a long job, cancel the task waiting for it once it printed "ready"; the
    result a second wait returns."""
    lines = Lines()
    handle = await SubprocessExecutor().start(make_run("echo ready; sleep 1000", on_line=lines))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.wait)
            await lines.wait_for("ready")
            tg.cancel_scope.cancel()
        return await handle.wait()


@pytest.mark.usefixtures("no_leftovers")
async def test_cancelled_wait_still_stops_the_tree(make_run: MakeRun) -> None:
    result = await cancel_wait_once_ready(make_run)
    assert result.kind is EndKind.STOPPED


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_runs_leave_no_descriptor_open(make_run: MakeRun) -> None:
    """The pipe, the log and the pidfd the wait watches are closed once a run ended."""
    await run_to_end(make_run("exit 0"))  # warm-up: the worker threads, the loop's fds
    before = open_fds()
    for command in ("exit 3", "echo out; sleep 0.01"):
        await run_to_end(make_run(command))
    assert open_fds() == before


@pytest.mark.usefixtures("no_leftovers")
async def test_without_pidfd_a_worker_thread_reaps(
    make_run: MakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without pidfd_open (before 5.3): the blocking wait in a worker thread
    reaps, stops and cancellations still work."""

    def no_pidfd(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    result = await run_to_end(make_run("echo hello; exit 3"))
    assert (result.kind, result.exit_code) == (EndKind.EXITED, 3)
    stopped = await cancel_wait_once_ready(make_run)
    assert stopped.kind is EndKind.STOPPED


# ------------------------------------------------------------------- cores and env


async def test_affinity_and_thread_count(make_run: MakeRun) -> None:
    core = min(os.sched_getaffinity(0))
    lines = Lines()
    script = "import os; print(sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'])"
    result = await run_to_end(
        make_run(["python3", "-c", script], cores=frozenset({core}), on_line=lines)
    )
    assert result.succeeded
    assert lines.lines == [f"[{core}] 1"]


async def test_no_cores_means_no_pinning(make_run: MakeRun) -> None:
    lines = Lines()
    script = "import os; print(len(os.sched_getaffinity(0)), os.environ['AGENT_CORES'])"
    await run_to_end(make_run(["python3", "-c", script], on_line=lines))
    assert lines.lines == [f"{len(os.sched_getaffinity(0))} 1"]


async def test_unavailable_core_is_a_node_error(make_run: MakeRun) -> None:
    with pytest.raises(NodeError, match="cores"):
        await SubprocessExecutor().start(make_run("true", cores=frozenset({100000})))


async def test_credentials_never_reach_the_job(
    make_run: MakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SERVER__PASSWORD", "hunter2")
    monkeypatch.setenv("MY_TOKEN", "x")
    monkeypatch.setenv("HARMLESS_VALUE", "visible")
    result = await run_to_end(make_run(["env"], inherit_env=("*",), job_env={"JOB_VAR": "j"}))
    assert result.succeeded
    names = {line.split("=", 1)[0] for line in (tmp_path / "job.log").read_text().splitlines()}
    assert {"HARMLESS_VALUE", "JOB_VAR", "AGENT_JOB_MARKER", "OMP_NUM_THREADS"} <= names
    assert not {"AGENT_SERVER__PASSWORD", "MY_TOKEN"} & names
    assert "hunter2" not in (tmp_path / "job.log").read_text()


# --------------------------------------------------------------------------- output


GIB = 1 << 30


async def test_a_gibibyte_of_output_keeps_memory_flat(make_run: MakeRun, tmp_path: Path) -> None:
    count = [0]

    def on_line(line: str) -> None:
        count[0] += 1

    me = psutil.Process()
    before = me.memory_info().rss
    command = f"yes \"$(head -c 1023 /dev/zero | tr '\\0' x)\" | head -c {GIB}"
    result = await run_to_end(make_run(command, max_log_bytes=1 << 20, on_line=on_line), 60)
    growth = me.memory_info().rss - before
    assert result.succeeded
    assert result.log_bytes == GIB
    assert result.log_truncated
    assert count[0] == GIB // 1024
    assert (tmp_path / "job.log").stat().st_size <= (1 << 20) + 100
    assert growth < 50 * (1 << 20)


async def test_a_100_mib_line_without_newline(make_run: MakeRun, tmp_path: Path) -> None:
    size = 100 << 20
    lengths: list[int] = []
    command = f"head -c {size} /dev/zero | tr '\\0' x"
    result = await run_to_end(make_run(command, on_line=lambda line: lengths.append(len(line))), 60)
    assert result.succeeded
    assert result.log_bytes == size
    assert sum(lengths) == size
    assert max(lengths) <= 64 * 1024
    assert (tmp_path / "job.log").stat().st_size <= (100 << 20) + 10 * (1 << 20)


# ----------------------------------------------------------------------- accounting

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {seconds}: pass\n"


async def test_cpu_of_the_main_process(make_run: MakeRun) -> None:
    result = await run_to_end(make_run(["python3", "-c", BURN.format(seconds=0.3)]))
    assert result.succeeded
    assert result.cpu_seconds >= 0.25
    assert result.duration >= 0.25


@pytest.mark.usefixtures("no_leftovers")
async def test_cpu_and_memory_of_an_escaped_daemon_count(make_run: MakeRun) -> None:
    daemon = BURN.format(seconds=0.4) + "open('burnt', 'w').close()\ntime.sleep(1000)\n"
    command = f'setsid python3 -c "{daemon}" & while [ ! -e burnt ]; do sleep 0.05; done; exit 0'
    result = await run_to_end(make_run(command))
    assert result.succeeded
    assert result.cpu_seconds >= 0.35
    assert result.peak_rss_bytes > 1 << 20


@pytest.mark.usefixtures("no_leftovers")
async def test_wait_cancelled_during_the_grace_still_kills(make_run: MakeRun) -> None:
    lines = Lines()
    run = make_run("trap '' TERM; echo ready; sleep 1000", on_line=lines, kill_grace=1.0)
    handle = await SubprocessExecutor().start(run)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.wait)
            await lines.wait_for("ready")
            await handle.stop()  # the grace is running in the wait's task group
            tg.cancel_scope.cancel()
        result = await handle.wait()
    assert (result.kind, result.signal) == (EndKind.STOPPED, 9)


async def test_the_output_reader_asks_whether_the_agent_is_crowded(make_run: MakeRun) -> None:
    """After each block of output it takes in, the reader asks the run's ``crowded``
    whether to yield (the agent's other work in hand); here the answer is no."""
    asked: list[int] = []

    def crowded() -> bool:
        asked.append(1)
        return False

    size = 3 * 1024 * 1024
    result = await run_to_end(make_run(f"head -c {size} /dev/zero", crowded=crowded))
    assert result.succeeded and result.log_bytes == size
    assert asked
