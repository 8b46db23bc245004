"""The ``agent`` command line.

``agent run`` · ``agent run-once [--job PK]`` · ``agent run-once --spec FILE [--out DIR]`` ·
``agent check`` · ``agent devserver`` · ``agent demo`` · ``agent status`` · fleet commands
(``submit``, ``jobs``, ``job``, ``nodes``, ``reap``, ``drain``, ``resume``).
Exit codes (:class:`agent.outcome.ExitCode`): 0 fine; 1 job failed (``check``: a problem
found); 2 usage or configuration error; 3 nothing to do; 4 cancelled; 5 node error; 6 server
unreachable or failing at start-up; 7 login or node registration refused; 8 no such job.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agent import __version__
from agent.outcome import ExitCode
from agent.selfguard import make_undumpable

FLEET = {
    "submit": ("agent.commands.submit", "run_submit"),
    "jobs": ("agent.commands.views", "run_jobs"),
    "job": ("agent.commands.views", "run_job"),
    "nodes": ("agent.commands.nodes", "run_nodes"),
    "reap": ("agent.commands.nodes", "run_reap"),
    "drain": ("agent.commands.control", "run_drain"),
    "resume": ("agent.commands.control", "run_resume"),
}
"""Fleet commands: module and function, imported only when used."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML config file (default: $AGENT_CONFIG, else /etc/agent/config.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="agent",
        parents=[common],
        description="Worker-node agent: runs jobs from a job server on this host.",
    )
    parser.add_argument("--version", action="version", version=f"agent {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the agent (daemon)")
    run.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit once no job is running and none fits (scripts, benchmarks)",
    )

    once = commands.add_parser(
        "run-once", parents=[common], help="run one job, exit code says how it ended"
    )
    once.add_argument(
        "--job",
        type=int,
        metavar="PK",
        help="run this job (default: the oldest pending job that fits)",
    )
    once.add_argument("--spec", metavar="FILE", help="run an analysis JSON locally, no server")
    once.add_argument("--out", metavar="DIR", help="with --spec: copy outputs and the log here")

    commands.add_parser(
        "check", parents=[common], help="check config, server, auth, nodes, executors, resources"
    )
    commands.add_parser(
        "devserver",
        add_help=False,
        help="run the reference job server (see agent devserver --help)",
    )
    commands.add_parser(
        "demo", parents=[common], help="devserver + sample jobs + agent, then a summary"
    )
    status = commands.add_parser(
        "status", parents=[common], help="ask the running agent what each slot does"
    )
    status.add_argument("--json", action="store_true", help="print /status as JSON")
    _fleet_commands(commands, common)
    return parser


def _fleet_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """``submit``, ``jobs``, ``job``, ``nodes``, ``reap``, ``drain``, ``resume``."""
    login = argparse.ArgumentParser(add_help=False)
    login.add_argument(
        "--user", metavar="NAME", help="log in as NAME (default: [admin], else [server])"
    )
    login.add_argument("--password-file", metavar="FILE", help="NAME's password, read from FILE")
    login.add_argument("--json", action="store_true", help="machine-readable output")

    submit = commands.add_parser(
        "submit", parents=[common, login], help="put a job on the server (any spec run-once takes)"
    )
    submit.add_argument(
        "spec", metavar="SPEC", help="analysis JSON, bare or {analysis, outputs, parameters}"
    )
    submit.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a ${NAME} value"
    )
    submit.add_argument("--name", metavar="TEMPLATE", help="template name (default: agent-job)")
    submit.add_argument("--wait", action="store_true", help="follow the job until it ends")
    submit.add_argument("--out", metavar="DIR", help="with --wait: download its outputs here")

    jobs = commands.add_parser("jobs", parents=[common, login], help="list jobs on the server")
    jobs.add_argument("--state", choices=["created", "started", "finished", "errored", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")

    job = commands.add_parser("job", parents=[common, login], help="one job: record, outputs, node")
    job.add_argument("pk", type=int, metavar="PK")

    nodes = commands.add_parser("nodes", parents=[common, login], help="every node on the server")
    nodes.add_argument("--lost-after", metavar="DURATION", help="no ping for this long: lost")

    reap = commands.add_parser(
        "reap", parents=[common, login], help="give back jobs of lost nodes (staff)"
    )
    reap.add_argument("--lost-after", metavar="DURATION", help="no ping for this long: lost")
    reap.add_argument("--apply", action="store_true", help="abort them (default: only show)")

    drain = commands.add_parser(
        "drain", parents=[common], help="the running agent takes no new job"
    )
    drain.add_argument("--wait", action="store_true", help="return once it is idle")
    commands.add_parser("resume", parents=[common], help="the running agent takes jobs again")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if argv is None:  # the real process, not a test calling main() in-process
        make_undumpable()
    try:
        return _dispatch(args_list)
    except BaseExceptionGroup as group:
        # Task groups wrap what their tasks raise; a user sees the error itself.
        first: BaseException = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if isinstance(first, KeyboardInterrupt):
            return 130
        raise first from None


def _dispatch(args_list: list[str]) -> int:
    if args_list[:1] == ["devserver"]:
        from agent.devserver import main as devserver_main  # noqa: PLC0415 - optional part

        return devserver_main(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    config = getattr(args, "config", None)
    if args.command == "run":
        from agent.commands.run import run_daemon  # noqa: PLC0415 - keep start-up light

        return run_daemon(config, exit_when_idle=args.exit_when_idle)
    if args.command == "run-once":
        from agent.commands.run import run_once  # noqa: PLC0415

        if args.out and not args.spec:
            parser.error("--out goes with --spec")
        if args.spec and args.job is not None:
            parser.error("--spec and --job exclude each other")
        return run_once(config, job=args.job, spec_file=args.spec, out_dir=args.out)
    if args.command == "check":
        from agent.commands.check import run_check  # noqa: PLC0415

        return run_check(config)
    if args.command == "demo":
        from agent.commands.demo import run_demo  # noqa: PLC0415

        return run_demo(config)
    if args.command in FLEET:
        module, function = FLEET[args.command]
        run: Callable[[str | None, argparse.Namespace], int] = getattr(
            importlib.import_module(module), function
        )
        return run(config, args)
    if args.command == "status":
        from agent.commands.status import run_status  # noqa: PLC0415

        return run_status(config, as_json=args.json)
    print(f"agent {args.command}: not implemented yet", file=sys.stderr)
    return ExitCode.USAGE
