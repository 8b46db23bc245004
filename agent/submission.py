"""Putting a spec on the job server: its template, its variables, its job values.

Shared by ``agent submit`` and ``agent demo``. A spec (what ``run-once --spec`` takes: a
bare analysis in any dialect, or ``{"analysis", "outputs", "parameters"}``) becomes a
job of a workable template whose ``executor_class`` is ``agent.analysis``, with the
parameters ``analysis`` (JSON), ``outputs`` (JSON) and one ``str`` parameter per
``${variable}``.

Templates are found by name and by their parameter names: the newest live version
called ``name`` whose parameters are exactly the ones a spec needs is reused; when there
is none, a new version of that name is imported with exactly those parameters. So a
name holds one version per distinct set of variables, and every job sends a value for
every parameter of its template (the real server refuses a job that omits a parameter
without a default).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from agent.server import (
    BadRequest,
    Job,
    ServerClient,
    ServerFault,
    ServerUnreachable,
    Template,
    filters,
)
from agent.spec import RunSpec
from agent.spec._checks import variable_text

EXECUTOR_CLASS = "agent.analysis"
DEFAULT_TEMPLATE = "agent-job"
ATTEMPTS = 5
FIRST_WAIT = 0.5
"""Seconds before the second try of an import or a job creation; doubled each time."""
RESERVED = ("analysis", "outputs")
"""Template parameters that are no variables: the run and its declared outputs."""

# The grammar of agent.spec.substitute: ``${name}`` is a use, ``$${name}`` a literal.
_USE = re.compile(r"\$(\$?)\{([^{}$]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENVIRONMENT_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True)
class SpecParts:
    """A spec file split as a template would hold it."""

    analysis: Any
    outputs: Any
    parameters: Mapping[str, Any]
    """The spec's own ``{name: value}`` (``None``: declared, no value)."""
    description: str = ""

    def without_parameters(self) -> dict[str, Any]:
        """The spec with no variables: loaded so, every ``${name}`` stays in its text."""
        return {"analysis": self.analysis, "outputs": self.outputs}


def spec_parts(document: Any) -> SpecParts:
    """``{"analysis", "outputs", "parameters"}``, or a bare analysis (no outputs, no
    parameters). ``document`` has been through :func:`agent.spec.load_spec_document`."""
    if isinstance(document, dict) and "analysis" in document:
        parameters = document.get("parameters") or {}
        description = document.get("description")
        return SpecParts(
            document["analysis"],
            document.get("outputs") or [],
            dict(parameters),
            description if isinstance(description, str) else "",
        )
    return SpecParts(document, [], {})


def used_variables(spec: RunSpec) -> set[str]:
    """Names written as ``${name}`` where the agent substitutes: the command, the
    environment, the pre/post-process commands and inline template files. ``spec`` must
    have been loaded without variables, so that every use is still in its text."""
    texts: list[str] = []
    for command in (
        spec.command,
        *(script.command for script in (spec.pre_process, spec.post_process) if script),
    ):
        texts.extend([command] if isinstance(command, str) else command)
    texts.extend(spec.env.values())
    texts.extend(task.source.content for task in spec.template_tasks if task.source.content)
    names = set()
    for text in texts:
        for match in _USE.finditer(text):
            if not match.group(1) and _NAME.fullmatch(match.group(2)):
                names.add(match.group(2))
    return names


def looks_like_environment(name: str) -> bool:
    """``${HOME}``, ``${SLURM_JOB_ID}``: upper case, a shell or environment variable."""
    return _ENVIRONMENT_NAME.fullmatch(name) is not None


def local_urls(spec: RunSpec) -> list[str]:
    """Every ``downloadUrl`` a job server's agent could not fetch: not an absolute
    http(s) URL, and not a path of the job server's API (``/v1/...``, which the agent
    downloads from its server with its own login). ``run-once --spec`` reads such URLs
    as files beside the spec; a server's agent runs elsewhere."""
    urls = [item.download_url for item in spec.input_files]
    sources = [task.source for task in spec.template_tasks]
    sources += [source for _, source in spec.extra_files]
    sources += [
        script.file for script in (spec.pre_process, spec.post_process) if script and script.file
    ]
    urls += [source.download_url for source in sources if source.download_url]
    return [url for url in urls if not _fetchable(url)]


def _fetchable(url: str) -> bool:
    return url.startswith(("http://", "https://", "/v1/"))


def template_parameters(variables: Iterable[str]) -> dict[str, Any]:
    """The parameters of a template for these variables."""
    parameters: dict[str, Any] = {
        "analysis": {
            "types": ["JSON"],
            "help": "the analysis to run (Rescale, Exabyte or Sahara form)",
        },
        "outputs": {
            "types": ["JSON"],
            "default": [],
            "help": "declared outputs [{name, type, path}]",
        },
    }
    for name in sorted(variables):
        parameters[name] = {"types": ["str"], "default": "", "help": f"the variable ${{{name}}}"}
    return parameters


def fits(template: Template, variables: Iterable[str]) -> bool:
    """The template is one of ours with exactly these parameters: ``analysis`` and
    ``outputs`` taking JSON, a ``str`` for each variable, none of them const."""
    wanted = {**dict.fromkeys(RESERVED, "JSON"), **dict.fromkeys(variables, "str")}
    if template.executor_class != EXECUTOR_CLASS or set(template.parameters) != set(wanted):
        return False
    return all(
        kind in template.parameters[name].types and not template.parameters[name].const
        for name, kind in wanted.items()
    )


async def find_template(
    client: ServerClient, name: str, variables: Iterable[str]
) -> Template | None:
    """The newest live version called ``name`` that :func:`fits` these variables."""
    wanted = set(variables)
    for template in await client.list_templates(filters.templates_named(name)):
        if template.name == name and fits(template, wanted):
            return template
    return None


def server_busy(exc: Exception) -> bool:
    """Whether a failed call is worth trying again: the server failed (5xx) or did not
    answer, or the real backend's SQLite was busy ("database is locked" while agents
    poll it), which its template import reports as a 400 ("Bad job template: ...")."""
    if isinstance(exc, ServerFault | ServerUnreachable):
        return True
    return isinstance(exc, BadRequest) and "database is locked" in str(exc)


async def find_or_import_template(
    client: ServerClient, name: str, variables: Iterable[str], *, attempts: int = ATTEMPTS
) -> tuple[Template, bool]:
    """A template for these variables, and whether it was imported just now (which
    needs staff rights: :class:`~agent.server.Forbidden` otherwise). An import the
    server failed (:func:`server_busy`) is looked for again before it is tried again."""
    wanted = set(variables)
    delay = FIRST_WAIT
    for attempt in range(attempts):
        found = await find_template(client, name, wanted)
        if found is not None:
            return found, False
        try:
            parameters = template_parameters(wanted)
            return await client.import_template(name, EXECUTOR_CLASS, parameters), True
        except (ServerFault, ServerUnreachable, BadRequest) as exc:
            if attempt == attempts - 1 or not server_busy(exc):
                raise
        await anyio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def unique_description(text: str) -> str:
    """``text`` with a token that makes it unique, for :func:`create_job_once`."""
    return f"{text} [{uuid.uuid4().hex[:12]}]".strip()


async def create_job_once(
    client: ServerClient,
    template: int,
    values: Mapping[str, Any],
    description: str,
    *,
    attempts: int = ATTEMPTS,
) -> Job:
    """Create a job, trying again when the server fails or is busy (:func:`server_busy`;
    the real backend's SQLite answers "database is locked" while agents poll it) or does
    not answer. Before each new try the job is looked for by ``description``, which must
    be unique (:func:`unique_description`): a job whose creation succeeded but whose
    answer was lost is not created twice."""
    delay = FIRST_WAIT
    for attempt in range(attempts):
        try:
            return await client.create_job(template, values, description=description)
        except (ServerFault, ServerUnreachable, BadRequest) as exc:
            if attempt == attempts - 1 or not server_busy(exc):
                raise
        await anyio.sleep(delay)
        delay *= 2
        made = await client.list_jobs(filters.spec(filters.exact("description", description)))
        if made:
            return made[0]
    raise AssertionError("unreachable")  # pragma: no cover


def job_values(analysis: Any, outputs: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
    """``parameter_values`` of a job: the analysis, its outputs and its variables (as
    text, the way the agent reads them: numbers with ``str()``, booleans as
    ``true``/``false``, lists and objects as JSON)."""
    values: dict[str, Any] = {
        "analysis": {"value": analysis, "type": "JSON"},
        "outputs": {"value": outputs if outputs is not None else [], "type": "JSON"},
    }
    for name, value in variables.items():
        values[name] = {"value": variable_text(value), "type": "str"}
    return values


__all__ = [
    "DEFAULT_TEMPLATE",
    "EXECUTOR_CLASS",
    "SpecParts",
    "create_job_once",
    "find_or_import_template",
    "find_template",
    "fits",
    "job_values",
    "local_urls",
    "looks_like_environment",
    "server_busy",
    "spec_parts",
    "template_parameters",
    "unique_description",
    "used_variables",
]
