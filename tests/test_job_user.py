"""Who jobs run as, the directories made for them, and what the agent does to itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import RunConfig
from agent.jobuser import (
    DEFAULT_JOB_USER,
    JobUserError,
    create_command,
    exposure_warning,
    resolve_job_user,
)
from agent.outcome import ExitCode
from agent.selfguard import forget_secret_env
from agent.statedir import prepare, state_dir_mode, work_dir_problem
from executors.identity import (
    JobUser,
    NoSuchAccount,
    current_user,
    lookup_user,
    may_search,
    search_blocked,
)
from tests.cli_process import agent_process, user_lines, write_config

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root switches users")

NOBODY = JobUser("someone", 4242, 4242, (77,), "/nonexistent")


# ------------------------------------------------------------------ pure decisions


@pytest.mark.parametrize(
    ("mode", "owner", "group", "allowed"),
    [
        (0o700, 4242, 0, True),  # its own directory
        (0o600, 4242, 0, False),  # its own, but no x for the owner
        (0o710, 0, 77, True),  # a supplementary group may pass
        (0o700, 0, 77, False),
        (0o711, 0, 0, True),  # others may pass
        (0o770, 0, 0, False),
    ],
)
def test_who_may_pass_through_a_directory(mode: int, owner: int, group: int, allowed: bool) -> None:
    assert may_search(mode, owner, group, NOBODY) is allowed


def test_the_first_blocking_directory_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    tmp_path.chmod(0o711)
    closed.chmod(0o700)
    assert search_blocked(closed / "inner" / "not-yet", NOBODY) == closed
    closed.chmod(0o711)
    assert search_blocked(closed / "inner", NOBODY) is None


def test_state_dir_is_private_unless_another_user_passes_through(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert state_dir_mode(state, state / "jobs", NOBODY) == 0o711
    assert state_dir_mode(state, tmp_path / "elsewhere", NOBODY) == 0o700
    assert state_dir_mode(state, state / "jobs", current_user()) == 0o700


def test_exposure_is_told_unless_jobs_run_as_another_unprivileged_user() -> None:
    assert exposure_warning(NOBODY, euid=0) is None
    own = exposure_warning(NOBODY, euid=NOBODY.uid)
    assert own is not None and "agent's own user" in own
    root = exposure_warning(JobUser("root", 0, 0, (), "/root"), euid=0)
    assert root is not None and "root" in root


def test_a_non_root_agent_runs_jobs_as_itself() -> None:
    assert resolve_job_user(RunConfig(user="whoever-is-configured"), euid=1000) == current_user()


def test_forgetting_the_password_variable() -> None:
    environ = {"AGENT_SERVER__PASSWORD": "x" * 12, "AGENT_SERVER__URL": "http://h", "PATH": "/"}
    forget_secret_env(environ)
    assert environ == {"AGENT_SERVER__URL": "http://h", "PATH": "/"}


# ------------------------------------------------------------------ real accounts


@as_root
def test_the_default_job_account_is_looked_up() -> None:
    user = resolve_job_user(RunConfig(), euid=0)
    assert user.name == DEFAULT_JOB_USER and user.uid != 0 and not user.is_current()


@as_root
def test_a_missing_account_says_how_to_create_it() -> None:
    with pytest.raises(JobUserError) as caught:
        resolve_job_user(RunConfig(user="no-such-agent-user"), euid=0)
    assert str(caught.value).startswith("config: run.user: no such user 'no-such-agent-user'")
    assert create_command("no-such-agent-user") in str(caught.value)


@as_root
def test_a_missing_group_names_run_group() -> None:
    with pytest.raises(JobUserError, match=r"^config: run.group: no such group"):
        resolve_job_user(RunConfig(group="no-such-agent-group"), euid=0)


@as_root
def test_root_jobs_need_an_explicit_yes() -> None:
    with pytest.raises(JobUserError, match="allow_root_jobs"):
        resolve_job_user(RunConfig(user="root"), euid=0)
    assert resolve_job_user(RunConfig(user="0", allow_root_jobs=True), euid=0).is_root


def test_lookup_by_uid_and_unknown_names() -> None:
    assert lookup_user("0").name == "root"
    with pytest.raises(NoSuchAccount):
        lookup_user("no-such-agent-user")


@as_root
def test_prepare_locks_the_agent_side_and_opens_the_way_to_jobs(tmp_path: Path) -> None:
    user = lookup_user(DEFAULT_JOB_USER)
    state = tmp_path / "state"
    private = prepare(state, state / "jobs", user)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert (mode(state), mode(state / "jobs")) == (0o711, 0o711)
    assert (mode(state / "journal"), mode(private)) == (0o700, 0o700)
    assert private == state / "private"
    # An existing state_dir of the wrong mode (StateDirectoryMode=0755, say) is fixed.
    state.chmod(0o755)
    prepare(state, state / "jobs", user)
    assert mode(state) == 0o711


@as_root
def test_a_work_dir_the_job_user_cannot_enter_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    user = lookup_user(DEFAULT_JOB_USER)
    prepare(tmp_path / "state", closed / "jobs", user)  # made; reaching it is another matter
    assert work_dir_problem(closed / "jobs", user) == (
        f"run.work_dir: the job user 'agent-job' cannot enter {closed} (mode 700); "
        "allow it to pass (chmod o+x) or choose another work_dir"
    )
    prepare(tmp_path / "open", tmp_path / "open" / "jobs", user)
    assert work_dir_problem(tmp_path / "open" / "jobs", user) is None


# ------------------------------------------------------------------ the CLI


@as_root
@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ({"user": "no-such-agent-user"}, "config: run.user: no such user 'no-such-agent-user'"),
        ({"user": "root"}, "config: run.user: 'root' is root"),
    ],
)
def test_agent_run_refuses_to_start(tmp_path: Path, run: dict[str, object], expected: str) -> None:
    config = write_config(tmp_path / "agent.toml", "http://127.0.0.1:9", "node", "pw", run=run)
    result = agent_process("run", "--config", str(config), timeout=60)
    assert result.returncode == ExitCode.USAGE
    (line,) = user_lines(result.stderr)
    assert line.startswith(expected)
    assert "Traceback" not in result.stderr


@as_root
def test_check_reports_the_job_user(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "agent.toml",
        "http://127.0.0.1:9",
        "node",
        "pw",
        run={"user": "root", "allow_root_jobs": True},
    )
    result = agent_process("check", "--config", str(config), timeout=60)
    assert "[warn] job user: jobs run as root (run.allow_root_jobs)" in result.stdout


def test_the_agent_process_is_not_dumpable() -> None:
    """``agent`` makes itself non-dumpable first thing: a job of its own uid then cannot
    read its /proc/<pid>/environ, mem, maps or fd/ (root keeps CAP_SYS_PTRACE, so this is
    asked of the process itself)."""
    probe = (
        "import sys; from agent import cli, selfguard; sys.argv = ['agent'];"
        "before = selfguard.is_dumpable(); cli.main(); print(before, selfguard.is_dumpable())"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True False"
