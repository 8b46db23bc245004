"""The pure parts of operating an agent: liveness from ticks, readiness, the STATUS=
line, metric call names, the endpoint replies, the link's log lines, notify messages
on a real datagram socket, and ``agent status``'s table."""

from __future__ import annotations

import socket
from http import HTTPStatus

import pytest
import structlog

from agent.commands.status import elapsed_text, status_table, status_url
from agent.health import LoopClock, SlotView, Tick, stalled_loops, status_line, why_not_ready
from agent.healthserver import Endpoints, answer, render, split_listen
from agent.metrics import AgentMetrics
from agent.sdnotify import Notifier, watchdog_seconds
from agent.server.link import ServerLink, answered, call_name


def test_a_loop_is_stalled_only_past_its_own_promise() -> None:
    ticks = {"poll": Tick(at=100.0, within=10.0), "heartbeat": Tick(at=50.0, within=80.0)}
    assert stalled_loops(ticks, 110.0) == []
    assert stalled_loops(ticks, 110.5) == ["poll"]
    assert stalled_loops(ticks, 131.0) == ["heartbeat", "poll"]
    assert stalled_loops({}, 1e9) == []


def test_the_loop_clock_forgets_a_loop_that_ended() -> None:
    now = [0.0]
    clock = LoopClock(lambda: now[0])
    clock.tick("poll", 5)
    now[0] = 6
    assert clock.stalled() == ["poll"]
    clock.done("poll")
    assert clock.stalled() == []


def test_readiness_needs_registration_and_an_answering_server() -> None:
    assert why_not_ready(False, True) == "not logged in and registered yet"
    assert why_not_ready(True, False, "POST /v1/jobs/list: server unreachable") == (
        "the job server does not answer: POST /v1/jobs/list: server unreachable"
    )
    assert why_not_ready(True, True) is None


def slot(index: int, job: int | None = None, progress: float | None = None) -> SlotView:
    return SlotView(index, 10 + index, job, "running" if job else "idle", progress, 0.0)


def test_status_lines_for_systemd() -> None:
    assert status_line([slot(0), slot(1)]) == "idle, 2 slots"
    assert status_line([slot(0)]) == "idle, 1 slot"
    assert status_line([slot(0, 42, 0.37)]) == "running job 42 (37%)"
    assert status_line([slot(0, 42, 0.37), slot(1), slot(2, 43, None)]) == (
        "running jobs 42 (37%), 43; 1 of 3 slots idle"
    )
    assert status_line([slot(0, 42, 0.5)], "stopping") == "stopping: running job 42 (50%)"
    assert status_line([slot(0)], "stopping") == "stopping, no job running"
    assert status_line([slot(0, 42, 0.5)], "draining") == "draining: running job 42 (50%)"
    assert status_line([slot(0), slot(1)], "draining") == (
        "drained (agent resume takes jobs again), idle, 2 slots"
    )


def test_slot_json_has_iso_time_and_elapsed() -> None:
    view = SlotView(0, 12, 42, "running", 0.123456, since=86400.0, pid=77)
    assert view.as_json(86465.04) == {
        "slot": 0,
        "node": 12,
        "job": 42,
        "phase": "running",
        "progress": 0.1235,
        "since": "1970-01-02T00:00:00Z",
        "elapsed": 65.0,
        "pid": 77,
    }


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/v1/jobs/42/acquire", "GET /v1/jobs/{pk}/acquire"),
        ("POST", "/v1/jobs/42/progress/0.3700", "POST /v1/jobs/{pk}/progress/{value}"),
        ("POST", "/v1/jobs/7/outputs/my%20out/str", "POST /v1/jobs/{pk}/outputs/{name}/{type}"),
        ("GET", "/v1/jobs/7/outputs/a/b/info", "GET /v1/jobs/{pk}/outputs/{name}/{type}/info"),
        ("PATCH", "/v1/nodes/3", "PATCH /v1/nodes/{pk}"),
        ("POST", "/v1/jobs/list", "POST /v1/jobs/list"),
        ("GET", "/v1/job-templates/5?x=1", "GET /v1/job-templates/{pk}"),
        ("GET", "https://files.example.org/data.tar", "GET (external URL)"),
    ],
)
def test_call_names_keep_one_series_per_call(method: str, path: str, name: str) -> None:
    assert call_name(method, path) == name


def test_the_link_logs_an_outage_once_and_its_end_once() -> None:
    now = [0.0]
    link = ServerLink(clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        link.record(200)
        for second in range(1, 20):
            now[0] = float(second)
            link.record(None, "POST /v1/jobs/list: server unreachable")
            link.record(503)
        assert not link.up
        now[0] = 25.0
        link.record(500)  # a server that answers, if badly, is there
        link.record(200)
    assert link.up and link.outages == 1
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("server unreachable; retrying quietly until it answers", "warning"),
        ("server reachable again", "info"),
    ]
    assert logs[1]["down_for"] == 24.0
    assert answered(404) and answered(500) and not answered(502) and not answered(None)


def endpoints(stalled: list[str], not_ready: str | None) -> Endpoints:
    metrics = AgentMetrics()
    return Endpoints(
        stalled=lambda: stalled,
        why_not_ready=lambda: not_ready,
        metrics=metrics.render,
        status=lambda: {"state": "running"},
    )


def test_endpoint_replies() -> None:
    fine = endpoints([], None)
    assert answer("GET", "/healthz", fine).status is HTTPStatus.OK
    assert answer("GET", "/readyz?verbose", fine).body == b"ready\n"
    stuck = endpoints(["poll"], "the job server does not answer")
    assert answer("GET", "/healthz", stuck).status is HTTPStatus.SERVICE_UNAVAILABLE
    assert answer("GET", "/healthz", stuck).body == b"stalled: poll\n"
    assert answer("GET", "/readyz", stuck).body == b"not ready: the job server does not answer\n"
    metrics = answer("GET", "/metrics", fine)
    assert metrics.content_type.startswith("text/plain; version=")
    assert b"agent_slots_busy 0.0" in metrics.body
    assert answer("GET", "/status", fine).body == b'{\n  "state": "running"\n}\n'
    assert answer("POST", "/healthz", fine).status is HTTPStatus.METHOD_NOT_ALLOWED
    assert answer("GET", "/", fine).status is HTTPStatus.NOT_FOUND
    head = render(answer("HEAD", "/healthz", fine), head_only=True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 3\r\n" in head


def test_listen_addresses() -> None:
    assert split_listen("127.0.0.1:9465") == ("127.0.0.1", 9465)
    assert split_listen("[::1]:9465") == ("::1", 9465)
    assert status_url("0.0.0.0:9465") == "http://127.0.0.1:9465/status"
    assert status_url("[::]:1") == "http://[::1]:1/status"
    assert status_url("10.0.0.5:9465") == "http://10.0.0.5:9465/status"


def test_notify_messages_reach_an_abstract_socket_and_never_block() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0agent-notify-test")
        environ = {"NOTIFY_SOCKET": "@agent-notify-test", "OTHER": "x"}
        notifier = Notifier.from_env(environ)
        assert environ == {"OTHER": "x"}  # nothing the agent starts can speak for it
        notifier.send("READY=1", "STATUS=idle, 1 slot")
        assert receiver.recv(100) == b"READY=1\nSTATUS=idle, 1 slot"
        for _ in range(1000):  # far beyond the receive queue: dropped, not blocked
            notifier.send("WATCHDOG=1")
        assert notifier.dropped > 0
        notifier.close()
    Notifier(None).send("READY=1")  # not under systemd: nothing happens


def test_watchdog_seconds_from_the_environment() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, 5) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, 5) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"}, 5) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}, 5) is None
    assert watchdog_seconds({}, 5) is None


def test_status_table() -> None:
    document = {
        "version": "1.2",
        "server": "http://jobs:8000",
        "state": "draining",
        "ready": False,
        "not_ready_because": "the job server does not answer",
        "stalled_loops": ["poll"],
        "slots": [
            {
                "slot": 0,
                "node": 12,
                "job": 42,
                "phase": "running",
                "progress": 0.37,
                "elapsed": 65.2,
                "pid": 81234,
            },
            {
                "slot": 1,
                "node": 13,
                "job": None,
                "phase": "idle",
                "progress": None,
                "elapsed": 7322,
                "pid": None,
            },
        ],
    }
    assert status_table(document).splitlines() == [
        "agent 1.2 · http://jobs:8000 · draining · not ready: the job server does not answer"
        " · STALLED: poll",
        "SLOT  NODE  JOB  PHASE    PROGRESS  ELAPSED  PID",
        "0     12    42   running  37%       1m05s    81234",
        "1     13    -    idle     -         2h02m    -",
    ]
    assert [elapsed_text(s) for s in (5, 65, 3600, 90000)] == ["5s", "1m05s", "1h00m", "1d01h"]
