"""The agent's configuration: one TOML file plus ``AGENT_<SECTION>__<KEY>`` overrides.

The file comes from ``--config``, else ``$AGENT_CONFIG``, else ``/etc/agent/config.toml``
(the default path may be missing: built-in defaults apply). Unknown keys are errors, in
the file and in the environment alike. :func:`load_config` raises :class:`ConfigError`
whose lines each name the key at fault; the CLI prints them and exits 2.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

DEFAULT_CONFIG_PATH = Path("/etc/agent/config.toml")

DEFAULT_INHERIT_ENV = ["PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR", "USER", "LOGNAME"]

DEFAULT_REDACT = [
    "(?i)(?:password|passwd|secret|token|api[_-]?key)[\"']?\\s*[:=]\\s*[\"']?"
    "(?P<secret>[^\\s\"',;]+)",
    "(?i)\\bbearer\\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
]


class ConfigError(Exception):
    """The configuration cannot be used; each line of ``str(self)`` names a key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerConfig(_Section):
    url: str = "http://127.0.0.1:8000"
    username: str = "node"
    password: SecretStr = SecretStr("")
    password_file: Path | None = None
    executor_classes: list[str] = Field(default_factory=lambda: ["agent.analysis"])
    timeout: float = Field(30.0, gt=0)
    startup_timeout: float = Field(60.0, ge=0)
    """Seconds start-up keeps trying an unreachable or failing server before giving up."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """Bytes from an integer or ``"80GiB"`` / ``"40 GB"`` / ``"512MiB"``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be ≥ 0 bytes")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"not a size: {value!r} (e.g. 80GiB, 40GB or bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])


class GpuDeclaration(_Section):
    """A GPU named in the config, for hosts where NVML cannot be used."""

    index: int = Field(ge=0)
    memory: int | str | None = None
    """Bytes, or a size such as ``"80GiB"``."""
    compute_capability: str | None = Field(None, pattern=r"^\d+\.\d+$")
    name: str = ""
    uuid: str | None = None

    @field_validator("memory")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        return None if value is None else parse_size(value)


class NodeConfig(_Section):
    ip: str | None = None
    """Address this agent's nodes are registered under; default: the host's address."""
    slots: int | Literal["per-gpu"] = 1
    """Jobs at once, one server node per slot; ``per-gpu``: one node per GPU (its index
    the GPU's) plus ``cpu_slots`` nodes for CPU jobs."""
    cpu_slots: int = Field(0, ge=0)
    """With ``slots = "per-gpu"``: nodes for CPU jobs, registered after the GPU nodes."""
    cores: int | list[int] | None = None
    """How many cores (or which core ids) jobs may use; default: all this process may use."""
    memory: int | None = Field(None, ge=1)
    """MiB jobs may use; default: the host's total memory."""
    queues: list[str] = Field(default_factory=list)
    """Queues this agent serves (Exabyte ``compute.queue``); empty: any queue."""
    gpus: Literal["auto"] | list[int | GpuDeclaration] = "auto"
    """``auto``: ask NVML (none found without a driver); or the GPUs, by index or in full."""

    @field_validator("slots")
    @classmethod
    def _positive_slots(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError('must be ≥ 1, or "per-gpu"')
        return value

    @field_validator("cores")
    @classmethod
    def _positive_cores(cls, value: int | list[int] | None) -> int | list[int] | None:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be ≥ 1")
        if isinstance(value, list) and (not value or any(core < 0 for core in value)):
            raise ValueError("must be a non-empty list of core ids ≥ 0")
        return value


class PollConfig(_Section):
    interval: float = Field(5.0, ge=0)
    max_backoff: float = Field(60.0, ge=0)


class LogOutputConfig(_Section):
    name: str = Field("log", pattern=r"^[A-Za-z0-9._-]+$")
    type: str = Field("str", pattern=r"^[A-Za-z0-9._-]+$")


class RunConfig(_Section):
    executor: Literal["local", "slurm"] = "local"
    """``local``: jobs run on this host (subprocess, or mpiexec for MPI jobs); ``slurm``:
    each job is submitted to Slurm with ``sbatch`` (section ``[slurm]``)."""
    user: str = Field("agent-job", min_length=1)
    """Account (name or uid) jobs run as when the agent runs as root."""
    group: str | None = Field(None, min_length=1)
    """Group jobs run with; default: the user's own group."""
    allow_root_jobs: bool = False
    """Whether ``user`` may be root (every job then has every privilege of the host)."""
    work_dir: Path | None = None
    """Where job directories go; default ``<state_dir>/jobs``."""
    keep_job_dirs: bool = False
    kill_grace: float = Field(10.0, ge=0)
    cancel_check_interval: float = Field(1.0, gt=0)
    progress_interval: float = Field(5.0, gt=0)
    max_log_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    max_input_bytes: int = Field(20 * 1024**3, ge=1)
    """Bytes a job's inputs may take, downloaded and unpacked together."""
    max_give_backs: int = Field(3, ge=1)
    """Give-backs of one job by this agent for the same node-side reason before the
    agent ends it ERRORED with that reason instead."""
    inherit_env: list[str] = Field(default_factory=lambda: list(DEFAULT_INHERIT_ENV))
    redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT))
    log_output: LogOutputConfig = Field(default_factory=LogOutputConfig)

    @field_validator("redact")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from None
        return patterns


class MpiConfig(_Section):
    mpiexec: str | None = None
    """Path of mpiexec; default: the one on PATH."""
    flavor: Literal["auto", "openmpi", "mpich", "intel"] = "auto"
    extra_args: list[str] = Field(default_factory=list)
    hostfile: Path | None = None


class SlurmConfig(_Section):
    """How jobs go to Slurm when ``run.executor = "slurm"``."""

    partition: str | None = Field(None, min_length=1)
    """Partition of jobs that name no ``queue``; default: the cluster's default one."""
    account: str | None = Field(None, min_length=1)
    qos: str | None = Field(None, min_length=1)
    extra_args: list[str] = Field(default_factory=list)
    """Appended to every ``sbatch`` command line (``--constraint=...``, ``--reservation=...``)."""
    poll_interval: float = Field(5.0, gt=0)
    """Seconds between two looks at a submitted job (``scontrol show job``)."""
    shared_dir: Path | None = None
    """Where job directories go: a filesystem the compute nodes see at the same path;
    default ``run.work_dir``."""


class ShutdownConfig(_Section):
    drain_timeout: float = Field(60.0, ge=0)


class HealthConfig(_Section):
    listen: str = "127.0.0.1:9465"
    """``host:port`` of ``/healthz``, ``/readyz``, ``/metrics`` and ``/status`` (``agent
    run`` only); empty: off."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and not re.match(r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$", value):
            raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:9465) or empty")
        return value


class AdminConfig(_Section):
    """Staff credentials for the fleet commands that need them (``agent reap``; ``agent
    submit`` when the server lets only staff import templates). Never the daemon's."""

    username: str = ""
    password_file: Path | None = None


class LogConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


def default_state_dir() -> Path:
    """``/var/lib/agent`` for root (the systemd service), else the user's state dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agent"


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    poll: PollConfig = Field(default_factory=PollConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    mpi: MpiConfig = Field(default_factory=MpiConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    state_dir: Path = Field(default_factory=default_state_dir)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed as init kwargs); no dotenv, no secrets dir.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _one_password_source(self) -> Settings:
        if self.server.password.get_secret_value() and self.server.password_file:
            raise ValueError("server.password and server.password_file: set only one")
        return self

    @property
    def work_dir(self) -> Path:
        """Where job directories go: ``slurm.shared_dir`` with Slurm, else
        ``run.work_dir``, else ``<state_dir>/jobs``."""
        if self.run.executor == "slurm" and self.slurm.shared_dir is not None:
            return self.slurm.shared_dir
        return self.run.work_dir or self.state_dir / "jobs"

    @property
    def password(self) -> str:
        return self.server.password.get_secret_value()


def config_path(cli_path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Which file to read, and whether it must exist (named explicitly)."""
    if cli_path:
        return Path(cli_path), True
    if environ.get("AGENT_CONFIG"):
        return Path(environ["AGENT_CONFIG"]), True
    return DEFAULT_CONFIG_PATH, False


def _read_toml(path: Path, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config: file {path} not found") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"config: {key}: {message}"


CREDENTIAL_NAME = "password"
"""systemd ``LoadCredential=password:...``: read from ``$CREDENTIALS_DIRECTORY/password``."""


def credential_file(settings: Settings, environ: Mapping[str, str]) -> Path | None:
    """Where the password comes from: ``server.password_file``, else the systemd
    credential when the unit passes one (and no password is set), else nowhere."""
    if settings.server.password_file is not None:
        return settings.server.password_file
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory and not settings.password:
        candidate = Path(directory) / CREDENTIAL_NAME
        if candidate.is_file():
            return candidate
    return None


def _read_password_file(settings: Settings) -> Settings:
    path = credential_file(settings, os.environ)
    if path is None:
        return settings
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"config: server.password_file: cannot read {path}: {exc.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"config: server.password_file: {path} is empty")
    server = settings.server.model_copy(update={"password": SecretStr(secret)})
    return settings.model_copy(update={"server": server})


def load_config(
    cli_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    secrets: bool = True,
) -> Settings:
    """Read the file, apply ``AGENT_*`` variables of the environment, validate, read
    ``password_file``.

    ``overrides`` (section → {key: value}) replace file values; tests and ``agent demo``
    use them instead of writing files. ``secrets=False`` leaves the password file unread
    (``agent status`` needs only the health address).
    """
    path, required = config_path(cli_path, os.environ)
    data = _read_toml(path, required)
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(error) for error in exc.errors())) from None
    except SettingsError:
        raise ConfigError(_describe_bad_env_json(os.environ)) from None
    return _read_password_file(settings) if secrets else settings


def _describe_bad_env_json(environ: Mapping[str, str]) -> str:
    """pydantic-settings names only the section when an env value is not valid JSON."""
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith("AGENT_") or "__" not in upper:
            continue
        try:
            json.loads(value)
        except ValueError:
            if value.lstrip()[:1] in "[{":
                key = upper.removeprefix("AGENT_").replace("__", ".").lower()
                return f"config: {key}: {name} is not valid JSON (lists are written as JSON)"
    return "config: an AGENT_<SECTION>__<KEY> variable holds a list or table that is not JSON"


def slot_count(node: NodeConfig, gpu_count: int) -> int:
    """How many slots (nodes) the agent has: ``node.slots``, or one per GPU plus
    ``node.cpu_slots`` with ``per-gpu``."""
    if node.slots == "per-gpu":
        return max(1, gpu_count + node.cpu_slots)
    return node.slots


def job_memory_limit_bytes(
    job_memory_mb: int | None, node: NodeConfig, gpu_count: int = 0
) -> int | None:
    """Bytes one job's run may use: its ``hardware.memory`` (MiB) when it gives one, else
    one slot's share of ``node.memory`` (``node.memory // node.slots`` MiB, at least 1),
    else None (no limit: the host's memory is not divided among slots by guesswork)."""
    if job_memory_mb is not None:
        return job_memory_mb * 1024 * 1024
    if node.memory is not None:
        return max(1, node.memory // slot_count(node, gpu_count)) * 1024 * 1024
    return None


LIVE_KEYS = ("poll.interval", "poll.max_backoff", "log.level", "node.queues")
"""Keys a running agent takes from its config file on SIGHUP; the others need a restart."""


@dataclass(frozen=True)
class Reload:
    settings: Settings
    """The running settings with the live keys taken from the file."""
    applied: list[str]
    """Live keys whose value changed."""
    need_restart: list[str]
    """Other keys whose value changed: not applied."""


def _flat(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {"state_dir": settings.state_dir}
    for section in type(settings).model_fields:
        model = getattr(settings, section)
        if isinstance(model, BaseModel):
            for key in type(model).model_fields:
                values[f"{section}.{key}"] = getattr(model, key)
    # The password is read once and dropped from the environment: a reload cannot see it.
    values.pop("server.password", None)
    return values


def reload_settings(current: Settings, fresh: Settings) -> Reload:
    """What SIGHUP does with a freshly read config: a pure comparison."""
    old, new = _flat(current), _flat(fresh)
    changed = [key for key in new if new[key] != old.get(key)]
    applied = [key for key in changed if key in LIVE_KEYS]
    settings = current
    for key in applied:
        section, name = key.split(".")
        part = getattr(settings, section).model_copy(update={name: new[key]})
        settings = settings.model_copy(update={section: part})
    return Reload(settings, applied, [key for key in changed if key not in LIVE_KEYS])
