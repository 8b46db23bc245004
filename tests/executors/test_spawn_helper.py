"""The spawn helper: the small process that starts the jobs of another user (so the
agent is not forked whole for each), reaps them and reports their ends. A job started
through it must look exactly like one the agent started itself; the helper must hold
nothing of the agent's, ignore the signals meant for the agent, follow the agent out,
and its loss must end a run as the node's fault, with no process left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import pytest

from executors import EndKind, NodeError, PreparedRun, RunHandle
from executors.identity import JobUser
from executors.local import SubprocessExecutor
from executors.process import LOST_END
from executors.spawner import SpawnHelper, shared_helper
from executors.spawnhelper import HEADER, MAX_FRAME, FrameError, recv_frame
from tests.executors.conftest import alive
from tests.executors.test_executor_local import Lines, run_to_end
from tests.executors.test_spawn_identity import PYTHON, SOMEONE

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root switches users")

MakeRun = Callable[..., PreparedRun]

REPO = Path(__file__).resolve().parents[2]


def the_helper() -> SpawnHelper:
    helper = shared_helper()
    assert helper is not None, "the spawn helper could not be started"
    return helper


async def gone(pid: int) -> None:
    """Wait until ``pid`` no longer runs (a zombie counts as gone)."""
    while alive(pid):
        await anyio.sleep(0.02)


@as_root
@pytest.mark.anyio
async def test_a_job_of_another_user_is_the_helpers_child(make_run: MakeRun) -> None:
    lines = Lines()
    script = "import os; print(os.getppid(), os.getuid())"
    result = await run_to_end(make_run([PYTHON, "-c", script], user=SOMEONE, on_line=lines))
    assert result.succeeded, lines.lines
    helper = the_helper()
    assert helper.process.pid != os.getpid()
    assert lines.lines == [f"{helper.process.pid} {SOMEONE.uid}"]


@as_root
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("command", "kind", "code", "sig"),
    [
        ("exit 3", EndKind.EXITED, 3, None),
        ("kill -KILL $$", EndKind.SIGNALED, None, signal.SIGKILL),
    ],
    ids=["exit-code", "signal"],
)
async def test_the_helper_reports_how_the_job_ended(
    make_run: MakeRun, command: str, kind: EndKind, code: int | None, sig: int | None
) -> None:
    result = await run_to_end(make_run(command, user=SOMEONE))
    assert (result.kind, result.exit_code, result.signal) == (kind, code, sig)


@as_root
@pytest.mark.anyio
async def test_the_cpu_of_the_job_and_what_it_reaped_comes_back(make_run: MakeRun) -> None:
    burn = "import time; t = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    command = [PYTHON, "-c", f"import subprocess; subprocess.run(['{PYTHON}', '-c', {burn!r}])"]
    result = await run_to_end(make_run(command, user=SOMEONE))
    assert result.succeeded
    assert result.cpu_seconds >= 0.3


OPEN_FDS = (
    "import os\n"
    "def is_open(fd):\n"
    "    try: os.fstat(fd)\n"
    "    except OSError: return False\n"
    "    return True\n"
    "print([fd for fd in range(256) if is_open(fd)])"
)


async def signals_and_descriptors(make_run: MakeRun, user: JobUser | None) -> list[str]:
    """The open descriptors and the signal dispositions a job of ``user`` starts with."""
    lines = Lines()
    for command in ([PYTHON, "-c", OPEN_FDS], ["/bin/cat", "/proc/self/status"]):
        result = await run_to_end(make_run(command, user=user, on_line=lines))
        assert result.succeeded, lines.lines
    return [lines.lines[0]] + [
        line for line in lines.lines if line.startswith(("SigIgn", "SigCgt", "SigBlk"))
    ]


@as_root
@pytest.mark.anyio
async def test_the_job_gets_no_descriptor_and_no_signal_disposition_of_the_helper(
    make_run: MakeRun,
) -> None:
    through_helper = await signals_and_descriptors(make_run, SOMEONE)
    from_the_agent = await signals_and_descriptors(make_run, None)
    # What is ignored is inherited from whoever started the agent (a CI runner ignores
    # signal 32): the same either way. Nothing is caught or blocked, no fd but 0-2.
    assert through_helper == from_the_agent
    assert through_helper[0] == "[0, 1, 2]"
    blocked, _ignored, caught = through_helper[1:]
    assert (blocked, caught) == (f"SigBlk:\t{'0' * 16}", f"SigCgt:\t{'0' * 16}")


SIG_IGN_LINE = "SigIgn:"


def ignored_signals(status: str) -> set[int]:
    """The signals a ``/proc/PID/status`` text says are ignored."""
    mask = int(next(line for line in status.splitlines() if line.startswith(SIG_IGN_LINE))[7:], 16)
    return {signum for signum in range(1, 65) if mask & (1 << (signum - 1))}


@as_root
def test_signals_ignored_where_the_agent_was_started_stay_ignored_in_its_jobs(
    tmp_path: Path,
) -> None:
    """An agent started under ``nohup`` (SIGHUP ignored) or by a shell's ``&`` (SIGINT
    ignored): a job through the helper inherits that as one the agent starts itself
    does (the helper catches those signals for itself only when they were not)."""
    wanted = (signal.SIGHUP, signal.SIGINT)
    before = {signum: signal.signal(signum, signal.SIG_IGN) for signum in wanted}
    try:
        helper = SpawnHelper.start()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    out = tmp_path / "status"
    try:
        with out.open("wb") as output:
            os.chmod(out, 0o666)
            spawned = helper.spawn(
                ["/bin/cat", "/proc/self/status"],
                {},
                Path("/"),
                SOMEONE,
                frozenset(),
                output.fileno(),
            )
        with spawned.report:
            spawned.report.settimeout(30)
            assert spawned.report.recv(1 << 16)  # the end, once the job has ended
        helper_ignores = ignored_signals(Path(f"/proc/{helper.process.pid}/status").read_text())
    finally:
        helper.close()
        helper.process.wait(30)
    assert set(wanted) <= ignored_signals(out.read_text())
    assert set(wanted) <= helper_ignores
    assert signal.SIGTERM not in ignored_signals(out.read_text())  # caught, so default


@as_root
def test_the_helper_holds_nothing_of_the_agent() -> None:
    helper = the_helper()
    process = psutil.Process(helper.process.pid)
    assert process.environ() == {}
    assert process.cwd() == "/"
    assert os.getsid(process.pid) == process.pid  # a session of its own: no terminal's ^C


@as_root
@pytest.mark.parametrize("user", [SOMEONE, None], ids=["other-user", "agent-user"])
@pytest.mark.parametrize(
    "case",
    ["no such program", "not executable", "no such cwd", "nul in argv"],
)
def test_a_failed_start_raises_what_popen_raises(
    tmp_path: Path, user: JobUser | None, case: str
) -> None:
    argv, cwd = {
        "no such program": (["/nonexistent/program"], tmp_path),
        "not executable": (["/etc/passwd"], tmp_path),
        "no such cwd": (["/bin/true"], tmp_path / "gone"),
        "nul in argv": (["/bin/echo", "a\0b"], tmp_path),
    }[case]
    job_user = user or JobUser("root", 0, 0, (), "/")
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(Exception) as direct:
            subprocess.Popen(
                argv,
                stdout=write_end,
                cwd=cwd,
                env={},
                user=job_user.uid,
                group=job_user.gid,
                extra_groups=list(job_user.groups),
            )
        with pytest.raises(Exception) as through_helper:
            the_helper().spawn(argv, {}, cwd, job_user, frozenset(), write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    expected, got = direct.value, through_helper.value
    assert type(got) is type(expected)
    if isinstance(expected, OSError):
        assert isinstance(got, OSError)
        assert (got.errno, got.strerror, got.filename) == (
            expected.errno,
            expected.strerror,
            os.fspath(expected.filename),  # Popen keeps the Path it was given
        )


@as_root
def test_cores_the_node_does_not_have_are_a_subprocess_error(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(subprocess.SubprocessError):
            the_helper().spawn(["/bin/true"], {}, tmp_path, SOMEONE, frozenset({100000}), write_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@as_root
@pytest.mark.anyio
async def test_the_helper_leaves_the_signals_meant_for_the_agent_alone(
    make_run: MakeRun,
) -> None:
    helper = the_helper()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(helper.process.pid, signum)
    lines = Lines()
    result = await run_to_end(make_run(["/bin/echo", "still here"], user=SOMEONE, on_line=lines))
    assert result.succeeded
    assert lines.lines == ["still here"]
    assert the_helper() is helper
    assert helper.process.poll() is None


@as_root
@pytest.mark.anyio
@pytest.mark.usefixtures("no_leftovers")
async def test_a_lost_helper_ends_the_run_as_the_nodes_fault(make_run: MakeRun) -> None:
    lines = Lines()
    run = make_run("echo ready; exec sleep 60", user=SOMEONE, on_line=lines)
    errors: list[BaseException] = []

    async def wait_for_the_end(handle: RunHandle) -> None:
        try:
            await handle.wait()
        except NodeError as exc:
            errors.append(exc)

    with anyio.fail_after(20):
        handle = await SubprocessExecutor().start(run)
        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_the_end, handle)
            await lines.wait_for("ready")
            lost = the_helper()
            lost.process.kill()
            await handle.stop()
        with pytest.raises(NodeError):  # and again: a later wait does not crash
            await handle.wait()
    assert [str(error) for error in errors] == [LOST_END]
    # the next job of another user gets a new helper
    result = await run_to_end(make_run(["/bin/true"], user=SOMEONE))
    assert result.succeeded
    assert the_helper() is not lost


AGENT_STAND_IN = (
    "import sys; sys.path.insert(0, sys.argv[1])\n"
    "from executors.spawner import shared_helper\n"
    "print(shared_helper().process.pid, flush=True)\n"
    "sys.stdin.read()\n"
)


@as_root
@pytest.mark.anyio
async def test_the_helper_follows_its_agent_out() -> None:
    with anyio.fail_after(20):
        async with await anyio.open_process(
            [sys.executable, "-c", AGENT_STAND_IN, str(REPO)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        ) as agent:
            assert agent.stdout is not None
            helper_pid = int(await agent.stdout.receive())
            assert psutil.Process(helper_pid).ppid() == agent.pid
            agent.kill()  # no goodbye: its end of the socket closes with it
            await agent.wait()
        await gone(helper_pid)


@pytest.mark.parametrize(
    "frame",
    [HEADER.pack(MAX_FRAME + 1), HEADER.pack(2) + b"[]", HEADER.pack(3) + b"{x}"],
    ids=["too long", "no object", "no JSON"],
)
def test_a_frame_of_garbage_is_refused(frame: bytes) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(frame)
        with pytest.raises(FrameError):
            recv_frame(ours)


def test_a_closed_socket_reads_as_the_end() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        theirs.sendall(HEADER.pack(10) + b"{")
        theirs.close()
        assert recv_frame(ours) == (None, [])


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python3"], ids=["exits", "missing"])
def test_a_helper_that_does_not_come_up_is_not_used(python: str) -> None:
    with pytest.raises(OSError):
        SpawnHelper.start(python)


def test_a_helper_comes_up_and_ends_when_its_socket_closes() -> None:
    helper = SpawnHelper.start()
    assert helper.usable
    helper.close()
    assert helper.process.wait(timeout=20) == 0
    assert not helper.usable
