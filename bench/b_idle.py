"""Benches of an idle agent: its cost while waiting, and how fast it picks up a job."""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    MIB,
    Admin,
    DevServerProcess,
    Measured,
    Outcome,
    Seen,
    agent,
    agent_config,
    agent_problems,
    bench_dir,
    call_kind,
    devserver,
    timestamp,
    wait_for,
)

POLL = 1.0


def _idle_agent(folder: Path, server: DevServerProcess, **kwargs: object) -> tuple[Measured, Path]:
    """An agent (poll.interval = 1) that has started and is polling an empty queue."""
    config = agent_config(folder / "agent", server.url, *server.node, poll=POLL)
    proc = agent(config, idle_exit=False, **kwargs)
    seen: list[Seen] = []

    def polling() -> bool:
        seen.extend(server.requests())
        return any(s.path == "/v1/jobs/list" for s in seen)

    if not wait_for(polling, 60, period=0.05):
        proc.stop()
        raise RuntimeError(f"the agent never polled: {agent_problems(config)}")
    time.sleep(2 * POLL)  # past start-up
    server.requests()
    return proc, config


def idle(quick: bool) -> Outcome:
    seconds = 5.0 if quick else 60.0
    out = Outcome("idle")
    with bench_dir("idle") as folder, devserver(folder / "server") as server:
        proc, config = _idle_agent(folder, server, sample=0.1, trace=True)
        cpu, server_cpu, began = proc.cpu(), server.cpu_seconds(), time.time()
        time.sleep(seconds)
        cpu = proc.cpu() - cpu
        server_cpu = server.cpu_seconds() - server_cpu
        seen = server.requests()
        rss_now = proc.rss()
        window = [rss for at, rss, _ in (proc.trace or []) if at >= began]
        peak_window = max(window, default=rss_now)
        peak_ever = proc.peak_rss
        proc.stop()
        problems = agent_problems(config)
    scaled = cpu * 60.0 / seconds
    per_minute = len(seen) * 60.0 / seconds
    out.row(
        f"agent CPU {scaled:.3f} s per 60 s idle",
        target="≤ 0.30 CPU-s",
        passed=scaled <= 0.3,
    )
    out.row(
        f"agent RSS {peak_window / MIB:.0f} MiB (peak while idle)",
        target="≤ 70 MiB",
        passed=peak_window <= 70 * MIB,
    )
    kinds = Counter(call_kind(s.path) for s in seen)
    out.row(
        f"{per_minute:.0f} requests/min ({', '.join(f'{k} {v}' for k, v in kinds.most_common())})"
    )
    out.note(
        f"{seconds:.0f} s idle, poll.interval = {POLL:g}: agent CPU {cpu:.3f} s "
        f"({cpu / seconds * 100:.2f}% of a core), RSS now {rss_now / MIB:.1f} MiB, peak since "
        f"start (VmHWM) {peak_ever / MIB:.1f} MiB; server CPU {server_cpu:.3f} s "
        f"({server_cpu / seconds * 100:.2f}% of a core)"
        + (f"; measured over {seconds:.0f} s and scaled to 60 s" if seconds != 60.0 else "")
    )
    if problems:
        out.note(f"agent logged: {'; '.join(sorted(set(problems))[:5])}")
    return out


def pickup(quick: bool) -> Outcome:
    jobs = 5 if quick else 50
    target = POLL / 2 + 0.05
    # Each job is created at its own phase of the agent's poll cycle, the phases evenly
    # spread over the cycle (in a shuffled order): the median over uniformly random
    # arrival times, without the sampling noise of drawing them at random.
    phases = [(index + 0.5) / jobs * POLL for index in range(jobs)]
    random.Random(11).shuffle(phases)
    out = Outcome("pickup")
    delays: list[float] = []
    with bench_dir("pickup") as folder, devserver(folder / "server") as server:
        proc, config = _idle_agent(folder, server)
        admin = Admin(server)
        server_cpu, began = server.cpu_seconds(), time.monotonic()
        last_list = time.time()
        for phase in phases:
            time.sleep(0.1)  # the agent is idle again: it lists once right after a job
            lists = [s.time for s in server.requests() if s.path == "/v1/jobs/list"]
            last_list = max(lists, default=last_list)
            at = last_list + phase
            while at < time.time() + 0.01:
                at += POLL
            time.sleep(at - time.time())
            pk = admin.create_job("true")
            record = admin.wait_started(pk, timeout=60)
            delays.append(timestamp(record["start_time"]) - timestamp(record["creation_time"]))
            wait_for(lambda pk=pk: bool(admin.job(pk).get("end_time")), 60, period=0.02)
        server_share = (server.cpu_seconds() - server_cpu) / (time.monotonic() - began)
        admin.close()
        proc.stop()
        problems = agent_problems(config)
    median = statistics.median(delays)
    ordered = sorted(delays)
    out.row(
        f"median creation → start {median * 1000:.0f} ms ({jobs} jobs)",
        f"ideal {POLL / 2 * 1000:.0f} ms (interval/2)",
        f"{median / (POLL / 2):.2f}\u00d7",
        f"≤ {target * 1000:.0f} ms",
        median <= target,
    )
    out.note(
        f"creation → start (server's times): min {ordered[0] * 1000:.0f} ms, median "
        f"{median * 1000:.0f} ms, p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1000:.0f} ms, max "
        f"{ordered[-1] * 1000:.0f} ms; poll.interval = {POLL:g} s; jobs created at evenly "
        f"spread phases after the agent's last list call; server CPU "
        f"{server_share * 100:.1f}% of a core (includes the bench's polling of the job records)"
    )
    if problems:
        out.note(f"agent logged: {'; '.join(sorted(set(problems))[:5])}")
    return out
