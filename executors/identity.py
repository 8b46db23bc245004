"""Who a job's processes run as: a user, its group and its supplementary groups.

The agent looks the account up once (:func:`lookup_user`) and hands the result to every
run in :attr:`~executors.base.PreparedRun.user`;
:func:`~executors.process.spawn_off_loop` lets
``subprocess.Popen(user=, group=, extra_groups=)`` switch to it in the child before exec
(in C, no Python between fork and exec), in the spawn helper (:mod:`executors.spawner`).
:func:`search_blocked` tells whether that user can reach a directory at all, so a job
directory it cannot enter is caught at start-up instead of as a failed spawn.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


class NoSuchAccount(LookupError):
    """The configured user or group does not exist on this host."""


@dataclass(frozen=True)
class JobUser:
    """An account jobs run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Supplementary group ids (the account's memberships)."""
    home: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def is_current(self) -> bool:
        """Whether this is the account the agent itself runs as (no switch needed)."""
        return self.uid == os.geteuid() and self.gid == os.getegid()


def _group_id(group: str) -> int:
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise NoSuchAccount(f"no such group {group!r}") from None


def lookup_user(user: str, group: str | None = None) -> JobUser:
    """The account ``user`` (a name or a numeric uid) with ``group`` (default: its own).

    Raises :class:`NoSuchAccount` when either does not exist.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise NoSuchAccount(f"no such user {user!r}") from None
    gid = _group_id(group) if group else entry.pw_gid
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid)) - {gid}))
    return JobUser(entry.pw_name, entry.pw_uid, gid, groups, entry.pw_dir)


def current_user() -> JobUser:
    """The account the agent runs as."""
    uid = os.geteuid()
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:  # a container started with a bare --user 12345
        name, home = str(uid), os.environ.get("HOME", "/")
    gid = os.getegid()
    return JobUser(name, uid, gid, tuple(g for g in os.getgroups() if g != gid), home)


def may_search(mode: int, owner: int, group: int, user: JobUser) -> bool:
    """Whether ``user`` may pass through a directory of ``mode`` owned by ``owner:group``
    (the classic permission bits; ACLs are not looked at)."""
    if user.is_root:
        return True
    if owner == user.uid:
        return bool(mode & stat.S_IXUSR)
    if group == user.gid or group in user.groups:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def search_blocked(path: Path, user: JobUser) -> Path | None:
    """The first existing directory on the way to ``path`` that ``user`` cannot pass
    through, or None. Directories that do not exist yet are not judged."""
    current = Path(path).absolute()
    for directory in [*reversed(current.parents), current]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None
        if not may_search(info.st_mode, info.st_uid, info.st_gid, user):
            return directory
    return None
