"""The typed run spec and its error: plain frozen values, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class SpecError(ValueError):
    """A job definition the agent cannot run: the job's fault, never retried.

    ``field`` is the dotted path of the offending value (``analysis.hardware.coresPerSlot``,
    ``analysis.inputFiles[2].md5``, ``outputs[0].name``); ``str(error)`` is the text the
    job ends with: ``invalid analysis: <field> <message>``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"invalid analysis: {field} {message}")

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, str]]:
        return type(self), (self.field, self.message)


@dataclass(frozen=True)
class FileSource:
    """Where a file's bytes come from: exactly one of the two is set."""

    download_url: str | None
    content: str | None


@dataclass(frozen=True)
class InputFile:
    download_url: str
    relative_path: str
    """Normalised, relative, without ``..``."""
    md5: str | None
    """Lower-case hex."""
    sha256: str | None
    """Lower-case hex."""
    decompress: bool


@dataclass(frozen=True)
class TemplateTask:
    source: FileSource
    processed_filename: str
    """Where the rendered file goes, relative to the job directory."""


@dataclass(frozen=True)
class Script:
    """Pre/post-process: a command, optionally with a script file staged first."""

    command: str | tuple[str, ...]
    file: FileSource | None
    filename: str | None
    """Where ``file`` is written (made executable) in the job directory."""


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str
    path: str
    """A file, directory or glob relative to the job directory, as declared."""


@dataclass(frozen=True)
class RunSpec:
    """Everything the agent needs to stage and run one job, whatever the dialect."""

    command: str | tuple[str, ...]
    """A string runs under ``/bin/sh -c``; a tuple is an argv."""
    env: Mapping[str, str]
    """envVars (Sahara: ``job_configs.params``) after substitution, values as text."""
    use_mpi: bool
    cores: int
    """Cores the job needs on this host (= ranks when ``use_mpi``)."""
    ranks: int
    """MPI ranks; 1 when not MPI."""
    walltime: float | None
    """Seconds."""
    walltime_text: str | None
    """The same as ``HH:MM:SS``, for messages (``walltime 01:00:00 exceeded``)."""
    queue: str | None
    memory_mb: int | None
    """``hardware.memory`` in MiB: an extension of the Rescale form."""
    core_type: str | None
    input_files: tuple[InputFile, ...]
    template_tasks: tuple[TemplateTask, ...]
    extra_files: tuple[tuple[str, FileSource], ...]
    """(relative path, source): Sahara mains and libs to stage, made executable."""
    pre_process: Script | None
    post_process: Script | None
    progress_regex: str | None
    outputs: tuple[OutputSpec, ...]
    variables: Mapping[str, str]
    """The ``${name}`` variables, for rendering template files at staging."""
    dialect: str
    """``rescale``, ``exabyte`` or ``sahara``."""
