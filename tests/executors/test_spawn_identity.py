"""How a job's process starts: as the job user with exactly its ids and groups and no
capabilities, pinned to its cores without a ``preexec_fn`` (the calling thread's
affinity is what the child inherits), and that thread left as it was."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from executors import PreparedRun
from executors.identity import JobUser
from executors.process import thread_pinned
from tests.executors.test_executor_local import Lines, run_to_end

pytestmark = pytest.mark.anyio

MakeRun = Callable[..., PreparedRun]

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root switches users")

SOMEONE = JobUser("someone", 4242, 4242, (77, 4343), "/")
ALONE = JobUser("alone", 4243, 4243, (), "/")

IDENTITY = (
    "import os; caps = [line.split()[1] for line in open('/proc/self/status')"
    " if line.startswith(('CapPrm', 'CapEff', 'CapAmb'))];"
    " print(os.getresuid(), os.getresgid(), sorted(os.getgroups()), caps)"
)

PYTHON = "/usr/bin/python3"  # reachable by any user (a venv's may live under /root)


def test_a_pinned_start_leaves_the_thread_as_it_was() -> None:
    seen: dict[str, object] = {}
    core = min(os.sched_getaffinity(0))

    def in_a_thread() -> None:
        before = os.sched_getaffinity(0)
        with thread_pinned(frozenset({core})):
            seen["inside"] = os.sched_getaffinity(0)
        seen["after"] = os.sched_getaffinity(0) == before
        try:
            with thread_pinned(frozenset({100000})):
                pass
        except Exception as exc:
            seen["error"] = type(exc).__name__
        seen["after error"] = os.sched_getaffinity(0) == before

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    expected = {"inside": {core}, "after": True, "error": "SubprocessError", "after error": True}
    assert seen == expected


@as_root
@pytest.mark.parametrize("user", [SOMEONE, ALONE], ids=["with-groups", "no-groups"])
async def test_the_job_runs_as_its_user_with_nothing_more(make_run: MakeRun, user: JobUser) -> None:
    lines = Lines()
    result = await run_to_end(make_run([PYTHON, "-c", IDENTITY], user=user, on_line=lines))
    assert result.succeeded, lines.lines
    ids = (user.uid,) * 3, (user.gid,) * 3
    assert lines.lines == [f"{ids[0]} {ids[1]} {sorted(user.groups)} {['0' * 16] * 3}"]


@as_root
async def test_pinned_cores_reach_a_job_of_another_user(make_run: MakeRun) -> None:
    core = min(os.sched_getaffinity(0))
    lines = Lines()
    script = "import os; print(sorted(os.sched_getaffinity(0)), os.getuid())"
    result = await run_to_end(
        make_run([PYTHON, "-c", script], user=SOMEONE, cores=frozenset({core}), on_line=lines)
    )
    assert result.succeeded, lines.lines
    assert lines.lines == [f"[{core}] {SOMEONE.uid}"]
