"""The pure parts of cgroup v2 support, against files written in tmp directories.

This host may have no delegated cgroup v2 with a memory controller (a hybrid layout
with memory on v1 has none), so the parts that read and decide are tested here on a
fake cgroupfs; the integration tests (test_memory_guard.py) run on whichever path the
host offers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executors.cgroup import (
    CgroupDetection,
    JobCgroup,
    cgroup_name,
    choose_guard,
    detect_cgroup,
    job_cgroup_base,
    locate,
    parse_cgroup2_mounts,
    parse_flat_keyed,
    parse_proc_cgroup,
)

HYBRID = """\
9:name=systemd:/
4:memory:/process_api/f7abaf16277167b04c7212503ccb8693
1:cpu:/
0::/
"""

UNIFIED = "0::/system.slice/agent.service\n"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (HYBRID, "/"),
        (UNIFIED, "/system.slice/agent.service"),
        ("4:memory:/x\n1:cpu:/\n", None),  # pure v1
        ("", None),
        ("0::/with space/and:colon\n", "/with space/and:colon"),
    ],
)
def test_parse_proc_cgroup(text: str, path: str | None) -> None:
    assert parse_proc_cgroup(text) == path


MOUNTINFO = """\
25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 25 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
50 25 0:40 /sub /mnt/cg\\040two rw - cgroup2 cgroup2 rw,nsdelegate
"""


def test_parse_cgroup2_mounts() -> None:
    assert parse_cgroup2_mounts(MOUNTINFO) == [
        ("/", Path("/sys/fs/cgroup/unified")),
        ("/sub", Path("/mnt/cg two")),
    ]
    assert parse_cgroup2_mounts("garbage line\n") == []


@pytest.mark.parametrize(
    ("path", "mounts", "found"),
    [
        ("/a/b", [("/", Path("/cg"))], Path("/cg/a/b")),
        ("/", [("/", Path("/cg"))], Path("/cg")),
        ("/sub/x", [("/sub", Path("/m"))], Path("/m/x")),
        ("/sub", [("/sub/", Path("/m"))], Path("/m")),
        ("/subway", [("/sub", Path("/m"))], None),
        ("/other", [("/sub", Path("/m")), ("/", Path("/cg"))], Path("/cg/other")),
    ],
)
def test_locate(path: str, mounts: list[tuple[str, Path]], found: Path | None) -> None:
    assert locate(path, mounts) == found


def test_parse_flat_keyed() -> None:
    events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n"
    assert parse_flat_keyed(events)["oom_kill"] == 1
    cpu = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nbad line here\n"
    assert parse_flat_keyed(cpu) == {
        "usage_usec": 2500000,
        "user_usec": 2000000,
        "system_usec": 500000,
    }


@pytest.mark.parametrize(
    ("limit", "usable", "guard"),
    [(None, True, None), (None, False, None), (1 << 20, True, "cgroup"), (1 << 20, False, "rss")],
)
def test_choose_guard(limit: int | None, usable: bool, guard: str | None) -> None:
    assert choose_guard(limit, usable) == guard


def test_cgroup_name_is_one_safe_directory_name() -> None:
    assert cgroup_name("0123abcd") == "agent-job-0123abcd"
    assert cgroup_name("../x y") == "agent-job-.._x_y"
    assert "/" not in cgroup_name("a/b")


# ------------------------------------------------------------------- detection


def fake_host(
    tmp_path: Path, path: str, controllers: str = "cpu memory pids"
) -> tuple[Path, Path, Path]:
    """A /proc/self/cgroup, a mountinfo and a cgroup2 mount with the agent's cgroup."""
    mount = tmp_path / "cgroup2"
    base = mount / path.lstrip("/")
    base.mkdir(parents=True)
    for name, text in [
        ("cgroup.controllers", controllers + "\n"),
        ("cgroup.subtree_control", ""),
        ("cgroup.procs", f"{os.getpid()}\n"),
    ]:
        (base / name).write_text(text)
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{path}\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n")
    return proc, mountinfo, base


def test_detect_a_namespace_root(tmp_path: Path) -> None:
    proc, mountinfo, base = fake_host(tmp_path, "/")
    assert detect_cgroup(proc, mountinfo) == CgroupDetection(base, f"cgroup v2 delegated at {base}")


def test_detect_without_the_memory_controller(tmp_path: Path) -> None:
    proc, mountinfo, _ = fake_host(tmp_path, "/", controllers="hugetlb")
    found = detect_cgroup(proc, mountinfo)
    assert found.base is None
    assert "memory controller is not available" in found.reason


def test_detect_pure_v1(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/x\n")
    found = detect_cgroup(proc, Path("/proc/self/mountinfo"))
    assert found.base is None
    assert "no cgroup v2" in found.reason


def test_detect_no_cgroup2_mount(tmp_path: Path) -> None:
    proc, _, _ = fake_host(tmp_path, "/")
    mountinfo = tmp_path / "none"
    mountinfo.write_text(MOUNTINFO.splitlines()[0] + "\n")
    assert detect_cgroup(proc, mountinfo).reason == "no cgroup2 file system is mounted"


def test_detect_a_cgroup_that_is_not_delegated(tmp_path: Path) -> None:
    proc, mountinfo, _ = fake_host(tmp_path, "/system.slice/agent.service")
    found = detect_cgroup(proc, mountinfo)
    assert found.base is None
    assert "Delegate=yes" in found.reason


def test_detect_a_cgroup_systemd_delegated(tmp_path: Path) -> None:
    proc, mountinfo, base = fake_host(tmp_path, "/system.slice/agent.service")
    marked = False
    for name in ("trusted.delegate", "user.delegate"):
        try:
            os.setxattr(base, name, b"1")
        except OSError:
            continue
        marked = True
        break
    found = detect_cgroup(proc, mountinfo)
    if marked:  # the file system here takes the xattr systemd sets
        assert found.base == base
    else:
        assert found.base is None


def test_detect_an_unreadable_proc_file(tmp_path: Path) -> None:
    found = detect_cgroup(tmp_path / "missing", tmp_path / "missing")
    assert found.base is None
    assert "cannot read" in found.reason


def test_this_host_has_an_answer() -> None:
    """Whatever the host offers, detection names it (the reason is shown by ``-rP``)."""
    found = job_cgroup_base()
    print(f"cgroup detection on this host: {found}")
    assert found.reason


# ------------------------------------------------------------------- one run's files


def test_job_cgroup_reads(tmp_path: Path) -> None:
    cgroup = JobCgroup(tmp_path)
    assert cgroup.oom_kills() == 0  # nothing there yet: zeros, not errors
    assert cgroup.cpu_seconds() is None
    assert cgroup.pids() == []
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (tmp_path / "cgroup.procs").write_text("12\n34\n")
    (tmp_path / "memory.current").write_text("4096\n")
    assert cgroup.oom_kills() == 1
    assert cgroup.cpu_seconds() == 1.5
    assert cgroup.pids() == [12, 34]
    assert cgroup.peak() == 4096  # no memory.peak (Linux < 5.19): the sampled maximum
    (tmp_path / "memory.current").write_text("1024\n")
    cgroup.sample_peak()
    assert cgroup.peak() == 4096
    (tmp_path / "memory.peak").write_text("8192\n")
    assert cgroup.peak() == 8192


def test_job_cgroup_create_writes_the_limit(tmp_path: Path) -> None:
    (tmp_path / "agent-job-m1").mkdir()  # a real cgroupfs would create the files itself
    (tmp_path / "agent-job-m1" / "memory.swap.max").write_text("max\n")
    with pytest.raises(FileExistsError):
        JobCgroup.create(tmp_path, "m1", 200 << 20)
    (tmp_path / "agent-job-m1" / "memory.swap.max").unlink()
    (tmp_path / "agent-job-m1").rmdir()
    cgroup = JobCgroup.create(tmp_path, "m1", 200 << 20)
    assert (cgroup.path / "memory.max").read_text() == str(200 << 20)
    assert (cgroup.path / "memory.oom.group").read_text() == "1"
    assert not (cgroup.path / "memory.swap.max").exists()  # no swap accounting: left alone
