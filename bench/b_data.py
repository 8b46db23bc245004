"""Benches of bulk data: a job's log (1 GiB to stdout) and a 1 GiB output upload."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    GIB,
    MIB,
    PYTHON,
    REPO,
    ROUNDS,
    Admin,
    Measured,
    Outcome,
    agent,
    agent_config,
    agent_problems,
    bench_dir,
    clean_env,
    devserver,
    fmt_ratio,
    fmt_ratios,
    median_round,
    shared_dir,
    wait_for,
)

GENERATOR = """\
import sys
mode, mib = sys.argv[1], int(sys.argv[2])
block = (b"x" * 1023 + b"\\n") * 1024 if mode == "lines" else b"x" * (1 << 20)
write = sys.stdout.buffer.write
for _ in range(mib):
    write(block)
sys.stdout.buffer.flush()
"""
"""The job: one process writing 1 MiB blocks (of 1 KiB lines, or without a newline)
from one prepared buffer, so that it costs next to nothing itself."""


COPIER = """\
import os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
began = time.process_time()
while data := os.read(0, 65536):
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
print(time.process_time() - began)
"""
"""The least a reader of the job's output that writes it to a file pays: a loop of
64 KiB reads from the pipe and writes to a file, nothing else; its CPU time from the
first read to the last write (not the interpreter's start)."""


SPLICER = """\
import os, sys, time
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
began = time.process_time()
while os.splice(0, out, 65536):
    pass
print(time.process_time() - began)
"""
"""The kernel's copy alone: the pipe spliced into the file, no byte copied to or from
the process (a reader that must see the bytes, as the agent must to mask secrets, does
that copy and its own on top); its CPU time as :data:`COPIER`'s."""


def _generator(shared: Path) -> Path:
    path = shared / "gen.py"
    path.write_text(GENERATOR)
    path.chmod(0o644)
    return path


def _stamp(path: Path) -> str:
    """A shell command writing the time to ``path`` at once (written aside, then renamed:
    ``path`` never exists empty, which a poller would read as the time)."""
    return f"date +%s.%N > {path}.part && mv {path}.part {path}"


def _read_stamp(path: Path) -> float:
    return float(path.read_text().strip())


# ----------------------------------------------------------------- log


def settle_page_cache() -> None:
    """Before a timed 1 GiB write: nothing an earlier phase wrote is still being written
    back, and (as root) the page cache is emptied, so that the floor and the agent start
    from the same state (without this the floor alone varied 0.3-2.4 s between runs)."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


def _copy_cpu(script: Path, text: str, generate: str, sink: Path, size: int) -> float:
    """CPU seconds the copier ``text`` (saved as ``script``) reports for the output of
    ``generate`` piped into it and written to ``sink`` (checked for ``size``, removed)."""
    script.write_text(text)
    settle_page_cache()
    copied = subprocess.run(
        ["sh", "-c", f"{generate} | {PYTHON} {script} {sink}"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert sink.stat().st_size == size, sink.stat().st_size
    sink.unlink()
    return float(copied.stdout.strip())


def _log_case(folder: Path, mode: str, mib: int) -> dict[str, Any]:
    shared = shared_dir(folder)
    generate = f"python3 {_generator(shared)} {mode} {mib}"
    size = mib * MIB

    # the floor: the same job, its stdout into a file
    t0, t1 = shared / f"floor-{mode}.t0", shared / f"floor-{mode}.t1"
    sink = folder / f"floor-{mode}.out"
    floor_cmd = f"{_stamp(t0)} && {generate} > {sink} && {_stamp(t1)}"
    settle_page_cache()
    subprocess.run(["sh", "-c", floor_cmd], check=True)
    floor_wall = _read_stamp(t1) - _read_stamp(t0)
    assert sink.stat().st_size == size, sink.stat().st_size
    sink.unlink()

    # the bare copy: the pipe read and the file written by a loop doing nothing else;
    # and the kernel's copy alone: the pipe spliced into the file
    copy_cpu = _copy_cpu(shared / "copier.py", COPIER, generate, sink, size)
    splice_cpu = _copy_cpu(shared / "splicer.py", SPLICER, generate, sink, size)

    # the agent
    t0, t1 = shared / f"agent-{mode}.t0", shared / f"agent-{mode}.t1"
    with devserver(folder / f"server-{mode}") as server:
        admin = Admin(server)
        admin.create_job(f"{_stamp(t0)} && {generate} && {_stamp(t1)}")
        admin.close()
        config = agent_config(
            folder / f"agent-{mode}",
            server.url,
            *server.node,
            run={"max_log_bytes": 2 * size + GIB},
        )
        settle_page_cache()
        proc = agent(config, idle_exit=False, sample=0.02)
        if not wait_for(lambda: t0.exists() or not proc.running, 60, period=0.002) or (
            not t0.exists()
        ):
            proc.kill()
            proc.wait(30)
            raise RuntimeError(f"the job never started: {agent_problems(config)}")
        cpu0 = proc.cpu()
        server_cpu0 = server.cpu_seconds()
        if not wait_for(t1.exists, 600, period=0.002):
            proc.kill()
            proc.wait(30)
            raise RuntimeError("the job did not end within 600 s")
        cpu1 = proc.cpu()
        proc.sample_now()
        server_cpu = server.cpu_seconds() - server_cpu0
        peak = proc.peak_rss
        wall = _read_stamp(t1) - _read_stamp(t0)
        # the agent takes in the pipe's last bytes (and may upload and remove a small log)
        logged = [0]

        def whole_log() -> bool:
            for path in (folder / f"agent-{mode}" / "state").rglob("*.log"):
                with contextlib.suppress(OSError):
                    logged[0] = max(logged[0], path.stat().st_size)
            return logged[0] >= size

        wait_for(whole_log, 5, period=0.01)
        log_size = logged[0]
        # What follows is the upload of the 1 GiB log, which the reference server cannot
        # hold: not measured, the agent is stopped here.
        proc.kill()
        proc.wait(30)
    return {
        "floor": floor_wall,
        "wall": wall,
        "cpu": cpu1 - cpu0,
        "per_gib": (cpu1 - cpu0) / (size / GIB),
        "copy_per_gib": copy_cpu / (size / GIB),
        "splice_per_gib": splice_cpu / (size / GIB),
        "peak": peak,
        "server_share": server_cpu / wall,
        "log_size": log_size,
        "size": size,
    }


def log(quick: bool) -> Outcome:
    mib, rounds = (16, 1) if quick else (1024, ROUNDS)
    out = Outcome("log")
    cases: dict[str, list[dict[str, Any]]] = {"lines": [], "raw": []}
    with bench_dir("log") as folder:
        for n in range(rounds):
            for mode, runs in cases.items():
                place = folder / f"round{n}"
                place.mkdir(mode=0o711, exist_ok=True)
                runs.append(_log_case(place, mode, mib))
                shutil.rmtree(place / f"agent-{mode}", ignore_errors=True)  # its 1 GiB log

    def ratio_of(case: dict[str, Any]) -> float:
        return float(case["wall"] / case["floor"])

    for mode, label in (("lines", "1 KiB lines"), ("raw", "no newline")):
        runs = cases[mode]
        case = median_round(runs, ratio_of)
        ratio = ratio_of(case)
        peak = max(run["peak"] for run in runs)
        out.row(
            f"{label}: {mib} MiB in {case['wall']:.2f} s ({mib / case['wall']:.0f} MiB/s)",
            f"{case['floor']:.2f} s (sh > file)",
            fmt_ratio(ratio),
            "≤ 1.20\u00d7",
            ratio <= 1.2,
        )
        out.row(
            f"{label}: agent CPU {case['per_gib']:.2f} s per GiB",
            f"{case['copy_per_gib']:.2f} s/GiB (bare read/write loop)",
            fmt_ratio(case["per_gib"] / case["copy_per_gib"]),
            "≤ 0.30 s/GiB",
            case["per_gib"] <= 0.3,
        )
        out.row(
            f"{label}: kernel-only copy (splice, pipe to file) "
            f"{case['splice_per_gib']:.2f} s per GiB",
            target="report",
        )
        out.row(
            f"{label}: agent peak RSS {peak / MIB:.0f} MiB"
            + (f" (highest of {rounds} rounds)" if rounds > 1 else ""),
            target="≤ 80 MiB",
            passed=peak <= 80 * MIB,
        )
        if rounds > 1:
            cpu = ", ".join(f"{run['per_gib']:.2f}" for run in runs)
            copy = ", ".join(f"{run['copy_per_gib']:.2f}" for run in runs)
            spliced = ", ".join(f"{run['splice_per_gib']:.2f}" for run in runs)
            out.note(
                f"{label}, {rounds} rounds (floor then agent in each): ratios "
                f"{fmt_ratios([ratio_of(run) for run in runs])}; agent CPU {cpu} s/GiB; bare "
                f"read/write loop {copy} s/GiB; splice {spliced} s/GiB; the rows (but peak "
                "RSS) and the line below are the median round's"
            )
        out.note(
            f"{label}: agent CPU {case['cpu']:.2f} s over {case['wall']:.2f} s "
            f"({case['cpu'] / case['wall'] * 100:.0f}% of a core); log file "
            f"{case['log_size'] / MIB:.0f} MiB of {case['size'] / MIB:.0f} MiB printed; "
            f"server CPU {case['server_share'] * 100:.0f}% of a core meanwhile"
        )
    out.note("after the job the agent's upload of its log is not measured: the agent is stopped")
    return out


# ----------------------------------------------------------------- upload


CURL_NOTE = (
    "floor: `curl -X POST -T FILE` (streams the file, like the agent), not `--data-binary "
    "@FILE`: curl 7.88 reads --data-binary files into memory and refuses 1 GiB ('out of "
    "memory', its cap is just under 1 GiB)"
)


class Sink:
    """``bench/sink_proxy.py`` in front of a server; collects its upload records."""

    def __init__(self, upstream: str) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "bench.sink_proxy", upstream],
            cwd=REPO,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().split()[-1]
        self.records: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.records.append(json.loads(line))

    def record(self, job: int, timeout: float) -> dict[str, Any]:
        prefix = f"/v1/jobs/{job}/outputs/"

        def found() -> dict[str, Any] | None:
            return next((r for r in self.records if r["path"].startswith(prefix)), None)

        if not wait_for(lambda: found() is not None, timeout, period=0.01):
            raise RuntimeError(f"no upload for job {job} within {timeout} s")
        record = found()
        assert record is not None
        return record

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _started_job_for_curl(
    url: str, admin: Admin, user: str, password: str
) -> tuple[int, dict[str, str]]:
    """A job acquired and started by a node of the node user: (pk, its auth headers)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        reply = http.post("/v1/auth/obtain", json={"username": user, "password": password})
        reply.raise_for_status()
        headers = {"Authorization": f"Bearer {reply.json()['access']}"}
        node = http.post(
            "/v1/nodes/create",
            json={
                "ip": "127.0.0.9",
                "index": 0,
                "cpu_mem": 1 << 30,
                "gpu_mem": None,
                "driver_version": None,
                "hardware_generation": None,
            },
            headers=headers,
        )
        node.raise_for_status()
        headers["Node-Id"] = str(node.json()["pk"])
        pk = admin.create_job("true")
        http.get(f"/v1/jobs/{pk}/acquire", headers=headers).raise_for_status()
        http.post(
            f"/v1/jobs/{pk}/start", json={"send_notification": ""}, headers=headers
        ).raise_for_status()
    return pk, headers


def _upload_case(folder: Path, mib: int) -> dict[str, Any]:
    """One round: curl uploads the file, then the agent uploads the same size as a job's
    output, each to the sink in front of a fresh reference server."""
    with devserver(folder / "server") as server:
        shared = shared_dir(folder)
        generator = _generator(shared)
        sink = Sink(server.url)
        try:
            admin = Admin(server)
            # the floor: curl streaming the file (-T; see CURL_NOTE), the node's token and
            # Node-Id
            pk, headers = _started_job_for_curl(sink.url, admin, *server.node)
            big = folder / "curl.bin"
            subprocess.run(f"python3 {generator} raw {mib} > {big}", shell=True, check=True)
            curl = [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-T",
                str(big),
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "Content-Disposition: attachment; filename=big.bin",
            ]
            for key, value in headers.items():
                curl += ["-H", f"{key}: {value}"]
            began = time.time()
            curl_proc = Measured(
                [*curl, f"{sink.url}/v1/jobs/{pk}/outputs/big/bin"],
                sample=0.01,
                log=folder / "curl.err",
            )
            curl_code = curl_proc.wait(600)
            if curl_code != 0:
                error = (folder / "curl.err").read_text(errors="replace").strip()
                raise RuntimeError(f"curl exited {curl_code}: {error}")
            curl_record = sink.record(pk, 30)
            curl_time = curl_record["end"] - began
            big.unlink()

            # the agent: a job writing the file, declared as an output
            done = shared / "upload.t1"
            job = admin.create_job(
                f"python3 {generator} raw {mib} > big.bin && {_stamp(done)}",
                outputs=[{"name": "big", "type": "bin", "path": "big.bin"}],
            )
            admin.close()
            config = agent_config(folder / "agent", sink.url, *server.node)
            proc = agent(config, sample=0.01, trace=True)
            code = proc.wait(600)
            record = sink.record(job, 30)
            problems = agent_problems(config)
            ended = _read_stamp(done)
        finally:
            sink.stop()
    agent_time = record["end"] - ended
    trace = proc.trace or []
    before = [rss for at, rss, _ in trace if at <= ended]
    during = [rss for at, rss, _ in trace if ended <= at <= record["end"] + 0.05]
    cpu_during = [cpu for at, _, cpu in trace if ended <= at <= record["end"] + 0.05]
    baseline = before[-1] if before else 0
    return {
        "agent_time": agent_time,
        "curl_time": curl_time,
        "ratio": agent_time / curl_time,
        "ok": record["bytes"] == mib * MIB and code == 0,
        "growth": max(during, default=baseline) - baseline,
        "sampled": bool(during),
        "record": record,
        "ended": ended,
        "upload_cpu": cpu_during[-1] - cpu_during[0] if len(cpu_during) > 1 else 0.0,
        "baseline": baseline,
        "peak": max(during, default=0),
        "code": code,
        "curl_record": curl_record,
        "curl_began": began,
        "curl_peak": curl_proc.peak_rss,
        "curl_code": curl_code,
        "problems": problems,
    }


def upload(quick: bool) -> Outcome:
    mib, rounds = (64, 1) if quick else (1024, ROUNDS)
    out = Outcome("upload")
    runs: list[dict[str, Any]] = []
    with bench_dir("upload") as folder:
        for n in range(rounds):
            place = folder / f"round{n}"
            place.mkdir(mode=0o711)
            runs.append(_upload_case(place, mib))
    case = median_round(runs, lambda run: float(run["ratio"]))
    growth = max(run["growth"] for run in runs)
    out.row(
        f"{mib} MiB output in {case['agent_time']:.2f} s ({mib / case['agent_time']:.0f} MiB/s)",
        f"curl {case['curl_time']:.2f} s",
        fmt_ratio(case["ratio"]),
        "≤ 1.30\u00d7",
        case["ratio"] <= 1.3 and all(run["ok"] for run in runs),
    )
    out.row(
        f"agent RSS growth {growth / MIB:.1f} MiB during the upload"
        + (f" (highest of {rounds} rounds)" if rounds > 1 else ""),
        target="≤ 30 MiB",
        passed=growth <= 30 * MIB and all(run["sampled"] for run in runs),
    )
    if rounds > 1:
        out.note(
            f"{rounds} rounds (curl then agent in each): ratios "
            f"{fmt_ratios([run['ratio'] for run in runs])}; the first row and the agent and "
            "curl lines below are the median round's"
        )
    out.note(CURL_NOTE)
    out.note(
        "server: the reference server behind bench/sink_proxy.py, which reads and discards "
        "upload bodies (the reference server keeps outputs as SQLite blobs, limit "
        "1,000,000,000 bytes: it cannot hold 1 GiB); timed at the sink from the request line "
        "to the last byte"
    )
    record, curl_record = case["record"], case["curl_record"]
    out.note(
        f"agent: job exit → upload request {record['start'] - case['ended']:.2f} s, request "
        f"{record['end'] - record['start']:.2f} s, {record['bytes'] / MIB:.0f} MiB received; "
        f"agent CPU in that time {case['upload_cpu']:.2f} s; "
        f"RSS {case['baseline'] / MIB:.0f} MiB before, peak {case['peak'] / MIB:.0f} MiB; "
        f"agent exit code {case['code']}"
    )
    out.note(
        f"curl: start → request {curl_record['start'] - case['curl_began']:.2f} s, request "
        f"{curl_record['end'] - curl_record['start']:.2f} s, "
        f"{curl_record['bytes'] / MIB:.0f} MiB received; curl peak RSS "
        f"{case['curl_peak'] / MIB:.0f} MiB; exit code {case['curl_code']}"
    )
    problems = sorted({problem for run in runs for problem in run["problems"]})
    if problems:
        out.note(f"agent logged: {'; '.join(problems[:5])}")
    return out
