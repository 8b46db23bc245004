"""The `agent` command as a user runs it: a real process, a real config file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ServerUnderTest


def agent_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )


def write_config(
    path: Path, url: str, username: str, password: str, **sections: dict[str, object]
) -> Path:
    """A TOML config for an agent of ``url``, fast polling, state under ``path``'s folder."""
    values: dict[str, dict[str, object]] = {
        "server": {"url": url, "username": username, "password": password},
        "node": {"ip": "127.0.0.4"},
        "poll": {"interval": 0.1},
        "run": {"progress_interval": 0.2, "cancel_check_interval": 0.2, "kill_grace": 1.0},
        # Tests run many agents: none serves health unless the test asks for it.
        "health": {"listen": ""},
    }
    for name, extra in sections.items():
        values[name] = {**values.get(name, {}), **extra}
    if "password_file" in values["server"]:  # one password source only
        del values["server"]["password"]
    lines = [f'state_dir = "{path.parent / "state"}"']
    for name, keys in values.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in keys.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def server_config(path: Path, server: ServerUnderTest, **sections: dict[str, object]) -> Path:
    """A config that logs in to ``server`` as its node user."""
    return write_config(path, server.url, server.node.username, server.node.password, **sections)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def user_lines(stderr: str) -> list[str]:
    """What the user reads on stderr besides the JSON log records."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
