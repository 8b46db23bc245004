"""`agent run-once --spec` leaves nothing in the daemon's state directory: its job
directory goes to `run.work_dir` when set, else to a new private temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

from agent.outcome import ExitCode
from tests.cli_process import agent_process

SPEC = {"command": "echo made > out.txt", "hardware": {"coresPerSlot": 1}}


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"analysis": SPEC, "outputs": []}), encoding="utf-8")
    return path


def test_without_a_work_dir_the_run_goes_to_a_temporary_directory(tmp_path: Path) -> None:
    state, temp = tmp_path / "state", tmp_path / "tmp"
    temp.mkdir()
    env = {"AGENT_STATE_DIR": str(state), "TMPDIR": str(temp)}
    result = agent_process("run-once", "--spec", str(_spec_file(tmp_path)), env=env)
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    assert not (state / "jobs").exists()
    (run_root,) = temp.glob("agent-spec-*")
    assert run_root.stat().st_mode & 0o777 == 0o700  # private: mkdtemp
    (job_dir,) = run_root.iterdir()
    assert (job_dir / "run" / "out.txt").read_text() == "made\n"
    assert f"job directory: {job_dir}" in result.stderr


def test_a_configured_work_dir_is_used(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = {"AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_RUN__WORK_DIR": str(work)}
    result = agent_process("run-once", "--spec", str(_spec_file(tmp_path)), env=env)
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    (job_dir,) = work.iterdir()
    assert (job_dir / "run" / "out.txt").exists()
