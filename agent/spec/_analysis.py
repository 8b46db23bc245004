"""One analysis, in any dialect, → a :class:`RunSpec`.

The dialect only decides where the command, the environment and the resources come
from; files, scripts and the progress regex are read the same way in all three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.spec._checks import (
    count,
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
    OutputSpec,
    RunSpec,
    Script,
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


def build_run_spec(
    value: Any, outputs: tuple[OutputSpec, ...], variables: Mapping[str, str], queues: Sequence[str]
) -> RunSpec:
    """The analysis ``value`` (an object, an ``{"analyses": [one]}`` wrapper, or JSON text
    of either) with its outputs and variables → the run spec."""
    analysis, at = _single_analysis(obj(decode_json(value, ROOT), ROOT))
    command: str | tuple[str, ...]
    if any(key in analysis for key in SAHARA_KEYS):
        dialect = "sahara"
        command, env, extra = _sahara(analysis, at, variables)
    else:
        dialect = "exabyte" if "compute" in analysis else "rescale"
        command = _command(analysis.get("command"), f"{at}.command", variables)
        env = _env(analysis.get("envVars"), f"{at}.envVars", variables)
        extra = ()
    resources = _compute(analysis, at, queues) if "compute" in analysis else _hardware(analysis, at)
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
        input_files=_input_files(analysis.get("inputFiles"), f"{at}.inputFiles"),
        template_tasks=_template_tasks(analysis.get("templateTasks"), f"{at}.templateTasks"),
        extra_files=extra,
        pre_process=_script(analysis, at, "preProcess", variables),
        post_process=_script(analysis, at, "postProcess", variables),
        progress_regex=_progress_regex(analysis.get("progressRegex"), f"{at}.progressRegex"),
        outputs=outputs,
        variables=dict(variables),
        dialect=dialect,
    )


def _single_analysis(analysis: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    if "analyses" not in analysis:
        return analysis, ROOT
    field = f"{ROOT}.analyses"
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
    argv = tuple(_arg(item, f"{field}[{index}]", variables) for index, item in enumerate(value))
    if not argv[0]:
        fail(f"{field}[0]", "must not be empty")
    return argv


def _arg(value: Any, field: str, variables: Mapping[str, str]) -> str:
    return os_text(substitute(string(value, field, allow_empty=True), variables), field)


def _env(value: Any, field: str, variables: Mapping[str, str]) -> dict[str, str]:
    """Names as given (no ``=``, no NUL); scalar values as text, substituted."""
    env: dict[str, str] = {}
    for name, raw in optional_obj(value, field).items():
        at = f"{field}.{name}"
        if not isinstance(name, str) or not name or "=" in name:
            fail(at, "must be a non-empty name without '='")
        os_text(name, at)
        env[name] = os_text(substitute(scalar_text(raw, at), variables), at)
    return env


def _sahara(
    analysis: Mapping[str, Any], at: str, variables: Mapping[str, str]
) -> tuple[tuple[str, ...], dict[str, str], tuple[tuple[str, FileSource], ...]]:
    """Shell job: command = (main, *args), env = params, mains and libs staged."""
    if analysis.get("type") != "Shell":
        fail(
            f"{at}.type",
            f'must be "Shell" (the only Sahara job type run), got {kind(analysis.get("type"))}',
        )
    mains = items(analysis.get("mains"), f"{at}.mains", required=True)
    if len(mains) != 1:
        fail(f"{at}.mains", f"must hold exactly one main, got {len(mains)}")
    main, source = _sahara_file(mains[0], f"{at}.mains[0]")
    staged = [(main, source)]
    for index, lib in enumerate(items(analysis.get("libs"), f"{at}.libs")):
        staged.append(_sahara_file(lib, f"{at}.libs[{index}]"))
    configs_field = f"{at}.job_configs"
    configs = optional_obj(analysis.get("job_configs"), configs_field)
    args = items(configs.get("args"), f"{configs_field}.args")
    argv = [f"./{main}"]
    for index, arg in enumerate(args):
        field = f"{configs_field}.args[{index}]"
        argv.append(os_text(substitute(scalar_text(arg, field), variables), field))
    env = _env(configs.get("params"), f"{configs_field}.params", variables)
    if configs.get("configs") is not None:
        obj(configs["configs"], f"{configs_field}.configs")
    extra = tuple((path, src) for path, src in staged if src is not None)
    return tuple(argv), env, extra


def _sahara_file(value: Any, field: str) -> tuple[str, FileSource | None]:
    """A path already in the job directory, or a file object {name, downloadUrl|content}."""
    if isinstance(value, str):
        return relative_path(value, field), None
    data = obj(value, field)
    source = file_source(data, field)
    return _file_name(data, source, field, None), source


def _file_name(data: Mapping[str, Any], source: FileSource, field: str, default: str | None) -> str:
    """``name`` if given, else the URL's last segment, else ``default``."""
    name = data.get("name")
    if name is None:
        name = url_basename(source.download_url or "") or default
        if name is None:
            fail(f"{field}.name", "is required when it cannot be taken from a downloadUrl")
    return relative_path(name, f"{field}.name")


# ------------------------------------------------------------------ resources


def _hardware(analysis: Mapping[str, Any], at: str) -> _Resources:
    field = f"{at}.hardware"
    hardware = optional_obj(analysis.get("hardware"), field)
    use_mpi = flag(analysis.get("useMpi"), f"{at}.useMpi")
    if count(hardware.get("slots"), f"{field}.slots") != 1:
        fail(f"{field}.slots", f"must be 1 (a job runs on one host), got {hardware['slots']}")
    walltime = hardware.get("walltime")
    return _Resources(
        use_mpi=use_mpi,
        cores=count(hardware.get("coresPerSlot"), f"{field}.coresPerSlot"),
        walltime=None if walltime is None else parse_walltime(walltime, f"{field}.walltime"),
        memory_mb=optional_count(hardware.get("memory"), f"{field}.memory"),
        core_type=_core_type(hardware.get("coreType"), f"{field}.coreType"),
    )


def _core_type(value: Any, field: str) -> str | None:
    """A code, or Rescale's ``{"code": ...}`` object."""
    if isinstance(value, Mapping):
        return string(value.get("code"), f"{field}.code")
    return optional_string(value, field)


def _compute(analysis: Mapping[str, Any], at: str, queues: Sequence[str]) -> _Resources:
    field = f"{at}.compute"
    if analysis.get("hardware") is not None:
        fail(field, "cannot be given together with hardware")
    compute = obj(analysis["compute"], field)
    cores = count(compute.get("nodes"), f"{field}.nodes") * count(
        compute.get("ppn"), f"{field}.ppn"
    )
    queue = optional_string(compute.get("queue"), f"{field}.queue")
    if queue is not None and queues and queue not in queues:
        fail(
            f"{field}.queue",
            f"must be one of this agent's queues ({', '.join(queues)}), got {queue!r}",
        )
    limit = compute.get("timeLimit")
    return _Resources(
        use_mpi=flag(analysis.get("useMpi"), f"{at}.useMpi", default=cores > 1),
        cores=cores,
        walltime=None if limit is None else parse_walltime(limit, f"{field}.timeLimit"),
        queue=queue,
    )


# ------------------------------------------------------------------ files and scripts


def _input_files(value: Any, field: str) -> tuple[InputFile, ...]:
    result = []
    for index, item in enumerate(items(value, field)):
        at = f"{field}[{index}]"
        data = obj(item, at)
        url = string(data.get("downloadUrl"), f"{at}.downloadUrl")
        path = data.get("relativePath")
        if path is None:
            path = url_basename(url)
            if not path:
                fail(f"{at}.relativePath", "is required when it cannot be taken from the URL")
        result.append(
            InputFile(
                download_url=url,
                relative_path=relative_path(path, f"{at}.relativePath"),
                md5=digest(data.get("md5"), f"{at}.md5", 32),
                sha256=digest(data.get("sha256"), f"{at}.sha256", 64),
                decompress=flag(data.get("decompress"), f"{at}.decompress"),
            )
        )
    return tuple(result)


def _template_tasks(value: Any, field: str) -> tuple[TemplateTask, ...]:
    result = []
    for index, item in enumerate(items(value, field)):
        at = f"{field}[{index}]"
        data = obj(item, at)
        template = obj(data.get("templateFile"), f"{at}.templateFile")
        source = file_source(template, f"{at}.templateFile")
        target = data.get("processedFilename")
        if target is None:
            target = template.get("name") or url_basename(source.download_url or "")
            if not target:
                fail(f"{at}.processedFilename", "is required (no templateFile name or URL)")
        result.append(TemplateTask(source, relative_path(target, f"{at}.processedFilename")))
    return tuple(result)


def _script(
    analysis: Mapping[str, Any], at: str, step: str, variables: Mapping[str, str]
) -> Script | None:
    """``<step>Script`` (a file object) and/or ``<step>ScriptCommand``.

    A file alone runs as ``./<name>``; a command alone runs as given; with both, the
    file is staged and the command runs (it is expected to use the file).
    """
    file_field, command_field = f"{at}.{step}Script", f"{at}.{step}ScriptCommand"
    file_value, command_value = analysis.get(f"{step}Script"), analysis.get(f"{step}ScriptCommand")
    source = filename = None
    if file_value is not None:
        data = obj(file_value, file_field)
        source = file_source(data, file_field)
        filename = _file_name(data, source, file_field, f"{step.lower()}.sh")
    if command_value is not None:
        command = _command(command_value, command_field, variables)
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
