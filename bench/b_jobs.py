"""Benches of many small jobs: overhead (reference and real server), throughput, noisy
neighbour, contention."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.common import (
    PYTHON,
    ROUNDS,
    Admin,
    Measured,
    Outcome,
    Seen,
    Server,
    UfdlServer,
    agent,
    agent_config,
    agent_events,
    agent_problems,
    bench_dir,
    devserver,
    fmt_ratio,
    fmt_ratios,
    is_spawn_helper,
    job_calls,
    median_round,
    per_job_calls,
    timestamp,
    wait_for,
)


@dataclass
class Batch:
    """One run of ``jobs`` `true` jobs by one process (the agent or the floor script)."""

    who: str
    jobs: int
    finished: int
    wall: float
    cpu: float
    """Its CPU seconds, with its spawn helper's (:attr:`helper_cpu`)."""
    helper_cpu: float
    server_cpu: float
    calls: int
    breakdown: str
    problems: list[str]
    machine_cpu: float = 0.0
    """CPU seconds the whole machine spent over the batch (every process, ours or not)."""

    @property
    def rate(self) -> float:
        return self.jobs / self.wall

    @property
    def machine_busy(self) -> float:
        """How many of the machine's cores were busy on average over the batch."""
        return self.machine_cpu / self.wall

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.wall


def run_batch(
    server: Server,
    folder: Path,
    jobs: int,
    *,
    floor: bool,
    slots: int = 1,
    ip: str = "127.0.0.4",
    agents: int = 1,
) -> Batch:
    """Create ``jobs`` `true` jobs, then run them all with one process (start-up
    included); or, with ``agents``, with that many agents (or floor scripts) started
    together on one queue (wall from the first start to the last exit, CPU summed)."""
    admin = Admin(server)
    pks = [admin.create_job("true") for _ in range(jobs)]
    admin.close()
    server.requests()
    server_cpu = server.cpu_seconds()
    machine_cpu = _machine_cpu()
    problems: list[str] = []
    base = [int(part) for part in ip.split(".")]
    ips = [".".join(map(str, [*base[:3], base[3] + n])) for n in range(agents)]
    if floor:
        procs = [Measured(floor_script(server, ips[n], n)) for n in range(agents)]
        codes = [proc.wait(600) for proc in procs]
        who = "floor script" if agents == 1 else f"{agents} floor scripts"
        problems += [f"floor script exited {code}" for code in codes if code != 0]
    else:
        configs = [
            agent_config(
                folder / f"agent{n}" if agents > 1 else folder,
                server.url,
                *server.node,
                ip=ips[n],
                slots=slots,
            )
            for n in range(agents)
        ]
        procs = [agent(config) for config in configs]
        codes = [proc.wait(600) for proc in procs]
        who = f"agent, {slots} slot(s)" if agents == 1 else f"{agents} agents of {slots} slot(s)"
        problems = [p for config in configs for p in agent_problems(config)]
        problems += [f"agent exited {code}" for code in codes if code != 0]
    machine_cpu = _machine_cpu() - machine_cpu
    server_cpu = server.cpu_seconds() - server_cpu
    seen = server.requests()
    finished = job_calls(seen, "finish")
    return Batch(
        who=who,
        jobs=jobs,
        finished=sum(1 for pk in pks if finished[pk]),
        wall=max(p.ended or 0.0 for p in procs) - min(p.started for p in procs),
        cpu=sum(p.cpu() for p in procs),
        helper_cpu=sum(p.helper_cpu() for p in procs),
        server_cpu=server_cpu,
        calls=len(seen),
        breakdown=per_job_calls(seen, jobs),
        problems=problems,
        machine_cpu=machine_cpu,
    )


def floor_script(server: Server, ip: str, index: int, command: str = "") -> list[str]:
    """The command line of one minimal script (:mod:`bench.floor_client`) on ``server``:
    node ``ip``, taking the list's job at ``index``, running ``command`` (``true`` when
    empty)."""
    return [PYTHON, "-m", "bench.floor_client", server.url, *server.node, ip, str(index), command]


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent running anything (all cores: user, nice,
    system, interrupts; not idle, I/O wait or time the hypervisor stole)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


def spawn_helper_share(batch: Batch) -> str:
    """The spawn helper's part of a batch's CPU, when it had one."""
    if not batch.helper_cpu:
        return ""
    return f" (of which its spawn helper {batch.helper_cpu / batch.jobs * 1000:.1f})"


def describe(batch: Batch) -> str:
    text = (
        f"{batch.who}: {batch.finished}/{batch.jobs} jobs in {batch.wall:.2f} s "
        f"({batch.rate:.1f} jobs/s, {batch.wall / batch.jobs * 1000:.1f} ms/job), "
        f"its CPU {batch.cpu / batch.jobs * 1000:.1f} ms/job"
        f"{spawn_helper_share(batch)}; "
        f"server CPU {batch.server_share * 100:.0f}% of one core; "
        f"{batch.calls / batch.jobs:.2f} server calls/job ({batch.breakdown})"
    )
    if batch.problems:
        text += f"; logged: {'; '.join(sorted(set(batch.problems))[:5])}"
    return text


def overhead(quick: bool) -> Outcome:
    jobs, rounds = (30, 1) if quick else (300, ROUNDS)
    out = Outcome("overhead")
    pairs: list[tuple[Batch, Batch]] = []
    with bench_dir("overhead") as folder:
        for n in range(rounds):  # floor and agent in turn: both see the same moments
            with devserver(folder / f"floor{n}") as server:
                floor = run_batch(server, folder / f"floor{n}", jobs, floor=True)
            with devserver(folder / f"agent{n}") as server:
                one = run_batch(server, folder / f"agent{n}", jobs, floor=False)
            pairs.append((floor, one))

    def ratio_of(pair: tuple[Batch, Batch]) -> float:
        return pair[0].rate / pair[1].rate

    floor, one = median_round(pairs, ratio_of)
    ratio = ratio_of((floor, one))
    all_finished = all(agent_run.finished == jobs for _, agent_run in pairs)
    out.row(
        f"{one.rate:.1f} jobs/s ({jobs} \u00d7 true, 1 slot)",
        f"{floor.rate:.1f} jobs/s",
        fmt_ratio(ratio),
        "≤ 1.30\u00d7",
        ratio <= 1.3 and all_finished,
    )
    out.row(
        f"{one.calls / jobs:.2f} server calls/job",
        f"{floor.calls / jobs:.2f}",
        fmt_ratio(one.calls / floor.calls),
        "report",
    )
    out.row(f"server CPU {one.server_share * 100:.0f}% of a core (agent run)")
    if rounds > 1:
        out.note(
            f"{rounds} rounds, floor then agent in each: ratios "
            f"{fmt_ratios(list(map(ratio_of, pairs)))}"
            f"; agent CPU {', '.join(f'{a.cpu / jobs * 1000:.1f}' for _, a in pairs)} ms/job;"
            " the rows and the lines below are the median round's"
        )
    out.note(describe(floor))
    out.note(describe(one))
    return out


def overhead_ufdl(quick: bool) -> Outcome:
    jobs = 10 if quick else 50
    out = Outcome("overhead-ufdl")
    with bench_dir("ufdl") as folder:
        try:
            server = UfdlServer(folder)
        except RuntimeError as exc:
            out.row(f"not run: {exc}", target="≤ 1.10\u00d7", passed=False)
            return out
        try:
            server.reset()
            floor = run_batch(server, folder / "floor", jobs, floor=True)
            server.reset()
            one = run_batch(server, folder / "agent", jobs, floor=False)
        finally:
            server.stop()
    ratio = floor.rate / one.rate
    out.row(
        f"{one.rate:.2f} jobs/s ({jobs} \u00d7 true, real backend)",
        f"{floor.rate:.2f} jobs/s",
        fmt_ratio(ratio),
        "≤ 1.10\u00d7",
        ratio <= 1.1 and one.finished == jobs,
    )
    out.row(
        f"{one.calls / jobs:.2f} server calls/job",
        f"{floor.calls / jobs:.2f}",
        fmt_ratio(one.calls / floor.calls),
    )
    out.row(f"server CPU {one.server_share * 100:.0f}% of a core (agent run)")
    out.note(describe(floor))
    out.note(describe(one))
    return out


@dataclass
class Scaling:
    """One throughput round: the same jobs by 1 slot, 2 slots, 2 agents of 1 slot, one
    floor script and two floor scripts, in that order."""

    one: Batch
    two: Batch
    apart: Batch
    floor: Batch
    floors: Batch

    @property
    def gain(self) -> float:
        return self.two.rate / self.one.rate


def _scaling(folder: Path, jobs: int) -> Scaling:
    batches: list[Batch] = []
    for name, floor, slots, agents in (
        ("one", False, 1, 1),
        ("two", False, 2, 1),
        ("apart", False, 1, 2),
        ("floor", True, 1, 1),
        ("floors", True, 1, 2),
    ):
        with devserver(folder / name) as server:
            batches.append(
                run_batch(server, folder / name, jobs, floor=floor, slots=slots, agents=agents)
            )
    return Scaling(*batches)


def throughput(quick: bool) -> Outcome:
    jobs, rounds = (30, 1) if quick else (300, ROUNDS)
    out = Outcome("throughput")
    with bench_dir("throughput") as folder:
        # every batch in each round: a ratio compares figures of the same moments
        measured = [_scaling(folder / f"round{n}", jobs) for n in range(rounds)]
    scaling = median_round(measured, lambda each: each.gain)
    one, two, apart, floor, floors = (
        scaling.one,
        scaling.two,
        scaling.apart,
        scaling.floor,
        scaling.floors,
    )
    ratio = scaling.gain
    out.row(
        f"{two.rate:.1f} jobs/s (2 slots)",
        f"{one.rate:.1f} jobs/s (1 slot)",
        fmt_ratio(ratio),
        "≥ 1.70\u00d7",
        ratio >= 1.7 and two.finished == jobs,
    )
    out.row(f"server CPU {two.server_share * 100:.0f}% of a core (2 slots)")
    out.row(
        f"{apart.rate:.1f} jobs/s (2 agents of 1 slot on one queue)",
        f"{one.rate:.1f} jobs/s (1 slot)",
        fmt_ratio(apart.rate / one.rate),
        "report",
    )
    out.row(
        f"{floors.rate:.1f} jobs/s (2 floor scripts on one queue)",
        f"{floor.rate:.1f} jobs/s (1 floor script)",
        fmt_ratio(floors.rate / floor.rate),
        "report",
    )
    if rounds > 1:
        out.note(
            f"{rounds} rounds (1 slot, 2 slots, 2 agents, 1 floor script, 2 floor scripts "
            f"in each): 2 slots {fmt_ratios([each.gain for each in measured])}; 2 agents "
            f"{fmt_ratios([each.apart.rate / each.one.rate for each in measured])}; 2 floor "
            f"scripts {fmt_ratios([each.floors.rate / each.floor.rate for each in measured])}"
            "; the rows and the lines below are the median round's (by the 2-slot gain)"
        )
    out.note(describe(one))
    out.note(describe(two))
    out.note(
        f"{describe(apart)}. For reference: what running each slot in a process of its "
        "own would reach on this machine"
    )
    out.note(
        f"machine busy (all processes, of {psutil.cpu_count()} cores): {one.machine_busy:.2f}"
        f" cores over the 1-slot run, {two.machine_busy:.2f} over the 2-slot run,"
        f" {apart.machine_busy:.2f} over the 2-agent run"
    )
    out.note(
        f"{describe(floors)}. For reference: what two of the overhead bench's minimal"
        " sequential scripts reach side by side on this machine (the floor of a 2-way"
        f" gain); machine busy {floors.machine_busy:.2f} cores over it"
    )
    return out


# ----------------------------------------------------------------- noisy neighbour


@dataclass
class Neighbour:
    batch_wall: float
    finished: int
    long_still_running: bool
    cancel_to_gone: float | None
    cancel_to_last_call: float | None
    cancel_to_ended: float | None
    server_share: float
    agent_cpu: float
    problems: list[str]


def _job_pids(agent_proc: Measured) -> set[psutil.Process]:
    """The agent's job processes: its descendants but its spawn helper."""
    try:
        descendants = agent_proc.ps.children(recursive=True)
    except psutil.Error:
        return set()
    return {process for process in descendants if not is_spawn_helper(process)}


def _running(process: psutil.Process) -> bool:
    """Whether ``process`` is there and not a zombie (it may end between the checks)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def neighbour_phase(folder: Path, *, noisy: bool, jobs: int, window: float) -> Neighbour:
    """Slot 1 holds a long job (noisy: `yes`; quiet: `sleep`); slot 2 runs ``jobs``
    `true` jobs. The long job is cancelled once the batch is done (or after ``window``
    seconds); the batch wall is first acquire → last finish on the server."""
    with devserver(folder) as server:
        admin = Admin(server)
        config = agent_config(folder / "agent", server.url, *server.node, slots=2)
        proc = agent(config, idle_exit=False)
        long_cmd = "exec timeout 300 yes" if noisy else "exec sleep 300"
        long_pk = admin.create_job(long_cmd)
        admin.wait_started(long_pk)
        time.sleep(0.5)
        long_procs = _job_pids(proc)
        server.requests()
        server_cpu, agent_cpu, began = server.cpu_seconds(), proc.cpu(), time.monotonic()
        pks = [admin.create_job("true") for _ in range(jobs)]
        seen: list[Seen] = []

        def batch_done() -> bool:
            seen.extend(server.requests())
            finished = job_calls(seen, "finish")
            return all(finished[pk] for pk in pks)

        in_window = wait_for(batch_done, window, period=0.1)
        long_running = in_window and any(_running(p) for p in long_procs)
        cancelled = time.time()
        admin.cancel(long_pk)
        gone = None
        if wait_for(lambda: not any(_running(p) for p in long_procs), 30, period=0.005):
            gone = time.time() - cancelled
        ended_ok = wait_for(
            lambda: any(e.get("job") == long_pk for e in agent_events(config, "job ended")),
            60,
            period=0.02,
        )
        wait_for(batch_done, 120, period=0.1)
        server_cpu = server.cpu_seconds() - server_cpu
        agent_cpu = proc.cpu() - agent_cpu
        elapsed = time.monotonic() - began
        proc.stop()
        seen.extend(server.requests())
        admin.close()
    acquired = [
        s.time for s in seen if s.status == 200 and _pk_of(s) in pks and "acquire" in s.path
    ]
    finishes = [s.time for s in seen if s.status == 200 and _pk_of(s) in pks and "finish" in s.path]
    long_calls = [  # the agent's calls about the long job since the cancel (not the cancel)
        s.time
        for s in seen
        if _pk_of(s) == long_pk and s.time >= cancelled and not s.path.endswith("/cancel")
    ]
    ended = None
    if ended_ok:
        record = next(e for e in agent_events(config, "job ended") if e.get("job") == long_pk)
        ended = timestamp(record["timestamp"]) - cancelled
    return Neighbour(
        batch_wall=max(finishes) - min(acquired) if finishes and acquired else float("nan"),
        finished=len({_pk_of(s) for s in seen if "finish" in s.path} & set(pks)),
        long_still_running=long_running,
        cancel_to_gone=gone,
        cancel_to_last_call=max(long_calls) - cancelled if long_calls else None,
        cancel_to_ended=ended,
        server_share=server_cpu / elapsed,
        agent_cpu=agent_cpu,
        problems=agent_problems(config),
    )


def _pk_of(seen: Seen) -> int | None:
    parts = seen.path.split("/")
    if len(parts) > 3 and parts[2] == "jobs" and parts[3].isdigit():
        return int(parts[3])
    return None


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def noisy(quick: bool) -> Outcome:
    jobs, window, rounds = (20, 3.0, 1) if quick else (100, 20.0, ROUNDS)
    out = Outcome("noisy")
    pairs: list[tuple[Neighbour, Neighbour]] = []
    with bench_dir("noisy") as folder:
        for n in range(rounds):
            quiet = neighbour_phase(folder / f"quiet{n}", noisy=False, jobs=jobs, window=window)
            loud = neighbour_phase(folder / f"loud{n}", noisy=True, jobs=jobs, window=window)
            pairs.append((quiet, loud))

    def ratio_of(pair: tuple[Neighbour, Neighbour]) -> float:
        return pair[1].batch_wall / pair[0].batch_wall

    quiet, loud = median_round(pairs, ratio_of)
    ratio = ratio_of((quiet, loud))
    cancels = [pair[1].cancel_to_last_call for pair in pairs]
    slowest_cancel = None if None in cancels else max(c for c in cancels if c is not None)
    bound = (
        ""
        if loud.finished == jobs and loud.long_still_running
        else f" (lower bound: the batch outlasted {window:g} s of noise)"
    )
    out.row(
        f"{loud.batch_wall:.2f} s for {jobs} \u00d7 true beside `yes`{bound}",
        f"{quiet.batch_wall:.2f} s beside `sleep`",
        fmt_ratio(ratio),
        "≤ 1.15\u00d7",
        ratio <= 1.15 and all(pair[1].finished == jobs for pair in pairs),
    )
    cancel = loud.cancel_to_last_call
    out.row(
        f"cancel of `yes`: {_secs(cancel)} to the agent's last call for it"
        + (f" (slowest of {rounds} rounds {_secs(slowest_cancel)})" if rounds > 1 else ""),
        f"{_secs(quiet.cancel_to_last_call)} (`sleep`)",
        fmt_ratio(cancel / quiet.cancel_to_last_call)
        if cancel and quiet.cancel_to_last_call
        else "—",
        "≤ 2 s",
        slowest_cancel is not None and slowest_cancel <= 2.0,
    )
    if rounds > 1:
        out.note(
            f"{rounds} rounds, beside `sleep` then beside `yes` in each: ratios "
            f"{fmt_ratios(list(map(ratio_of, pairs)))}; the rows and the lines below are "
            "the median round's"
        )
    out.row(f"server CPU {loud.server_share * 100:.0f}% of a core (beside `yes`)")
    for name, phase in (("beside sleep", quiet), ("beside yes", loud)):
        long_job = (
            "the long job ran until the batch ended"
            if phase.long_still_running
            else f"not done within {window:g} s: the long job was cancelled first"
        )
        out.note(
            f"{name}: {phase.finished}/{jobs} true jobs finished, batch {phase.batch_wall:.2f} s"
            f" ({long_job})"
            f"; agent CPU {phase.agent_cpu:.2f} s over the phase; server CPU "
            f"{phase.server_share * 100:.0f}% of a core; cancel → job processes gone "
            f"{_secs(phase.cancel_to_gone)}, → agent's last call for the job "
            f"{_secs(phase.cancel_to_last_call)}, → agent logs 'job ended' "
            f"{_secs(phase.cancel_to_ended)}"
        )
        if phase.problems:
            out.note(f"{name}: agent logged: {'; '.join(sorted(set(phase.problems))[:5])}")
    return out


# ----------------------------------------------------------------- contention


@dataclass
class Crowd:
    """One contention round: ``jobs`` jobs of ``sleep`` on one queue, taken by several
    agents (or minimal scripts) started together."""

    who: str
    wall: float
    """First acquire to last finish, from the server's record of the calls."""
    process_wall: float
    """First process start to last exit (start-ups included)."""
    cpu: float
    server_cpu: float
    seen: list[Seen]
    records: list[tuple[int, int, str, str, str | None]]
    pks: list[int]
    problems: list[str]
    machine_busy: float


def _crowd(
    folder: Path, jobs: int, seconds: float, runners: int, slots: int, *, floor: bool
) -> Crowd:
    """Run ``jobs`` jobs of ``sleep seconds`` with ``runners`` agents of ``slots`` slots, or
    (``floor``) with ``runners * slots`` minimal scripts, on a devserver of its own."""
    with devserver(folder / "server") as server:
        admin = Admin(server)
        pks = [admin.create_job(f"sleep {seconds}") for _ in range(jobs)]
        admin.close()
        server.requests()
        server_cpu = server.cpu_seconds()
        machine_cpu = _machine_cpu()
        problems: list[str] = []
        if floor:
            procs = [
                Measured(floor_script(server, f"127.0.0.{11 + n}", n, f"sleep {seconds}"))
                for n in range(runners * slots)
            ]
            codes = [proc.wait(600) for proc in procs]
            problems += [f"floor script exited {code}" for code in codes if code != 0]
            who = f"{runners * slots} minimal scripts"
        else:
            configs = [
                agent_config(
                    folder / f"agent{n}",
                    server.url,
                    *server.node,
                    ip=f"127.0.0.{11 + n}",
                    slots=slots,
                )
                for n in range(runners)
            ]
            procs = [agent(config) for config in configs]
            for proc in procs:
                proc.wait(600)
            problems += [p for config in configs for p in agent_problems(config)]
            who = f"{runners} agents of {slots} slots"
        server_cpu = server.cpu_seconds() - server_cpu
        machine_cpu = _machine_cpu() - machine_cpu
        seen = server.requests()
        with sqlite3.connect(
            f"file:{folder / 'server' / 'devserver.sqlite3'}?mode=ro", uri=True
        ) as db:
            records = db.execute(
                "SELECT pk, node, start_time, end_time, error_reason FROM jobs"
            ).fetchall()
    process_wall = max(p.ended or 0 for p in procs) - min(p.started for p in procs)
    first = min(s.time for s in seen if "/acquire" in s.path and s.status == 200)
    last = max(s.time for s in seen if "/finish" in s.path)
    return Crowd(
        who=who,
        wall=last - first,
        process_wall=process_wall,
        cpu=sum(p.cpu() for p in procs),
        server_cpu=server_cpu,
        seen=seen,
        records=records,
        pks=pks,
        problems=problems,
        machine_busy=machine_cpu / process_wall,
    )


def contention(quick: bool) -> Outcome:
    agents, slots = 4, 2
    jobs = 40 if quick else 400
    seconds = 0.05
    ideal = jobs * seconds / (agents * slots)
    rounds = 1 if quick else ROUNDS
    out = Outcome("contention")
    pairs: list[tuple[Crowd, Crowd]] = []
    with bench_dir("contention") as folder:
        for n in range(rounds):  # agents and scripts in turn: both see the same moments
            crowd = _crowd(folder / f"agents{n}", jobs, seconds, agents, slots, floor=False)
            floors = _crowd(folder / f"floors{n}", jobs, seconds, agents, slots, floor=True)
            pairs.append((crowd, floors))

    def efficiency(pair: tuple[Crowd, Crowd]) -> float:
        return ideal / pair[0].wall

    crowd, floors = median_round(pairs, efficiency)
    doubles: list[int] = []
    unfinished: list[int] = []
    bad: list[tuple[int, int, str, str, str | None]] = []
    for each, _ in pairs:  # every agents' round is checked for duplicates
        acquired, started, finished = (
            job_calls(each.seen, a) for a in ("acquire", "start", "finish")
        )
        doubles += [
            pk for pk in each.pks if acquired[pk] > 1 or started[pk] > 1 or finished[pk] > 1
        ]
        unfinished += [pk for pk in each.pks if finished[pk] == 0]
        ours = set(each.pks)
        bad += [r for r in each.records if r[0] in ours and (not r[2] or not r[3] or r[4])]
    ratio = ideal / crowd.wall
    out.row(
        f"{crowd.wall:.2f} s for {jobs} \u00d7 sleep {seconds} on {agents}\u00d7{slots} slots",
        f"ideal {ideal:.2f} s",
        f"{ratio * 100:.0f}% of ideal",
        "≥ 70%",
        ratio >= 0.7 and not doubles and not unfinished,
    )
    out.row(
        f"{len(doubles)} jobs acquired/started/finished twice, {len(unfinished)} unfinished, "
        f"{len(bad)} bad records" + (f" (all {rounds} rounds)" if rounds > 1 else ""),
        target="0 duplicates",
        passed=not doubles and not unfinished and not bad,
    )
    out.row(f"server CPU {crowd.server_cpu / crowd.process_wall * 100:.0f}% of a core")
    out.row(
        f"{floors.wall:.2f} s by {floors.who} on one queue",
        f"ideal {ideal:.2f} s",
        f"{ideal / floors.wall * 100:.0f}% of ideal",
        "report",
    )
    if rounds > 1:
        out.note(
            f"{rounds} rounds, agents then minimal scripts in each: agents "
            + ", ".join(f"{ideal / a.wall * 100:.0f}%" for a, _ in pairs)
            + "; scripts "
            + ", ".join(f"{ideal / f.wall * 100:.0f}%" for _, f in pairs)
            + " of ideal; the rows and the lines below are the median agents' round's"
        )
    conflicts = sum(1 for s in crowd.seen if "/acquire" in s.path and s.status != 200)
    by_node = Counter(r[1] for r in crowd.records if r[0] in set(crowd.pks))
    out.note(
        f"first acquire → last finish {crowd.wall:.2f} s; whole processes (start-up included) "
        f"{crowd.process_wall:.2f} s = {ideal / crowd.process_wall * 100:.0f}% of ideal; "
        f"{conflicts} acquire conflicts (another node won); jobs per node "
        f"{sorted(by_node.values())}; agents' CPU {crowd.cpu:.2f} s in all "
        f"({crowd.cpu / jobs * 1000:.1f} ms/job); server CPU {crowd.server_cpu:.2f} s; "
        f"machine busy {crowd.machine_busy:.2f} of {psutil.cpu_count()} cores; "
        f"{len(crowd.seen) / jobs:.2f} calls/job ({per_job_calls(crowd.seen, jobs)})"
    )
    out.note(
        f"for reference, the same jobs taken by {floors.who} (the overhead bench's floor, "
        f"each running `sh -c 'sleep {seconds}'`): first acquire → last finish "
        f"{floors.wall:.2f} s; their CPU {floors.cpu / jobs * 1000:.1f} ms/job; server CPU "
        f"{floors.server_cpu:.2f} s; machine busy {floors.machine_busy:.2f} cores; "
        f"{len(floors.seen) / jobs:.2f} calls/job"
    )
    problems = crowd.problems + floors.problems
    if problems:
        out.note(f"logged: {'; '.join(sorted(set(problems))[:6])}")
    return out
