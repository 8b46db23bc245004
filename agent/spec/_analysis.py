"""One analysis, in any dialect, → a :class:`RunSpec`.

The dialect only decides where the command, the environment and the resources come
from; files, scripts and the progress regex are read the same way in all three. Every
part is checked even when an earlier one failed (:class:`Issues`), so a job's error
lists all that is wrong with its spec; a part whose container is wrong (``hardware`` is
a list) is not looked into.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.spec._checks import (
    NO_COMMAND,
    NO_ITEMS,
    NO_OBJECT,
    Issues,
    byte_count,
    count,
    count_or_zero,
    decode_json,
    digest,
    fail,
    file_source,
    flag,
    items,
    kind,
    obj,
    optional_count,
    optional_obj,
    optional_string,
    os_text,
    parse_walltime,
    relative_path,
    scalar_text,
    string,
    substitute,
    url_basename,
)
from agent.spec._model import (
    FileSource,
    InputFile,
    RunSpec,
    Script,
    SpecError,
    TemplateTask,
)

ROOT = "analysis"
SAHARA_KEYS = ("type", "mains", "job_configs")


@dataclass(frozen=True)
class _Resources:
    use_mpi: bool
    cores: int
    walltime: tuple[float, str] | None
    queue: str | None = None
    memory_mb: int | None = None
    core_type: str | None = None
    gpus: int = 0


def build_run_spec(
    value: Any, variables: Mapping[str, str], queues: Sequence[str], issues: Issues
) -> RunSpec | None:
    """The analysis ``value`` (an object, an ``{"analyses": [one]}`` wrapper, or JSON text
    of either) with its variables → the run spec, without outputs. Errors go to
    ``issues``; None when the analysis could not be found at all (an error says why)."""
    found = issues.attempt(
        lambda: _single_analysis(obj(decode_json(value, ROOT), ROOT), issues), None
    )
    if found is None:
        return None
    analysis, at = found
    if any(key in analysis for key in SAHARA_KEYS):
        dialect = "sahara"
    else:
        dialect = "exabyte" if "compute" in analysis else "rescale"
    issues.keys(analysis, at, dialect)
    command: str | tuple[str, ...]
    if dialect == "sahara":
        command, env, extra = _sahara(analysis, at, variables, issues)
    else:
        command = issues.attempt(
            lambda: _command(analysis.get("command"), f"{at}.command", variables), NO_COMMAND
        )
        env = _env(analysis.get("envVars"), f"{at}.envVars", variables, issues)
        extra = ()
    if dialect == "exabyte":
        resources = _compute(analysis, at, queues, issues)
    else:
        resources = _hardware(analysis, at, issues)
    walltime = resources.walltime
    return RunSpec(
        command=command,
        env=env,
        use_mpi=resources.use_mpi,
        cores=resources.cores,
        ranks=resources.cores if resources.use_mpi else 1,
        walltime=walltime[0] if walltime else None,
        walltime_text=walltime[1] if walltime else None,
        queue=resources.queue,
        memory_mb=resources.memory_mb,
        core_type=resources.core_type,
        gpus=resources.gpus,
        input_files=_input_files(analysis.get("inputFiles"), f"{at}.inputFiles", issues),
        template_tasks=_template_tasks(
            analysis.get("templateTasks"), f"{at}.templateTasks", issues
        ),
        extra_files=extra,
        pre_process=_script(analysis, at, "preProcess", variables, issues),
        post_process=_script(analysis, at, "postProcess", variables, issues),
        progress_regex=issues.attempt(
            lambda: _progress_regex(analysis.get("progressRegex"), f"{at}.progressRegex"), None
        ),
        outputs=(),
        variables=dict(variables),
        dialect=dialect,
    )


def _single_analysis(analysis: Mapping[str, Any], issues: Issues) -> tuple[Mapping[str, Any], str]:
    """The analysis itself, or the one item of an ``{"analyses": [...]}`` wrapper (which
    holds nothing else)."""
    if "analyses" not in analysis:
        return analysis, ROOT
    field = f"{ROOT}.analyses"
    issues.keys(analysis, ROOT, "analyses")
    listed = items(analysis["analyses"], field, required=True)
    if len(listed) != 1:
        fail(field, f"must hold exactly one analysis, got {len(listed)}")
    return obj(listed[0], f"{field}[0]"), f"{field}[0]"


# ------------------------------------------------------------------ command and env


def _command(value: Any, field: str, variables: Mapping[str, str]) -> str | tuple[str, ...]:
    """A string (for ``/bin/sh -c``) or a non-empty list of strings (an argv), substituted."""
    if isinstance(value, str):
        text = os_text(substitute(value, variables), field)
        if not text.strip():
            fail(field, "must not be empty")
        return text
    if value is None:
        fail(field, "is required")
    if not isinstance(value, list | tuple):
        fail(field, f"must be a string or a list of strings, got {kind(value)}")
    if not value:
        fail(field, "must not be an empty list")
    issues = Issues()
    argv = tuple(
        issues.attempt(partial(_arg, item, f"{field}[{index}]", variables), "x")
        for index, item in enumerate(value)
    )
    if not argv[0]:
        issues.add(SpecError(f"{field}[0]", "must not be empty"))
    issues.raise_any()
    return argv


def _arg(value: Any, field: str, variables: Mapping[str, str]) -> str:
    return os_text(substitute(string(value, field, allow_empty=True), variables), field)


def _env(value: Any, field: str, variables: Mapping[str, str], issues: Issues) -> dict[str, str]:
    """Names as given (no ``=``, no NUL); scalar values as text, substituted."""
    env: dict[str, str] = {}
    for name, raw in issues.attempt(lambda: optional_obj(value, field), NO_OBJECT).items():
        env[name] = issues.attempt(partial(_env_value, name, raw, field, variables), "")
    return env


def _env_value(name: Any, raw: Any, field: str, variables: Mapping[str, str]) -> str:
    at = f"{field}.{name}"
    if not isinstance(name, str) or not name or "=" in name:
        fail(at, "must be a non-empty name without '='")
    os_text(name, at)
    return os_text(substitute(scalar_text(raw, at), variables), at)


def _sahara(
    analysis: Mapping[str, Any], at: str, variables: Mapping[str, str], issues: Issues
) -> tuple[tuple[str, ...], dict[str, str], tuple[tuple[str, FileSource], ...]]:
    """Shell job: command = (main, *args), env = params, mains and libs staged."""
    if analysis.get("type") != "Shell":
        issues.add(
            SpecError(
                f"{at}.type",
                f'must be "Shell" (the only Sahara job type run), got {kind(analysis.get("type"))}',
            )
        )
    staged: list[tuple[str, FileSource | None]] = []
    main = "main"
    mains = issues.attempt(lambda: items(analysis.get("mains"), f"{at}.mains", required=True), None)
    if mains is not None and len(mains) != 1:
        issues.add(SpecError(f"{at}.mains", f"must hold exactly one main, got {len(mains)}"))
    elif mains is not None:
        found = _sahara_file(mains[0], f"{at}.mains[0]", issues)
        if found is not None:
            main = found[0]
            staged.append(found)
    for index, lib in enumerate(
        issues.attempt(lambda: items(analysis.get("libs"), f"{at}.libs"), NO_ITEMS)
    ):
        found = _sahara_file(lib, f"{at}.libs[{index}]", issues)
        if found is not None:
            staged.append(found)
    field = f"{at}.job_configs"
    configs = issues.attempt(lambda: optional_obj(analysis.get("job_configs"), field), NO_OBJECT)
    issues.keys(configs, field, "job_configs")
    argv = [f"./{main}"]
    for index, arg in enumerate(
        issues.attempt(lambda: items(configs.get("args"), f"{field}.args"), NO_ITEMS)
    ):
        argv.append(
            issues.attempt(partial(_sahara_arg, arg, f"{field}.args[{index}]", variables), "")
        )
    env = _env(configs.get("params"), f"{field}.params", variables, issues)
    if configs.get("configs") is not None:
        issues.attempt(lambda: obj(configs["configs"], f"{field}.configs"), NO_OBJECT)
    extra = tuple((path, src) for path, src in staged if src is not None)
    return tuple(argv), env, extra


def _sahara_arg(value: Any, field: str, variables: Mapping[str, str]) -> str:
    return os_text(substitute(scalar_text(value, field), variables), field)


def _sahara_file(value: Any, field: str, issues: Issues) -> tuple[str, FileSource | None] | None:
    """A path already in the job directory, or a file object {name, downloadUrl|content}."""
    if isinstance(value, str):
        path = issues.attempt(lambda: relative_path(value, field), None)
        return None if path is None else (path, None)
    return _file(value, field, None, issues)


def _file(
    value: Any, field: str, default_name: str | None, issues: Issues
) -> tuple[str, FileSource] | None:
    """A file object ``{downloadUrl|content, name?}`` → (its name, its source)."""
    data = issues.attempt(lambda: obj(value, field), None)
    if data is None:
        return None
    issues.keys(data, field, "file")
    source = issues.attempt(lambda: file_source(data, field), None)
    if source is None:
        if data.get("name") is not None:
            issues.attempt(lambda: relative_path(data["name"], f"{field}.name"), "")
        return None
    name = issues.attempt(lambda: _file_name(data, source, field, default_name), None)
    return None if name is None else (name, source)


def _file_name(data: Mapping[str, Any], source: FileSource, field: str, default: str | None) -> str:
    """``name`` if given, else the URL's last segment, else ``default``."""
    name = data.get("name")
    if name is None:
        name = url_basename(source.download_url or "") or default
        if name is None:
            fail(f"{field}.name", "is required when it cannot be taken from a downloadUrl")
    return relative_path(name, f"{field}.name")


# ------------------------------------------------------------------ resources


def _hardware(analysis: Mapping[str, Any], at: str, issues: Issues) -> _Resources:
    field = f"{at}.hardware"
    hardware = issues.attempt(lambda: optional_obj(analysis.get("hardware"), field), NO_OBJECT)
    issues.keys(hardware, field, "hardware")
    use_mpi = issues.attempt(lambda: flag(analysis.get("useMpi"), f"{at}.useMpi"), False)
    slots = issues.attempt(lambda: count(hardware.get("slots"), f"{field}.slots"), 1)
    if slots != 1:
        issues.add(SpecError(f"{field}.slots", f"must be 1 (a job runs on one host), got {slots}"))
    walltime = hardware.get("walltime")
    return _Resources(
        use_mpi=use_mpi,
        cores=issues.attempt(
            lambda: count(hardware.get("coresPerSlot"), f"{field}.coresPerSlot"), 1
        ),
        walltime=None
        if walltime is None
        else issues.attempt(lambda: parse_walltime(walltime, f"{field}.walltime"), None),
        memory_mb=issues.attempt(
            lambda: optional_count(hardware.get("memory"), f"{field}.memory"), None
        ),
        core_type=_core_type(hardware.get("coreType"), f"{field}.coreType", issues),
        gpus=issues.attempt(
            lambda: count_or_zero(hardware.get("gpusPerSlot"), f"{field}.gpusPerSlot"), 0
        ),
    )


def _core_type(value: Any, field: str, issues: Issues) -> str | None:
    """A code, or Rescale's ``{"code": ...}`` object."""
    if isinstance(value, Mapping):
        issues.keys(value, field, "coreType")
        return issues.attempt(lambda: string(value.get("code"), f"{field}.code"), None)
    return issues.attempt(lambda: optional_string(value, field), None)


def _compute(
    analysis: Mapping[str, Any], at: str, queues: Sequence[str], issues: Issues
) -> _Resources:
    field = f"{at}.compute"
    if analysis.get("hardware") is not None:
        issues.add(SpecError(field, "cannot be given together with hardware"))
    compute = issues.attempt(lambda: obj(analysis["compute"], field), NO_OBJECT)
    issues.keys(compute, field, "compute")
    nodes = issues.attempt(lambda: count(compute.get("nodes"), f"{field}.nodes"), 1)
    cores = nodes * issues.attempt(lambda: count(compute.get("ppn"), f"{field}.ppn"), 1)
    queue = issues.attempt(lambda: _queue(compute.get("queue"), f"{field}.queue", queues), None)
    limit = compute.get("timeLimit")
    return _Resources(
        use_mpi=issues.attempt(
            lambda: flag(analysis.get("useMpi"), f"{at}.useMpi", default=cores > 1), False
        ),
        cores=cores,
        walltime=None
        if limit is None
        else issues.attempt(lambda: parse_walltime(limit, f"{field}.timeLimit"), None),
        queue=queue,
    )


def _queue(value: Any, field: str, queues: Sequence[str]) -> str | None:
    queue = optional_string(value, field)
    if queue is not None and queues and queue not in queues:
        fail(field, f"must be one of this agent's queues ({', '.join(queues)}), got {queue!r}")
    return queue


# ------------------------------------------------------------------ files and scripts


def _input_files(value: Any, field: str, issues: Issues) -> tuple[InputFile, ...]:
    result = []
    for index, item in enumerate(issues.attempt(lambda: items(value, field), NO_ITEMS)):
        found = _input_file(item, f"{field}[{index}]", issues)
        if found is not None:
            result.append(found)
    return tuple(result)


def _input_file(item: Any, at: str, issues: Issues) -> InputFile | None:
    data = issues.attempt(lambda: obj(item, at), None)
    if data is None:
        return None
    issues.keys(data, at, "inputFile")
    url = issues.attempt(lambda: string(data.get("downloadUrl"), f"{at}.downloadUrl"), None)
    path = data.get("relativePath")
    if path is None and url is not None:
        path = url_basename(url)
        if not path:
            issues.add(
                SpecError(f"{at}.relativePath", "is required when it cannot be taken from the URL")
            )
    relative = None
    if path:
        relative = issues.attempt(lambda: relative_path(path, f"{at}.relativePath"), None)
    md5 = issues.attempt(lambda: digest(data.get("md5"), f"{at}.md5", 32), None)
    sha256 = issues.attempt(lambda: digest(data.get("sha256"), f"{at}.sha256", 64), None)
    decompress = issues.attempt(lambda: flag(data.get("decompress"), f"{at}.decompress"), False)
    size = issues.attempt(
        lambda: byte_count(data.get("decryptedSize"), f"{at}.decryptedSize"), None
    )
    if url is None or relative is None:
        return None
    return InputFile(url, relative, md5, sha256, decompress, size)


def _template_tasks(value: Any, field: str, issues: Issues) -> tuple[TemplateTask, ...]:
    result = []
    for index, item in enumerate(issues.attempt(lambda: items(value, field), NO_ITEMS)):
        found = _template_task(item, f"{field}[{index}]", issues)
        if found is not None:
            result.append(found)
    return tuple(result)


def _template_task(item: Any, at: str, issues: Issues) -> TemplateTask | None:
    data = issues.attempt(lambda: obj(item, at), None)
    if data is None:
        return None
    issues.keys(data, at, "templateTask")
    field = f"{at}.templateFile"
    template = issues.attempt(lambda: obj(data.get("templateFile"), field), None)
    source = None
    if template is not None:
        issues.keys(template, field, "file")
        source = issues.attempt(lambda: file_source(template, field), None)
    target = data.get("processedFilename")
    if target is None and template is not None and source is not None:
        target = template.get("name") or url_basename(source.download_url or "")
        if not target:
            issues.add(
                SpecError(f"{at}.processedFilename", "is required (no templateFile name or URL)")
            )
    processed = None
    if target:
        processed = issues.attempt(lambda: relative_path(target, f"{at}.processedFilename"), None)
    if source is None or processed is None:
        return None
    return TemplateTask(source, processed)


def _script(
    analysis: Mapping[str, Any], at: str, step: str, variables: Mapping[str, str], issues: Issues
) -> Script | None:
    """``<step>Script`` (a file object) and/or ``<step>ScriptCommand``.

    A file alone runs as ``./<name>``; a command alone runs as given; with both, the
    file is staged and the command runs (it is expected to use the file).
    """
    file_field, command_field = f"{at}.{step}Script", f"{at}.{step}ScriptCommand"
    file_value, command_value = analysis.get(f"{step}Script"), analysis.get(f"{step}ScriptCommand")
    found = None
    if file_value is not None:
        found = _file(file_value, file_field, f"{step.lower()}.sh", issues)
    source, filename = found[1] if found else None, found[0] if found else None
    if command_value is not None:
        command = issues.attempt(
            lambda: _command(command_value, command_field, variables), NO_COMMAND
        )
    elif filename is not None:
        command = (f"./{filename}",)
    else:
        return None
    return Script(command, source, filename)


def _progress_regex(value: Any, field: str) -> str | None:
    """Must compile and capture the number: one group, or a group named ``progress``."""
    pattern = optional_string(value, field)
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        fail(field, f"does not compile: {exc}")
    if "progress" not in compiled.groupindex and compiled.groups != 1:
        fail(
            field,
            f"must have one group or a group named 'progress', it has {compiled.groups} groups",
        )
    return pattern
