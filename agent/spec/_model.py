"""The typed run spec and its error: plain frozen values, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ERROR_TEXT = 2000
"""``str(SpecError)`` is cut to at most this many characters (``… and N more``). The job
server keeps any length (``Job.error_reason`` is a ``TextField``): the bound is for the
people who read it, and for the server's database."""

_PREFIX = "invalid analysis: "


class SpecError(ValueError):
    """A job definition the agent cannot run: the job's fault, never retried.

    ``field`` is the dotted path of the offending value (``analysis.hardware.coresPerSlot``,
    ``analysis.inputFiles[2].md5``, ``outputs[0].name``); ``str(error)`` is the text the
    job ends with: ``invalid analysis: <field> <message>``.

    One error stands for all the errors of a spec: ``errors`` holds each of them (just
    itself when there is one), ``field`` and ``message`` are the first one's, and
    ``str(error)`` is ``invalid analysis: <field> <message>; <field> <message>…``, at most
    :data:`MAX_ERROR_TEXT` characters. Build it with :meth:`of`.
    """

    def __init__(self, field: str, message: str, *, errors: Sequence[SpecError] = ()) -> None:
        self.field = field
        self.message = message
        self.errors: tuple[SpecError, ...] = tuple(errors) or (self,)
        super().__init__(_text(self.errors))

    @classmethod
    def of(cls, errors: Sequence[SpecError]) -> SpecError:
        """One error standing for ``errors`` (each flattened; repeats dropped)."""
        flat: dict[tuple[str, str], SpecError] = {}
        for error in errors:
            for single in error.errors:
                flat.setdefault((single.field, single.message), single)
        if not flat:
            raise ValueError("no spec errors to combine")
        singles = list(flat.values())
        if len(singles) == 1:
            return singles[0]
        return cls(singles[0].field, singles[0].message, errors=singles)

    def __reduce__(self) -> tuple[Any, ...]:
        pairs = tuple((error.field, error.message) for error in self.errors)
        return _rebuild, (pairs,)


def _rebuild(pairs: tuple[tuple[str, str], ...]) -> SpecError:
    return SpecError.of([SpecError(field, message) for field, message in pairs])


def _text(errors: Sequence[SpecError]) -> str:
    """``invalid analysis: a m; b n…``, cut to :data:`MAX_ERROR_TEXT` characters."""
    parts = [f"{error.field} {error.message}" for error in errors]
    text = _PREFIX + "; ".join(parts)
    if len(text) <= MAX_ERROR_TEXT:
        return text
    room = MAX_ERROR_TEXT - len(_PREFIX) - len(f"… and {len(parts)} more")
    shown: list[str] = []
    used = 0
    for part in parts:
        cost = len(part) + (2 if shown else 0)
        if used + cost > room:
            break
        shown.append(part)
        used += cost
    if not shown:
        shown.append(parts[0][: room - 1] + "…")
    rest = len(parts) - len(shown)
    tail = f"… and {rest} more" if rest else ""
    return _PREFIX + "; ".join(shown) + tail


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
    declared_size: int | None = None
    """Bytes the job says the file has (Rescale's ``decryptedSize``), if it says."""


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
    gpus: int
    """GPUs the job needs on this host (``hardware.gpusPerSlot``; 0: a CPU job)."""
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
