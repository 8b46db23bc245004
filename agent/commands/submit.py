"""``agent submit SPEC [--param NAME=VALUE]... [--name T] [--wait] [--out DIR]``.

SPEC is any file ``run-once --spec`` takes. The job goes to a template of ``--name``
(default ``agent-job``) whose parameters are ``analysis``, ``outputs`` and one ``str``
per variable (:mod:`agent.submission`): an existing version that fits is reused, else a
new version is imported, which needs staff rights (``[admin]`` or ``--user``). Creating
the job needs none.

Variables: every ``${name}`` the spec substitutes, and every name in its
``parameters``. The value is ``--param name=VALUE``, else the spec's own parameter
value. A name without either is refused (exit 2), except an upper-case one such as
``${HOME}`` that the spec does not declare: that is left for the shell, as
``run-once --spec`` leaves it.

Refused before anything is sent (exit 2): an unreadable or invalid spec, a missing
value, and an input (or template, script, Sahara main or lib) whose ``downloadUrl`` is
a path on this machine: the agent that runs the job cannot see it. Absolute http(s)
URLs and job-server paths (``/v1/...``) are fine.

``--wait`` follows the job (``GET`` every second; progress read through the list
filter, since the job record has none) and exits as ``run-once`` would: 0 finished,
1 errored, 4 cancelled. ``--out DIR`` then downloads each output, the log included, as
``<name>.<type>`` (type ``str`` as ``.txt``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from agent.commands.common import settings_or_exit
from agent.commands.failures import run_or_exit
from agent.commands.fleet import Login, fleet_client, fleet_login
from agent.commands.views import end_line, state_of
from agent.config import Settings
from agent.outcome import ExitCode
from agent.server import Forbidden, Job, ServerClient
from agent.spec import RunSpec, SpecError, load_spec_document
from agent.spec._checks import variable_text
from agent.submission import (
    DEFAULT_TEMPLATE,
    create_job_once,
    find_or_import_template,
    job_values,
    local_urls,
    looks_like_environment,
    spec_parts,
    unique_description,
    used_variables,
)

POLL_SECONDS = 1.0
SETTLE_SECONDS = 30.0
"""How long ``--out`` waits for a cancelled job's node to stop it and upload its log."""
ENDED = {"FINISHED": ExitCode.SUCCESS, "ERRORED": ExitCode.JOB_FAILED}
ENDED_CANCELLED = ExitCode.CANCELLED
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class UsageExit(Exception):
    """A problem with the command line or the spec: one line, exit 2."""


class NeedsStaff(Exception):
    """Importing a template was refused to a user without staff rights."""


@dataclass(frozen=True)
class Submission:
    """What goes to the server, checked before anything is sent."""

    file: Path
    analysis: Any
    outputs: Any
    variables: dict[str, str]
    description: str


@dataclass
class Followed:
    job: Job
    state: str
    outputs: list[Path] = field(default_factory=list)


def run_submit(config: str | None, args: argparse.Namespace) -> int:
    settings = settings_or_exit(config)
    if args.out and not args.wait:
        print("agent submit: --out goes with --wait", file=sys.stderr)
        return ExitCode.USAGE
    try:
        submission = prepare(Path(args.spec), args.param)
    except UsageExit as exc:
        print(f"agent submit: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    login = fleet_login(settings, args.user, args.password_file, staff=False, command="submit")
    name = args.name or DEFAULT_TEMPLATE
    out_dir = Path(args.out) if args.out else None
    try:
        return run_or_exit(
            lambda: _submit(settings, login, submission, name, args, out_dir), settings.server.url
        )
    except KeyboardInterrupt:
        print("agent submit: stopped waiting; the job goes on", file=sys.stderr)
        return 130
    except NeedsStaff as exc:
        print(f"agent submit: {exc}", file=sys.stderr)
        return ExitCode.REFUSED


# ------------------------------------------------------------------ before sending


def prepare(path: Path, params: list[str]) -> Submission:
    """The spec, its variables and their values; :class:`UsageExit` for what the server
    should never see."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageExit(f"cannot read {path}: {exc}") from None
    try:
        load_spec_document(document)  # every error of the spec, with its own parameters
        parts = spec_parts(document)
        bare: RunSpec = load_spec_document(parts.without_parameters())
    except SpecError as exc:
        raise UsageExit(f"{path}: {exc}") from None
    given = parse_params(params)
    variables = resolve_variables(used_variables(bare), parts.parameters, given)
    local = local_urls(bare)
    if local:
        raise UsageExit(
            f"{path}: {local[0]!r} is a path on this machine, which the agent running the"
            " job cannot see: give an http(s) URL or a job-server path (/v1/...)"
            + (f" ({len(local) - 1} more such)" if len(local) > 1 else "")
        )
    return Submission(path, parts.analysis, parts.outputs, variables, parts.description)


def parse_params(params: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageExit(f"--param {item!r}: expected NAME=VALUE")
        if name in ("analysis", "outputs"):
            raise UsageExit(f"--param {name}: not a variable (it is part of the spec)")
        given[name] = value
    return given


def resolve_variables(
    used: set[str], declared: Mapping[str, Any], given: Mapping[str, str]
) -> dict[str, str]:
    """Each variable's value: ``--param``, else the spec's. A used or declared name with
    neither is refused, unless it is an undeclared upper-case one (left for the shell)."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in sorted(used | set(declared) | set(given)):
        if name in given:
            values[name] = given[name]
        elif declared.get(name) is not None:
            values[name] = variable_text(declared[name])
        elif name in declared or not looks_like_environment(name):
            missing.append(name)
    if missing:
        first = missing[0]
        more = f" (also {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise UsageExit(
            f"no value for ${{{first}}}{more}: give --param {first}=VALUE"
            + ("" if first in declared else f", or write ${first} if the shell is to expand it")
        )
    return values


# ------------------------------------------------------------------ on the server


async def _submit(
    settings: Settings,
    login: Login,
    submission: Submission,
    name: str,
    args: argparse.Namespace,
    out_dir: Path | None,
) -> int:
    async with fleet_client(settings, login) as client:
        try:
            template, _ = await find_or_import_template(client, name, submission.variables)
        except Forbidden:
            raise NeedsStaff(
                f"no template {name!r} fits this spec and {login.username!r} (from"
                f" {login.source}) may not import one: set [admin] username and"
                " password_file, or give --user NAME --password-file FILE of a staff user"
            ) from None
        job = await create_job_once(
            client,
            template.pk,
            job_values(submission.analysis, submission.outputs, submission.variables),
            unique_description(submission.description or f"agent submit {submission.file.name}"),
        )
        result: dict[str, Any] = {"job": job.pk, "template": template.pk}
        if not args.wait:
            print(json.dumps(result) if args.json else job.pk, flush=True)
            return ExitCode.SUCCESS
        if not args.json:
            print(job.pk, flush=True)
        followed = await follow(client, job.pk, Display.for_stream(sys.stderr), POLL_SECONDS)
        print(end_line(followed.job), file=sys.stderr)
        code = exit_code_of(followed.state)
        if out_dir is not None:
            if followed.state == "CANCELLED":
                followed.job = await let_node_finish(client, followed.job, SETTLE_SECONDS)
            followed.outputs = await download_outputs(client, followed.job, out_dir)
            names = ", ".join(path.name for path in followed.outputs) or "none"
            print(f"outputs in {out_dir}: {names}", file=sys.stderr)
        if args.json:
            result |= {
                "state": followed.state,
                "error": followed.job.error_reason,
                "exit_code": int(code),
                "outputs": [str(path) for path in followed.outputs],
            }
            print(json.dumps(result))
        return code


def exit_code_of(state: str) -> ExitCode:
    return ENDED.get(state, ENDED_CANCELLED)


class Display:
    """The job's phase and progress: one redrawn line on a terminal, else one line per
    change."""

    def __init__(self, stream: TextIO, tty: bool) -> None:
        self._stream = stream
        self._tty = tty
        self._last: tuple[str, int | None, int | None] | None = None
        self._began = time.monotonic()

    @classmethod
    def for_stream(cls, stream: TextIO) -> Display:
        return cls(stream, stream.isatty())

    def show(self, job: Job, state: str, percent: int | None) -> None:
        where = f" on node {job.node}" if job.node is not None and state == "STARTED" else ""
        progress = f", {percent}%" if percent is not None and state == "STARTED" else ""
        if self._tty:
            width = max(20, shutil.get_terminal_size((80, 20)).columns - 1)
            elapsed = int(time.monotonic() - self._began)
            line = f"job {job.pk}: {state.lower()}{where}{progress} ({elapsed}s)"
            self._stream.write("\r\x1b[2K" + line[:width])
            self._stream.flush()
            return
        key = (state, job.node, percent)
        if key != self._last:
            self._stream.write(f"job {job.pk}: {state.lower()}{where}{progress}\n")
            self._stream.flush()
        self._last = key

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def follow(client: ServerClient, pk: int, display: Display, interval: float) -> Followed:
    """Poll job ``pk`` until it ends (FINISHED, ERRORED or CANCELLED)."""
    percent = 0
    try:
        while True:
            job = await client.get_job(pk)
            state = state_of(job)
            if state == "STARTED":
                percent = await read_percent(client, pk, percent)
            if state in ("FINISHED", "ERRORED", "CANCELLED"):
                return Followed(job, state)
            display.show(job, state, percent if state == "STARTED" else None)
            await anyio.sleep(interval)
    finally:
        display.close()


async def read_percent(client: ServerClient, pk: int, known: int) -> int:
    """The job's progress in whole percent. The job record has none: the list filter
    on ``progress_amount`` is asked, twice when nothing moved, by halving otherwise."""
    low = known if known and await client.job_progress_at_least(pk, known / 100) else 0
    if not await client.job_progress_at_least(pk, (low + 1) / 100):
        return low
    low, high = low + 1, 100
    while low < high:
        middle = (low + high + 1) // 2
        if await client.job_progress_at_least(pk, middle / 100):
            low = middle
        else:
            high = middle - 1
    return low


async def let_node_finish(client: ServerClient, job: Job, patience: float) -> Job:
    """A cancelled job's node still stops the run and uploads the log; it is done when
    it no longer holds the job (its finish, a no-op, frees it). Wait for that, at most
    ``patience`` seconds, and read the job again."""
    if job.node is None:
        return job
    with anyio.move_on_after(patience):
        while (await client.get_node(job.node)).current_job == job.pk:
            await anyio.sleep(POLL_SECONDS / 4)
    return await client.get_job(job.pk)


def output_filename(name: str, type_: str) -> str:
    """``<name>.<type>`` made safe as one file name (type ``str``, text, as ``.txt``)."""
    extension = "txt" if type_ == "str" else type_
    text = _SAFE.sub("_", f"{name}.{extension}")[:200]
    return "_" + text[1:] if text.startswith(".") else text


async def download_outputs(client: ServerClient, job: Job, out_dir: Path) -> list[Path]:
    """Every live output of ``job`` into ``out_dir``; outputs a reset soft-deleted are
    skipped. Each is written to a temporary name first, then renamed."""
    await anyio.Path(out_dir).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for output in job.outputs:
        info = await client.output_info(job.pk, output.name, output.type)
        if info.deleted:
            continue
        filename = output_filename(output.name, output.type)
        stem, count = filename, 1
        while filename in taken:
            count += 1
            filename = f"{stem}-{count}"
        taken.add(filename)
        target = out_dir / filename
        partial = out_dir / f".{filename}.part"
        await client.download_output(job.pk, output.name, output.type, partial)
        await anyio.Path(partial).replace(target)
        written.append(target)
    return written
