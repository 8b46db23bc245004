"""Bad jobs end as the job's fault, once: inputs past ``run.max_input_bytes``, archive
bombs, disks filled by the job, and give-backs that cannot loop.

The tmpfs tests mount small file systems of their own (root); CI is root.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from pytest_httpserver import HTTPServer

from agent.cleanup import remove_job_dirs, stale_job_names
from agent.config import Settings
from agent.givebacks import (
    GiveBackBook,
    after_give_back,
    gave_up_text,
    reason_key,
    should_give_up,
)
from agent.jobrun import JobReport
from agent.outcome import EndReason
from agent.server import ServerClient
from agent.server.errors import TooLarge
from agent.spec import RunSpec, SpecError, load_spec_document
from agent.staging import (
    DiskFullByJob,
    InputBudget,
    InputsTooLarge,
    disk_error,
    unpack,
    why_inputs_cannot_fit,
)
from executors.base import NodeError
from executors.logsink import LogSink
from tests.agent_harness import Harness, agent_settings, harness
from tests.servers import ServerUnderTest

MIB = 1024 * 1024

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test mounts a tmpfs")


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read in pieces (a member larger than memory would be)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def tar_bomb(path: Path, size: int, members: int = 1) -> Path:
    """A gzip tar of ``members`` files of ``size`` zero bytes each."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for index in range(members):
            info = tarfile.TarInfo(f"zeros-{index}")
            info.size = size
            tar.addfile(info, io.BufferedReader(Zeros(size)))
    return path


def zip_bomb(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        with zipped.open("zeros", "w", force_zip64=True) as member:
            for _ in range(size // MIB):
                member.write(bytes(MIB))
    return path


@contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------ archives and budgets


def test_a_gzip_tar_bomb_stops_at_the_budget(tmp_path: Path) -> None:
    archive = tar_bomb(tmp_path / "bomb.tar.gz", 256 * MIB)
    assert archive.stat().st_size < 2 * MIB
    dest = tmp_path / "out"
    dest.mkdir()
    budget = InputBudget(8 * MIB, used=archive.stat().st_size)
    with pytest.raises(InputsTooLarge, match=r"^inputs exceed run.max_input_bytes \(\d+ > 8388608"):
        unpack(archive, dest, "input 'bomb.tar.gz'", budget)
    assert sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) == 0


def test_a_zip_bomb_stops_at_the_budget_whatever_its_header_says(tmp_path: Path) -> None:
    archive = zip_bomb(tmp_path / "bomb.zip", 64 * MIB)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InputsTooLarge):
        unpack(archive, dest, "input 'bomb.zip'", InputBudget(8 * MIB))
    written = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    assert written <= 8 * MIB  # counted as it comes out, never past the budget


def test_members_summing_past_the_cap(tmp_path: Path) -> None:
    archive = tar_bomb(tmp_path / "many.tar.gz", MIB, members=10)
    dest = tmp_path / "out"
    dest.mkdir()
    budget = InputBudget(int(5.5 * MIB))
    with pytest.raises(InputsTooLarge):
        unpack(archive, dest, "input 'many.tar.gz'", budget)
    assert len(list(dest.iterdir())) == 5  # five fit; the sixth was refused before writing
    small = InputBudget(11 * MIB)
    dest2 = tmp_path / "out2"
    dest2.mkdir()
    unpack(tar_bomb(tmp_path / "fits.tar.gz", MIB, members=10), dest2, "fits", small)
    assert small.used == 10 * MIB


@pytest.mark.anyio
async def test_a_download_past_its_limit_is_stopped(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request("/big").respond_with_data(bytes(3 * MIB))
    async with ServerClient("http://127.0.0.1:9", "n", "p") as client:
        with pytest.raises(TooLarge) as caught:
            await client.download(httpserver.url_for("/big"), tmp_path / "big", limit=MIB)
        assert caught.value.size == 3 * MIB  # Content-Length said so: refused unread
        written = await client.download(httpserver.url_for("/big"), tmp_path / "ok", limit=4 * MIB)
    assert written == 3 * MIB


def test_a_full_disk_is_the_jobs_once_its_bytes_are_on_it() -> None:
    full = OSError(28, "No space left on device")
    assert isinstance(disk_error("unpacking", full, InputBudget(10, used=3)), DiskFullByJob)
    assert isinstance(disk_error("unpacking", full, InputBudget(10, used=0)), NodeError)
    assert isinstance(
        disk_error("unpacking", OSError(5, "I/O error"), InputBudget(10, 3)), NodeError
    )
    text = str(disk_error("downloading", full, InputBudget(10, used=3)))
    assert (
        text == "no space left on device while downloading (the job's inputs had reached 3 bytes)"
    )


@as_root
def test_a_log_on_a_full_disk_stops_without_an_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 1) as small:
        sink = LogSink(small / "job.log", 100 * MIB)
        with sink:
            for _ in range(40):
                sink.feed(b"x" * 64 * 1024 + b"\n")
            sink.finish()
        assert sink.disk_full and sink.truncated
        assert sink.bytes_seen == 40 * (64 * 1024 + 1)


# ------------------------------------------------------------------ give-backs


def test_give_backs_count_the_same_reason_only() -> None:
    first = after_give_back(None, "node: input 'a': cannot download http://h:4001/a", 100.0)
    assert (first.count, first.until) == (1, 400.0)
    again = after_give_back(first, "node: input 'a': cannot download http://h:4002/a", 500.0)
    assert again.count == 2  # numbers differ, the trouble is the same
    other = after_give_back(again, "node: no mpiexec", 600.0)
    assert other.count == 1
    assert should_give_up(again, "node: input 'a': cannot download http://h:9/a", 2)
    assert not should_give_up(again, "node: no mpiexec", 2)
    assert not should_give_up(first, "node: input 'a': cannot download http://h:9/a", 2)
    assert not should_give_up(None, "anything", 1)
    assert reason_key("pid 123 on node 4") == "pid # on node #"
    assert not gave_up_text("node: x", 3).startswith("node:")  # recovery must not redo it


def test_the_book_survives_a_restart_and_keeps_cooldowns(tmp_path: Path) -> None:
    path = tmp_path / "give-backs.json"
    now = [1000.0]
    book = GiveBackBook(path, clock=lambda: now[0])
    book.gave_back(7, "node: disk trouble")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    reopened = GiveBackBook(path, clock=lambda: now[0])
    assert reopened.cooling(7) and not reopened.cooling(8)
    entry = reopened.get(7)
    assert entry is not None and entry.count == 1
    now[0] += 301
    assert not reopened.cooling(7)
    now[0] += 8 * 24 * 3600
    assert GiveBackBook(path, clock=lambda: now[0]).get(7) is None  # forgotten after a week
    path.write_text("{not json")
    assert GiveBackBook(path).get(7) is None  # a broken book starts afresh


# ------------------------------------------------------------------ cleanup


def test_stale_job_directories(tmp_path: Path) -> None:
    private, work = tmp_path / "private", tmp_path / "jobs"
    now = time.time()
    for name, age in [("job-1-aaaa", 2 * 86400), ("job-2-bbbb", 3600), ("job-3-cccc", 3 * 86400)]:
        (private / name).mkdir(parents=True)
        (work / name / "run").mkdir(parents=True)
        os.utime(private / name, (now - age, now - age))
    (private / "other").mkdir()
    os.utime(private / "other", (now - 9e5, now - 9e5))
    assert stale_job_names(private, now, named={"job-3-cccc"}) == ["job-1-aaaa"]
    remove_job_dirs("job-1-aaaa", work, private)
    assert sorted(p.name for p in work.iterdir()) == ["job-2-bbbb", "job-3-cccc"]
    assert not (private / "job-1-aaaa").exists()
    with pytest.raises(ValueError):
        remove_job_dirs("../x", work, private)


# ------------------------------------------------------------------ through the agent


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


def with_input(url: str, name: str, command: str = "true") -> dict[str, object]:
    return {
        "command": command,
        "hardware": {"coresPerSlot": 1},
        "inputFiles": [{"downloadUrl": url, "relativePath": name, "decompress": True}],
    }


@pytest.mark.anyio
async def test_inputs_past_the_cap_end_the_job(
    h: Harness, httpserver: HTTPServer, tmp_path: Path
) -> None:
    bomb = tar_bomb(tmp_path / "bomb.tar.gz", 64 * MIB)
    httpserver.expect_request("/bomb.tar.gz").respond_with_data(bomb.read_bytes())
    job = await h.submit(with_input(httpserver.url_for("/bomb.tar.gz"), "bomb.tar.gz"))
    reports = await h.run_until_idle(h.settings(run={"max_input_bytes": 16 * MIB}))
    assert [r.outcome.reason for r in reports] == [EndReason.INPUT_FAULT]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert (final.error_reason or "").startswith("inputs exceed run.max_input_bytes (")
    assert await h.calls(job) == ["/acquire", "/start", "/finish"]


@as_root
@pytest.mark.anyio
async def test_a_tar_bomb_on_small_disks_ends_once(
    h: Harness, httpserver: HTTPServer, tmp_path: Path
) -> None:
    """Two agents at once, each with a 32 MiB work dir: the bomb (256 MiB of zeros) fills
    the disk of whichever takes it with its own bytes, so it is the job's fault: ERRORED
    once, never given back, one start on the server."""
    bomb = tar_bomb(tmp_path / "bomb.tar.gz", 256 * MIB)
    httpserver.expect_request("/bomb.tar.gz").respond_with_data(bomb.read_bytes())
    job = await h.submit(with_input(httpserver.url_for("/bomb.tar.gz"), "bomb.tar.gz"))
    after = await h.submit({"command": "echo next", "hardware": {"coresPerSlot": 1}})
    with tmpfs(tmp_path / "disk-a", 32) as disk_a, tmpfs(tmp_path / "disk-b", 32) as disk_b:
        settings = [
            agent_settings(h.server, tmp_path / name, node={"ip": ip}, run={"work_dir": str(disk)})
            for name, ip, disk in [("a", "127.0.0.31", disk_a), ("b", "127.0.0.32", disk_b)]
        ]
        reports: list[JobReport] = []

        async def run(one: Settings) -> None:
            reports.extend(await h.run_until_idle(one))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:  # both at once, as in a fleet
                for one in settings:
                    group.start_soon(run, one)
        assert (
            sorted(p.name for p in disk_a.iterdir())
            == sorted(p.name for p in disk_b.iterdir())
            == []
        )
    final = await h.job(job)
    assert final.phase == "ERRORED", final.error_reason
    assert (final.error_reason or "").startswith(
        "no space left on device while input 'bomb.tar.gz': unpacking"
    )
    requests = await h.requests(job)
    # One start the server accepted. On the real server both agents may be told yes by
    # its racy acquire; the loser's start is refused (403) and it leaves the job alone.
    assert [status for _, path, status in requests if path == "/start"].count(200) == 1
    assert all(status == 403 for _, path, status in requests if path == "/start" and status != 200)
    assert "/release" not in [path for _, path, _ in requests]
    assert (await h.job(after)).phase == "FINISHED"
    assert [r.outcome.reason for r in reports].count(EndReason.INPUT_FAULT) == 1


@as_root
@pytest.mark.anyio
async def test_a_job_filling_the_disk_is_its_fault(h: Harness, tmp_path: Path) -> None:
    """The state dir (the log) and the job directory share a 24 MiB tmpfs: the job fills
    it, then prints. ERRORED with "no space left on device", and the next job runs."""
    job = await h.submit(
        {
            "command": "dd if=/dev/zero of=fill bs=1M count=64 2>/dev/null; "
            "head -c 300000 /dev/zero | tr '\\0' y; echo; echo done",
            "hardware": {"coresPerSlot": 1},
        }
    )
    after = await h.submit({"command": "echo next", "hardware": {"coresPerSlot": 1}})
    with tmpfs(tmp_path / "disk", 24) as disk:
        settings = agent_settings(h.server, disk / "state")
        reports = await h.run_until_idle(settings)
        assert {r.job: r.outcome.reason for r in reports} == {
            job: EndReason.FAILED,
            after: EndReason.SUCCEEDED,
        }
        assert list((disk / "state" / "jobs").iterdir()) == []  # space given back
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == "no space left on device while the job ran (its log is cut)"
    assert await h.output(after, "log", "str") == b"next\n"


@pytest.mark.anyio
async def test_the_same_node_trouble_ends_the_job_after_max_give_backs(h: Harness) -> None:
    """An input server that is down is node trouble: given back twice, then ended by
    this agent with that reason (the cooldown is 0 here so that one agent retries)."""
    dead = "http://127.0.0.1:9/data.bin"
    job = await h.submit(
        {
            "command": "true",
            "hardware": {"coresPerSlot": 1},
            "inputFiles": [{"downloadUrl": dead, "relativePath": "data.bin"}],
        }
    )
    settings = h.settings(run={"max_give_backs": 2})
    async with h.agent(settings, exit_when_idle=True, give_back_cooldown=0.0) as agent:
        reports = await agent.run()
    assert [r.outcome.reason for r in reports] == [
        EndReason.NODE_ERROR,
        EndReason.NODE_ERROR,
        EndReason.GAVE_UP,
    ]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    error = final.error_reason or ""
    assert error.startswith("given up after 2 give-backs by this agent for the same trouble: ")
    assert "cannot download http://127.0.0.1:9/data.bin" in error
    assert await h.calls(job) == [
        "/acquire",
        "/release",
        "/acquire",
        "/release",
        "/acquire",
        "/start",
        "/finish",
    ]
    book = json.loads((h.state_dir / "give-backs.json").read_text())
    assert book[str(job)]["count"] == 2


@pytest.mark.anyio
async def test_a_given_back_job_waits_out_its_cooldown_even_when_not_pending(
    h: Harness, tmp_path: Path
) -> None:
    """The cooldown is kept while the job is elsewhere and across a restart: a job this
    agent gave back is not taken by it again before the cooldown ends."""
    job = await h.submit({"command": "true", "hardware": {"coresPerSlot": 1}})
    settings = h.settings()
    settings.state_dir.mkdir(parents=True)  # a previous life of this agent wrote the book
    GiveBackBook(settings.state_dir / "give-backs.json").gave_back(job, "node: earlier trouble")
    reports = await h.run_until_idle(settings)
    assert reports == []
    assert (await h.job(job)).phase == "CREATED"


@pytest.mark.anyio
@pytest.mark.parametrize("keep", [False, True])
async def test_old_leftovers_are_removed_at_start(h: Harness, keep: bool) -> None:
    settings = h.settings(run={"keep_job_dirs": keep})
    old, young = "job-77-0ldd1r00", "job-78-y0ung000"
    day_ago = time.time() - 2 * 86400
    for name in (old, young):
        (settings.state_dir / "private" / name).mkdir(parents=True)
        (settings.work_dir / name / "run").mkdir(parents=True)
    os.utime(settings.state_dir / "private" / old, (day_ago, day_ago))
    await h.run_until_idle(settings)
    left = sorted(path.name for path in settings.work_dir.iterdir())
    assert left == ([old, young] if keep else [young])
    assert sorted(p.name for p in (settings.state_dir / "private").iterdir()) == left


def test_declared_input_sizes_decide_before_taking() -> None:
    def spec(*sizes: int | None) -> RunSpec:
        files = [
            {"downloadUrl": f"http://h/{i}", "relativePath": f"f{i}"}
            | ({} if size is None else {"decryptedSize": size})
            for i, size in enumerate(sizes)
        ]
        return load_spec_document({"analysis": {"command": "true", "inputFiles": files}})

    assert why_inputs_cannot_fit(spec(10, None), 100, 1000) is None
    assert why_inputs_cannot_fit(spec(60, 50), 100, 1000) == (
        "its inputs declare 110 bytes, more than run.max_input_bytes (100)"
    )
    assert why_inputs_cannot_fit(spec(60, 50), 1000, 100) == (
        "its inputs declare 110 bytes, more than the 100 free in run.work_dir"
    )
    with pytest.raises(SpecError, match=r"inputFiles\[0\].decryptedSize must be a number"):
        spec(-1)


@pytest.mark.anyio
async def test_a_job_declaring_inputs_past_the_cap_is_left_for_others(h: Harness) -> None:
    job = await h.submit(
        {
            "command": "true",
            "hardware": {"coresPerSlot": 1},
            "inputFiles": [
                {"downloadUrl": "http://127.0.0.1:9/x", "relativePath": "x", "decryptedSize": 2**40}
            ],
        }
    )
    async with h.agent(h.settings(), exit_when_idle=True) as agent:
        assert await agent.run() == []
        why = agent.why_not_taken(job)
    assert why is not None and why.startswith("its inputs declare 1099511627776 bytes")
    assert (await h.job(job)).phase == "CREATED"
    assert await h.calls(job) == []
