"""`agent demo`, the README's main-job command, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_agent_demo_runs_green(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    mpich = os.environ.get("AGENT_TEST_MPICH_MPIEXEC")
    if mpich and Path(mpich).exists() and not shutil.which("mpiexec"):
        env["AGENT_MPI__MPIEXEC"] = mpich
    result = subprocess.run(
        [sys.executable, "-m", "agent", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert "shell job, progress, two outputs" in table
    assert "succeeded" in table and "failed" in table and "cancelled" in table
    assert "result, metrics, log" in table
    assert "demo: all jobs ended as expected" in table
    if "AGENT_MPI__MPIEXEC" in env or shutil.which("mpiexec"):
        assert "MPI, 2 ranks" in table
