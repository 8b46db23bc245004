from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, Settings, load_config

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_lists_every_key_with_its_default() -> None:
    data = tomllib.loads((REPO / "config.example.toml").read_text(encoding="utf-8"))
    from_file = Settings(**data)
    defaults = Settings()
    for section in (
        "server",
        "node",
        "poll",
        "run",
        "mpi",
        "slurm",
        "shutdown",
        "health",
        "admin",
        "log",
    ):
        assert getattr(from_file, section) == getattr(defaults, section), section
        model = type(getattr(defaults, section))
        listed = set(data.get(section, {}))
        commented = (REPO / "config.example.toml").read_text(encoding="utf-8")
        for key in model.model_fields:
            assert key in listed or f"# {key} =" in commented, f"{section}.{key} undocumented"


def test_file_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[run]\nkill_grace = 5\n[node]\nslots = 3\n")
    monkeypatch.setenv("AGENT_RUN__KILL_GRACE", "2.5")
    monkeypatch.setenv("AGENT_SERVER__EXECUTOR_CLASSES", '["a", "b"]')
    settings = load_config(path)
    assert settings.run.kill_grace == 2.5
    assert settings.node.slots == 3
    assert settings.server.executor_classes == ["a", "b"]


def test_agent_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[poll]\ninterval = 0.5\n")
    monkeypatch.setenv("AGENT_CONFIG", str(path))
    assert load_config().poll.interval == 0.5


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("[run]\nkill_grace = 'soon'\n", {}, "run.kill_grace"),
        ("[run]\nkil_grace = 1\n", {}, "run.kil_grace"),
        ("[nodes]\nslots = 1\n", {}, "nodes"),
        ("", {"AGENT_NODE__SLOTS": "0"}, "node.slots"),
        ("", {"AGENT_RUN__BOGUS": "1"}, "run.bogus"),
        ("", {"AGENT_NODE__QUEUES": "[D"}, "node.queues"),
        ("[server]\nurl = 'ftp://x'\n", {}, "server.url"),
        ("[run]\nredact = ['(']\n", {}, "run.redact"),
        ("[log]\nlevel = 'loud'\n", {}, "log.level"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], key: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert f"config: {key}" in str(caught.value)


def test_password_file_is_read_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cr3t-value\n", encoding="utf-8")
    settings = load_config(write(tmp_path, f'[server]\npassword_file = "{secret}"\n'))
    assert settings.password == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


def test_systemd_credential_is_the_password_when_none_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "password").write_text("from-systemd-credential\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_config(write(tmp_path, "")).password == "from-systemd-credential"
    # A password set in the config (or its password_file) wins over the credential.
    assert load_config(write(tmp_path, '[server]\npassword = "own"\n')).password == "own"
    (credentials / "password").unlink()
    assert load_config(write(tmp_path, "")).password == ""


def test_password_and_password_file_exclude_each_other(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server\.password"):
        load_config(write(tmp_path, f'[server]\npassword = "y"\npassword_file = "{secret}"\n'))


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[run]\nkill_grace = 'soon'\n")
    with pytest.raises(SystemExit) as caught:
        main(["check", "--config", str(path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "config: run.kill_grace: Input should be a valid number, unable to parse string as a number"
    ]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("agent ")
