"""The job environment: allowlist, credentials, thread counts, marker."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executors import MARKER_ENV, job_environment
from executors.env import CREDENTIAL_PATTERNS, inherited, is_credential

AGENT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "AGENT_SERVER__PASSWORD": "hunter2",
    "AGENT_SERVER__USERNAME": "node",
    "MY_TOKEN": "x",
    "github_token": "y",
    "DB_PASSWORD_FILE": "/run/secret",
    "AWS_SECRET_ACCESS_KEY": "z",
    "OMP_NUM_THREADS": "64",
}


@pytest.mark.parametrize(
    ("inherit", "expected_inherited"),
    [
        ((), set()),
        (("PATH",), {"PATH"}),
        (("PATH", "LANG"), {"PATH", "LANG"}),
        (("L*",), {"LANG"}),
        (("path",), set()),
        (("*",), {"PATH", "HOME", "LANG"}),
        (("AGENT_*", "MY_TOKEN"), set()),
    ],
)
def test_allowlist(inherit: tuple[str, ...], expected_inherited: set[str]) -> None:
    env = job_environment(AGENT_ENV, inherit, {}, 2, "m")
    generated = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "AGENT_CORES"}
    assert set(env) - generated - {MARKER_ENV} == expected_inherited


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("AGENT_SERVER__PASSWORD", True),
        ("agent_server__url", True),
        ("MY_TOKEN", True),
        ("token", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("DB_Password", True),
        ("PATH", False),
        ("AGENT_RUN__WORK_DIR", False),
        ("TOKENIZERS_PARALLELISM", True),
        ("OPENAI_API_KEY", True),
        ("STRIPE_APIKEY", True),
        ("SSH_PRIVATE_KEY", True),
        ("KEYBOARD", False),
    ],
)
def test_is_credential(name: str, credential: bool) -> None:
    assert is_credential(name) is credential


def test_credentials_never_inherited_even_with_star() -> None:
    env = job_environment(AGENT_ENV, ["*"], {}, 1, "m")
    assert "hunter2" not in env.values()
    assert not {"AGENT_SERVER__PASSWORD", "MY_TOKEN", "github_token", "DB_PASSWORD_FILE"} & set(env)


def test_job_env_kept_even_when_it_looks_like_a_credential() -> None:
    env = job_environment(AGENT_ENV, ["*"], {"API_TOKEN": "job-own", "HOME": "/job"}, 1, "m")
    assert env["API_TOKEN"] == "job-own"
    assert env["HOME"] == "/job"


@pytest.mark.parametrize(
    ("cores", "threads", "expected_threads", "expected_cores"),
    [
        (4, None, "4", "4"),
        (0, None, "1", "1"),
        (-3, None, "1", "1"),
        (8, 2, "2", "8"),
        (8, 0, "1", "8"),
    ],
)
def test_thread_vars(
    cores: int, threads: int | None, expected_threads: str, expected_cores: str
) -> None:
    env = job_environment(AGENT_ENV, ["*"], {"OMP_NUM_THREADS": "99"}, cores, "m", threads=threads)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env[name] == expected_threads
    assert env["AGENT_CORES"] == expected_cores


def test_marker_wins() -> None:
    env = job_environment({MARKER_ENV: "agent-own"}, ["*"], {MARKER_ENV: "job"}, 1, "the-marker")
    assert env[MARKER_ENV] == "the-marker"


NAME_PARTS = st.text(alphabet="ABXZabc_.?*[]!d-", max_size=6)


@given(
    names=st.lists(NAME_PARTS, max_size=30),
    patterns=st.lists(NAME_PARTS, max_size=5),
)
def test_inherited_names_are_those_fnmatchcase_allows(
    names: list[str], patterns: list[str]
) -> None:
    env = dict.fromkeys(names, "value")
    expected = {
        name
        for name in names
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        and not any(fnmatch.fnmatchcase(name.upper(), cred) for cred in CREDENTIAL_PATTERNS)
    }
    assert set(inherited(env, patterns)) == expected
