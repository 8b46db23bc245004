"""Field-level checks: each takes a JSON value and its dotted field, returns a typed
value or raises :class:`SpecError` naming the field. Plus the three public helpers
that are useful on their own: :func:`substitute`, :func:`parse_walltime` and
:func:`check_url_safe`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

from agent.spec._keys import unknown_keys
from agent.spec._model import FileSource, SpecError

T = TypeVar("T")

NO_OBJECT: Mapping[str, Any] = MappingProxyType({})
"""The stand-in for an object that is not one (its error is recorded)."""
NO_ITEMS: Sequence[Any] = ()
"""The stand-in for a list that is not one."""
NO_COMMAND: str | tuple[str, ...] = "true"
"""The stand-in for a command that is not one."""

MAX_WALLTIME_HOURS = 24 * 365 * 100
"""A walltime beyond a century is a typo, not a limit."""

_VARIABLE = re.compile(r"\$(\$?)\{([^{}$]*)\}")
_HMS = re.compile(r"([0-9]+):([0-5][0-9]):([0-5][0-9])")
_URL_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_HEX = re.compile(r"[0-9a-fA-F]+")


def fail(field: str, message: str) -> NoReturn:
    raise SpecError(field, message)


class Issues:
    """The errors of one spec, collected so that all of them are reported at once.

    Each part of a spec is checked with :meth:`attempt`: its error is recorded and the
    parse goes on with a stand-in value; :meth:`raise_any` then raises one
    :class:`SpecError` for all of them.
    """

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def add(self, error: SpecError) -> None:
        self.errors.append(error)

    def attempt(self, check: Callable[[], T], stand_in: T) -> T:
        """``check()``, or ``stand_in`` once its error is recorded."""
        try:
            return check()
        except SpecError as error:
            self.add(error)
            return stand_in

    def keys(self, data: Mapping[Any, Any], field: str, kind: str) -> None:
        """Record the keys of ``data`` that an object of ``kind`` may not hold."""
        self.errors.extend(unknown_keys(data, field, kind))

    def raise_any(self) -> None:
        if self.errors:
            raise SpecError.of(self.errors)


def kind(value: object) -> str:
    """How a value looks in JSON terms, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``${name}`` by the value of the known variable ``name``, in one pass.

    ``$${name}`` (``name`` known) becomes the literal ``${name}``. Everything else is left
    exactly as written for the shell: ``$HOME``, ``$$``, ``${PMI_RANK:-0}``, ``${unknown}``
    and ``$${unknown}``. Values are inserted verbatim (no quoting) and are not scanned again,
    so a value containing ``${other}`` stays as it is.
    """

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if name not in variables:
            return match.group(0)
        return "${" + name + "}" if escaped else variables[name]

    return _VARIABLE.sub(replace, text)


def parse_walltime(value: Any, field: str) -> tuple[float, str]:
    """Hours (a number, as Rescale gives it) or ``"HH:MM:SS"`` → (seconds, ``"HH:MM:SS"``).

    Hours may have any number of digits (``"120:00:00"``); minutes and seconds must be two
    digits below 60. ``"MM:SS"`` and ``"HH:MM"`` are refused as ambiguous. The limit must
    be at least one second and at most a century; the text is rounded to whole seconds.
    """
    if isinstance(value, str):
        match = _HMS.fullmatch(value.strip())
        if match is None:
            fail(field, f'must be hours (a number) or "HH:MM:SS", got {kind(value)}')
        hours, minutes, secs = (int(part) for part in match.groups())
        if hours > MAX_WALLTIME_HOURS:
            fail(field, f"must be at most {MAX_WALLTIME_HOURS} hours, got {kind(value)}")
        seconds = float(hours * 3600 + minutes * 60 + secs)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value > MAX_WALLTIME_HOURS:
            fail(field, f"must be a finite number of hours ≤ {MAX_WALLTIME_HOURS}, got {value!r}")
        seconds = float(value) * 3600
    else:
        fail(field, f'must be hours (a number) or "HH:MM:SS", got {kind(value)}')
    if seconds < 1:
        fail(field, f"must be at least 1 second, got {kind(value)}")
    whole = round(seconds)
    return seconds, f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def check_url_safe(value: object, field: str) -> str:
    """An output name or type: ``[A-Za-z0-9._-]+``, and not ``.`` or ``..``."""
    if not isinstance(value, str) or not _URL_SAFE.fullmatch(value) or value in (".", ".."):
        fail(field, f"must match [A-Za-z0-9._-]+ (not . or ..), got {kind(value)}")
    return value


def encodable(value: str, field: str) -> str:
    """Text that can be written out as UTF-8 (JSON can carry lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        fail(field, "must be valid Unicode (it holds a lone surrogate)")
    return value


def os_text(value: str, field: str) -> str:
    """Text that ends up in an argv, the environment or a path: encodable, no NUL."""
    if "\0" in value:
        fail(field, "must not contain a NUL character")
    return encodable(value, field)


def obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        fail(field, f"must be an object, got {kind(value)}")
    return value


def optional_obj(value: Any, field: str) -> Mapping[str, Any]:
    """An object; absent (None) is an empty one."""
    return {} if value is None else obj(value, field)


def items(value: Any, field: str, *, required: bool = False) -> list[Any]:
    """A JSON list; absent (None) is an empty list unless ``required``."""
    if value is None and not required:
        return []
    if not isinstance(value, list | tuple):
        fail(field, "is required" if value is None else f"must be a list, got {kind(value)}")
    return list(value)


def string(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if value is None:
        fail(field, "is required")
    if not isinstance(value, str):
        fail(field, f"must be a string, got {kind(value)}")
    if not allow_empty and not value.strip():
        fail(field, "must not be empty")
    return os_text(value, field)


def optional_string(value: Any, field: str) -> str | None:
    return None if value is None else string(value, field)


def flag(value: Any, field: str, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        fail(field, f"must be true or false, got {kind(value)}")
    return value


def optional_count(value: Any, field: str) -> int | None:
    """An optional integer ≥ 1 (JSON booleans and floats are not integers)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(field, f"must be an integer ≥ 1, got {kind(value)}")
    return value


def byte_count(value: Any, field: str) -> int | None:
    """A number of bytes (an integer ≥ 0), or None when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(field, f"must be a number of bytes (an integer ≥ 0), got {kind(value)}")
    return value


def count_or_zero(value: Any, field: str) -> int:
    """An integer ≥ 0 that defaults to 0 (a number of GPUs)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(field, f"must be an integer ≥ 0, got {kind(value)}")
    return value


def count(value: Any, field: str) -> int:
    """An integer ≥ 1 that defaults to 1."""
    result = optional_count(value, field)
    return 1 if result is None else result


def relative_path(value: Any, field: str, *, allow_dot: bool = False) -> str:
    """A path inside the job directory: relative, no ``..`` component; normalised."""
    text = string(value, field)
    path = PurePosixPath(text)
    if path.is_absolute():
        fail(field, f"must be relative to the job directory, got {kind(value)}")
    if ".." in path.parts:
        fail(field, f"must not contain a '..' component, got {kind(value)}")
    if str(path) == "." and not allow_dot:
        fail(field, f"must name a file, got {kind(value)}")
    return str(path)


def digest(value: Any, field: str, length: int) -> str | None:
    """An optional hex digest of ``length`` characters, returned lower-case."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != length or not _HEX.fullmatch(value):
        fail(field, f"must be {length} hex characters, got {kind(value)}")
    return value.lower()


def url_basename(url: str) -> str:
    """The last path segment of a URL, percent-decoded; "" when there is none."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(PurePosixPath(path).name) if path else ""


def file_source(data: Mapping[str, Any], field: str) -> FileSource:
    """``{downloadUrl}`` or ``{content}``: exactly one of the two."""
    url, content = data.get("downloadUrl"), data.get("content")
    if (url is None) == (content is None):
        fail(field, "must have exactly one of downloadUrl and content")
    if url is not None:
        return FileSource(string(url, f"{field}.downloadUrl"), None)
    if not isinstance(content, str):
        fail(f"{field}.content", f"must be a string, got {kind(content)}")
    return FileSource(None, encodable(content, f"{field}.content"))


def scalar_text(value: Any, field: str) -> str:
    """A string, number or boolean as text (``true``/``false`` for booleans)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    fail(field, f"must be a string, number or boolean, got {kind(value)}")


def variable_text(value: Any) -> str:
    """A parameter or input value as a ``${name}`` variable: scalars as text, the rest as JSON."""
    if isinstance(value, str | bool | int | float):
        return scalar_text(value, "")
    return json.dumps(value, ensure_ascii=False, default=str)


def decode_json(value: Any, field: str) -> Any:
    """A JSON-typed value that arrived as text (e.g. a template default) → its value."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as exc:
        fail(field, f"is not valid JSON: {exc}")
