"""The bench suite itself keeps working: ``python -m bench --quick`` runs every bench to
its rows, with nothing failed, nothing left running, and every figure measured.

Quick runs are smoke runs, not measurements: their targets may be missed (exit 1) and no
figure is checked. The full suite's figures are in the README; speed stays out of tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import BENCHES

REPO = Path(__file__).resolve().parent.parent

#: Exit codes of ``python -m bench``: 0 every target met, 1 one or more missed.
MET, MISSED = 0, 1


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The table's rows (bench, figure, floor, ratio, target, pass/miss), header and rule
    left out."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("| ") or set(line) <= set("|- "):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] != "bench":
            rows.append(cells)
    return rows


@pytest.mark.usefixtures("ufdl_backend")  # skips where this clone has no real backend
def test_every_bench_runs_to_its_rows_in_one_command() -> None:
    done = run_bench("--quick")

    assert done.returncode in (MET, MISSED), done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert {row[0] for row in rows} == set(BENCHES)
    broken = [row for row in rows if re.match(r"(failed|not run):", row[1])]
    assert broken == []
    assert all(len(row) == 6 and row[5] in ("pass", "MISS", "—") for row in rows), rows
    assert "left running" not in done.stdout
    references = [row[1] for row in rows if row[0] == "contention"]
    assert any("minimal scripts on one queue" in figure for figure in references)
    assert done.stdout.rstrip().splitlines()[-1].startswith("missed: ")
    assert ("missed: none" in done.stdout) == (done.returncode == MET)


def test_one_bench_runs_alone() -> None:
    done = run_bench("--quick", "throughput")

    assert done.returncode in (MET, MISSED), done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert rows and {row[0] for row in rows} == {"throughput"}
    assert not [row for row in rows if re.match(r"(failed|not run):", row[1])]
    figures = " ".join(row[1] for row in rows)
    assert "2 slots" in figures and "2 agents of 1 slot" in figures
    assert "2 floor scripts on one queue" in figures


def test_an_unknown_bench_is_refused_with_the_known_ones() -> None:
    done = run_bench("--quick", "nosuchbench")

    assert done.returncode == 2
    assert "unknown bench(es) nosuchbench" in done.stderr
    assert all(name in done.stderr for name in BENCHES)
    assert "Traceback" not in done.stderr
