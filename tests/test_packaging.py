"""Packaging: the systemd unit, the container image and the job-account script.

The unit goes through ``systemd-analyze verify`` (which needs no running systemd); the
Dockerfile cannot be built here (no Docker daemon), so it is parsed and its HEALTHCHECK
command is run as it stands against a real HTTP server. The timeouts they document are
checked against the config defaults they are made of.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.config import CREDENTIAL_NAME, RunConfig, Settings
from agent.jobuser import DEFAULT_JOB_USER, create_command
from agent.outcome import ExitCode

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "agent.service"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
JOB_USER_SCRIPT = "scripts/create-job-user"
INSTALLED_AGENT = "/opt/agent/venv/bin/agent"
"""Where the README's install steps put the agent, and so the unit's ExecStart."""


# ------------------------------------------------------------------ systemd unit


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section → key → values (a key may repeat), as systemd reads a unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} comes before any [section]"
        key, equals, value = line.partition("=")
        assert equals, f"not KEY=VALUE: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


_SPAN_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
}  # fmt: skip


def timespan(value: str) -> float:
    """Seconds in a systemd time span (``100``, ``5min``, ``1min 40s``)."""
    assert re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+\s*", value), f"not a time span: {value!r}"
    return sum(
        float(number) * _SPAN_UNITS[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    )


def test_timespan_reads_systemd_spans() -> None:
    assert timespan("100") == 100
    assert timespan("5min") == 300
    assert timespan("1min 40s") == 100


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}= is set {len(values)} times in {UNIT.name}, not once"
    return values[0]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """No warning about the unit. ExecStart names the installed agent, which this
    checkout does not have: the copy verified names this environment's agent instead,
    every other line as it is."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze (Debian package systemd; .ci/run installs it)")
    agent = Path(sys.executable).parent / "agent"
    assert os.access(agent, os.X_OK), f"{agent} missing: install the agent into this venv"
    text = UNIT.read_text()
    start = f"\nExecStart={INSTALLED_AGENT} "
    assert text.count(start) == 1, f"ExecStart= does not run {INSTALLED_AGENT}"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(start, f"\nExecStart={agent} "))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False, timeout=120
    )
    output = result.stdout + result.stderr
    about_unit = [line for line in output.splitlines() if UNIT.name in line]
    assert not about_unit, "systemd-analyze verify:\n" + "\n".join(about_unit)
    assert result.returncode == 0, f"systemd-analyze verify exited {result.returncode}:\n{output}"


def test_exec_start_arguments_are_ones_the_agent_accepts(service: dict[str, list[str]]) -> None:
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[0] == INSTALLED_AGENT
    assert argv[1] == "run"
    agent = Path(sys.executable).parent / "agent"
    result = subprocess.run(
        [str(agent), *argv[1:], "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("KillMode", "mixed"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("Delegate", "yes"),
        ("OOMPolicy", "continue"),
        ("StateDirectory", "agent"),
        ("StateDirectoryMode", "0711"),
        ("ConfigurationDirectory", "agent"),
        ("LoadCredential", f"{CREDENTIAL_NAME}:/etc/agent/password"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ],
)
def test_unit_sets(service: dict[str, list[str]], key: str, value: str) -> None:
    assert one(service, key) == value


def test_unit_leaves_the_delegated_cgroup_writable(service: dict[str, list[str]]) -> None:
    """ProtectControlGroups=yes makes all of /sys/fs/cgroup read-only, the delegated
    subtree included."""
    assert service.get("ProtectControlGroups", ["no"])[-1] in {"no", "false", "0"}
    assert "CapabilityBoundingSet" not in service


def test_stop_timeout_covers_drain_kill_grace_and_giving_back(
    service: dict[str, list[str]],
) -> None:
    settings = Settings()
    needed = settings.shutdown.drain_timeout + settings.run.kill_grace + settings.server.timeout
    assert timespan(one(service, "TimeoutStopSec")) >= needed


def test_start_timeout_outlasts_the_start_up_retries(service: dict[str, list[str]]) -> None:
    assert timespan(one(service, "TimeoutStartSec")) > Settings().server.startup_timeout


def test_watchdog_outlasts_a_long_server_retry(service: dict[str, list[str]]) -> None:
    """The unit's comment: a loop may sit in one retry of the server for about 3 minutes."""
    assert timespan(one(service, "WatchdogSec")) >= 3 * 60


def test_restarts_only_where_a_restart_can_help(service: dict[str, list[str]]) -> None:
    prevented = {int(code) for code in one(service, "RestartPreventExitStatus").split()}
    assert prevented == {ExitCode.USAGE, ExitCode.REFUSED}


def test_documentation_exists_after_the_documented_install() -> None:
    unit = parse_unit(UNIT.read_text())
    for url in " ".join(unit["Unit"]["Documentation"]).split():
        assert url.startswith("file://"), f"{url}: only file:// is known to exist"
        path = url.removeprefix("file://")
        assert f"install -m 0644 README.md {path}" in deploying_section(), url


# ------------------------------------------------------------------ Dockerfile


@dataclass
class Instruction:
    keyword: str
    flags: list[str]
    rest: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments; fails for the shell form."""
        value = json.loads(self.rest)
        assert isinstance(value, list), f"{self.keyword}: not a JSON array"
        assert all(isinstance(item, str) for item in value)
        return value


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their ``--flags``; line continuations joined, comments dropped
    (comment lines inside a continuation too, as Docker does)."""
    instructions = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line, pending = (pending + stripped).strip(), ""
        keyword, _, rest = line.partition(" ")
        flags = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        instructions.append(Instruction(keyword.upper(), flags, rest))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage_of(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    return instructions[starts[-1] :]


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return final_stage_of(dockerfile)


def single(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]  # the one in effect


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    check = single(stage, "HEALTHCHECK")
    kind, _, command = check.rest.partition(" ")
    assert kind == "CMD", f"HEALTHCHECK {check.rest!r}"
    return Instruction("CMD", [], command.strip()).exec_form()


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.rest):
                name, equals, value = item.partition("=")
                assert equals, f"ENV {item!r}: write ENV NAME=VALUE"
                env[name] = value
    return env


def test_parse_dockerfile_joins_continuations_and_reads_flags() -> None:
    text = 'FROM x AS b\n# c\nHEALTHCHECK --interval=5s \\\n  # inside\n  CMD ["a", \\\n "b"]\n'
    build, check = parse_dockerfile(text)
    assert (build.keyword, build.rest) == ("FROM", "x AS b")
    assert check.flags == ["--interval=5s"]
    assert Instruction("CMD", [], check.rest.removeprefix("CMD ")).exec_form() == ["a", "b"]


def test_image_is_built_in_one_stage_and_run_from_another(
    dockerfile: list[Instruction], final_stage: list[Instruction]
) -> None:
    assert sum(instruction.keyword == "FROM" for instruction in dockerfile) >= 2
    for instruction in final_stage:
        assert not (instruction.keyword == "RUN" and "pip install" in instruction.rest)
        if instruction.keyword == "COPY" and not any(
            flag.startswith("--from=") for flag in instruction.flags
        ):
            assert instruction.rest.split()[0] == JOB_USER_SCRIPT, instruction.rest


def test_image_runs_as_a_numeric_non_root_user(final_stage: list[Instruction]) -> None:
    user, _, group = single(final_stage, "USER").rest.partition(":")
    assert user.isdigit(), "Kubernetes' runAsNonRoot can only check a numeric USER"
    assert int(user) != 0
    assert group == "" or int(group) != 0


def test_image_runs_the_agent_under_tini(final_stage: list[Instruction]) -> None:
    assert single(final_stage, "ENTRYPOINT").exec_form()[:3] == ["/usr/bin/tini", "--", "agent"]
    assert single(final_stage, "CMD").exec_form() == ["run"]
    installs = [i.rest for i in final_stage if i.keyword == "RUN" and "apt-get install" in i.rest]
    assert any(re.search(r"\btini\b", command) for command in installs)
    assert single(final_stage, "STOPSIGNAL").rest == "SIGTERM"


def test_healthcheck_asks_healthz_not_the_server(final_stage: list[Instruction]) -> None:
    command = " ".join(healthcheck_command(final_stage))
    assert "/healthz" in command
    assert "check" not in command.split(), "agent check calls the job server"
    assert "curl" not in command


def test_image_serves_health_where_the_healthcheck_asks(final_stage: list[Instruction]) -> None:
    env = env_of(final_stage)
    port = env["AGENT_HEALTH__LISTEN"].rpartition(":")[2]
    assert f"127.0.0.1:{port}/healthz" in " ".join(healthcheck_command(final_stage))
    assert port in single(final_stage, "EXPOSE").rest.split()
    assert env["AGENT_STATE_DIR"] in single(final_stage, "VOLUME").exec_form()
    assert env["AGENT_LOG__FORMAT"] == "json"


def test_mpi_build_arg_installs_the_mpi_extra(dockerfile: list[Instruction]) -> None:
    assert any(i.keyword == "ARG" and i.rest.split("=")[0] == "MPI" for i in dockerfile)
    assert any(i.keyword == "RUN" and "[mpi]" in i.rest and "$MPI" in i.rest for i in dockerfile)


# ------------------------------------------------------------------ the job account


def test_the_job_account_is_made_by_one_script_everywhere(
    final_stage: list[Instruction],
) -> None:
    """.ci/run, `make job-user` and the image call the same script; none has its own
    useradd for the job account."""
    copies = [
        i.rest.split() for i in final_stage if i.keyword == "COPY" and JOB_USER_SCRIPT in i.rest
    ]
    assert len(copies) == 1
    installed = copies[0][-1]
    assert any(i.keyword == "RUN" and installed in i.rest for i in final_stage)
    assert not any("--system" in i.rest for i in final_stage if i.keyword == "RUN")
    for caller in [ROOT / ".ci" / "run", ROOT / "Makefile"]:
        code = [line for line in caller.read_text().splitlines() if not line.startswith("#")]
        assert any(JOB_USER_SCRIPT in line for line in code), f"{caller.name} does not call it"
        assert not any("useradd" in line for line in code), f"{caller.name} has its own"
    install_steps = deploying_section().splitlines()
    assert any(line.split("#")[0].strip() == JOB_USER_SCRIPT for line in install_steps)


def test_the_script_runs_the_command_the_agent_suggests() -> None:
    """The same useradd as ``agent check`` and the config error print, for the default
    run.user."""
    text = (ROOT / JOB_USER_SCRIPT).read_text().replace("\\\n", " ")
    useradd = next(line for line in text.splitlines() if line.lstrip().startswith("useradd"))
    assert " ".join(useradd.split()).replace('"$user"', "NAME") == create_command("NAME")
    assert "${1:-" + DEFAULT_JOB_USER + "}" in text
    assert RunConfig().user == DEFAULT_JOB_USER


def test_the_script_leaves_an_existing_account_alone() -> None:
    script = ROOT / JOB_USER_SCRIPT
    assert os.access(script, os.X_OK), f"{JOB_USER_SCRIPT} is not executable"
    result = subprocess.run(
        [str(script), "root"], capture_output=True, text=True, check=False, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    lint = subprocess.run(
        ["sh", "-n", str(script)], capture_output=True, text=True, check=False, timeout=30
    )
    assert lint.returncode == 0, lint.stderr


# ------------------------------------------------------------------ the HEALTHCHECK, run


class _Health(ThreadingHTTPServer):
    status = 200
    paths: list[str]


class _HealthHandler(BaseHTTPRequestHandler):
    server: _Health

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        status = self.server.status if self.path == "/healthz" else 404
        body = b"ok\n" if status == 200 else b"not ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[_Health]:
    server = _Health(("127.0.0.1", 0), _HealthHandler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command as written, its python being this one and its port
    ``port``. A proxy in the environment must not matter (the agent may be given one)."""
    stage = final_stage_of(parse_dockerfile(DOCKERFILE.read_text()))
    command = healthcheck_command(stage)
    listen = env_of(stage)["AGENT_HEALTH__LISTEN"]
    address = f"127.0.0.1:{listen.rpartition(':')[2]}"
    assert command[0] == "/opt/agent/venv/bin/python", "the venv's python runs the check"
    assert sum(argument.count(address) for argument in command) == 1
    argv = [sys.executable, *(a.replace(address, f"127.0.0.1:{port}") for a in command[1:])]
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    env["http_proxy"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # discard: nothing there
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, env=env)


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_healthcheck(port)
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_follows_the_healthz_status(
    health_server: _Health, status: int, healthy: bool
) -> None:
    health_server.status = status
    result = run_healthcheck(health_server.server_address[1])
    assert (result.returncode == 0) is healthy, result.stderr
    assert health_server.paths == ["/healthz"]


# ------------------------------------------------------------------ README "Deploying"


def deploying_section() -> str:
    text = README.read_text()
    start = text.index("\n## Deploying\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_container_stop_timeouts_cover_drain_kill_grace_and_giving_back() -> None:
    settings = Settings()
    needed = settings.shutdown.drain_timeout + settings.run.kill_grace + settings.server.timeout
    section = deploying_section()
    stop_timeouts = re.findall(r"--stop-timeout[ =](\d+)", section)
    grace_periods = re.findall(r"terminationGracePeriodSeconds: (\d+)", section)
    assert stop_timeouts, "the README's docker run has no --stop-timeout"
    assert grace_periods, "the README's pod has no terminationGracePeriodSeconds"
    assert all(int(seconds) >= needed for seconds in stop_timeouts + grace_periods)
