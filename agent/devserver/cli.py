"""`agent devserver`: run the reference job server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from agent.devserver.app import DevServer
from agent.devserver.models import User


def _account(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent devserver",
        description="Run the reference job server (PROTOCOL.md subset) for demos and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--db", default=None, help="sqlite file to keep state in (default: memory)")
    parser.add_argument(
        "--admin",
        type=_account,
        default=None,
        metavar="NAME:PASSWORD",
        help="the staff user (default $AGENT_DEVSERVER_ADMIN, else admin:admin)",
    )
    parser.add_argument(
        "--user",
        type=_account,
        action="append",
        default=None,
        metavar="NAME:PASSWORD",
        help="a non-staff user, repeatable (default $AGENT_DEVSERVER_USERS, else node:node)",
    )
    return parser


def _users(
    parser: argparse.ArgumentParser, args: argparse.Namespace, env: dict[str, str]
) -> list[User]:
    try:
        admin = args.admin or _account(env.get("AGENT_DEVSERVER_ADMIN") or "admin:admin")
        others = args.user
        if others is None:
            listed = env.get("AGENT_DEVSERVER_USERS")
            others = [_account(x.strip()) for x in listed.split(",") if x.strip()] if listed else []
            others = others or [("node", "node")]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    users = [User(admin[0], admin[1], staff=True)]
    users += [User(name, password) for name, password in others if name != admin[0]]
    return users


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 1 when the server cannot start."""
    parser = _parser()
    args = parser.parse_args(argv)
    users = _users(parser, args, dict(os.environ))
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        server = DevServer(args.host, args.port, db_path=args.db, users=users)
        server.start()
    except (OSError, ValueError) as exc:
        print(f"devserver: cannot start: {exc}", file=sys.stderr)
        return 1
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signals need the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        print(f"devserver listening on {server.url}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
