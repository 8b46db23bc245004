"""`agent run-once --spec` leaves nothing in the daemon's state directory: its job
directory goes to `run.work_dir` when set, else to a new private temporary directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.commands.local import copy_results
from agent.outcome import ExitCode
from agent.outputs import CollectedOutput
from agent.spec import OutputSpec
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
    # Others may pass through to the job user's directory, not list it (0700 as non-root).
    assert run_root.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)
    assert sorted(path.name for path in run_root.iterdir())[-1] == "private"
    (job_dir,) = run_root.glob("local-*")
    assert (job_dir / "run" / "out.txt").read_text() == "made\n"
    assert (run_root / "private").stat().st_mode & 0o777 == 0o700
    assert f"job directory: {job_dir}" in result.stderr


def test_a_configured_work_dir_is_used(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = {"AGENT_STATE_DIR": str(tmp_path / "state"), "AGENT_RUN__WORK_DIR": str(work)}
    result = agent_process("run-once", "--spec", str(_spec_file(tmp_path)), env=env)
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    (job_dir,) = work.glob("local-*")
    assert (job_dir / "run" / "out.txt").exists()


def test_out_copies_only_regular_files_from_inside(tmp_path: Path) -> None:
    """``--out`` reads each file from a checked descriptor: a declared output swapped for
    a symlink after collection is not copied (and never /etc/passwd in its place)."""
    run_dir, out = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    log = tmp_path / "job.log"
    log.write_text("the log\n")
    kept, swapped = run_dir / "kept.txt", run_dir / "swapped.txt"
    kept.write_text("kept\n")
    swapped.symlink_to("/etc/passwd")
    collected = [
        CollectedOutput(OutputSpec("kept", "txt", "kept.txt"), kept, within=run_dir),
        CollectedOutput(OutputSpec("swapped", "txt", "swapped.txt"), swapped, within=run_dir),
    ]
    skipped = copy_results(collected, log, out, "log.txt")
    assert sorted(path.name for path in out.iterdir()) == ["kept.txt", "log.txt"]
    assert (out / "log.txt").read_text() == "the log\n"
    assert len(skipped) == 1 and skipped[0].startswith("swapped.txt not copied:")
    assert "symbolic link" in skipped[0]
