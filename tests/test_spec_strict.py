"""Strict job specs: unknown keys are errors with a suggestion, the dialects' documented
but unused fields are accepted, every error of a spec is reported at once (bounded), and
output names and types stay within what the job server stores."""

from __future__ import annotations

import copy
import json
import pickle
import re
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.outcome import EndReason
from agent.spec import RunSpec, SpecError, load_spec_document, resolve_job_spec
from agent.spec._keys import IGNORED, KNOWN
from agent.spec._model import MAX_ERROR_TEXT
from tests.agent_harness import Harness, harness
from tests.servers import ServerUnderTest

TEMPLATE = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
}
EXAMPLES = sorted(
    p
    for p in (Path(__file__).resolve().parent.parent / "examples").glob("*.json")
    if p.name != "template.json"
)


def parse(analysis: Any, outputs: Any = None) -> RunSpec:
    values: dict[str, Any] = {"analysis": {"value": analysis, "type": "JSON"}}
    if outputs is not None:
        values["outputs"] = {"value": outputs, "type": "JSON"}
    return resolve_job_spec(TEMPLATE, values, {}, queues=("D",))


def error_of(analysis: Any, outputs: Any = None) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse(analysis, outputs)
    return caught.value


# ---------------------------------------------------------------------- unknown keys


def test_walltime_typo_is_an_error_naming_the_key_and_the_fix() -> None:
    error = error_of({"command": "sleep 5", "hardware": {"walltme": "00:00:02"}})
    assert error.field == "analysis.hardware.walltme"
    assert str(error) == (
        "invalid analysis: analysis.hardware.walltme unknown key (did you mean 'walltime'?)"
    )


OUT = [{"name": "o", "type": "txt", "path": "o.txt"}]
FILE = {"downloadUrl": "https://h/f/a.bin"}


@pytest.mark.parametrize(
    ("analysis", "outputs", "field", "message"),
    [
        (
            {"command": "x", "inputFiles": [FILE, {**FILE, "relativPath": "b"}]},
            OUT,
            "analysis.inputFiles[1].relativPath",
            "unknown key (did you mean 'relativePath'?)",
        ),
        (
            {"command": "x", "inputFiles": [{**FILE, "sha265": "0" * 64}]},
            OUT,
            "analysis.inputFiles[0].sha265",
            "unknown key (did you mean 'sha256'?)",
        ),
        (
            {
                "command": "x",
                "templateTasks": [
                    {"templateFile": {"content": "c", "name": "a"}, "processedFileName": "a"}
                ],
            },
            OUT,
            "analysis.templateTasks[0].processedFileName",
            "unknown key (did you mean 'processedFilename'?)",
        ),
        (
            {
                "command": "x",
                "templateTasks": [
                    {"templateFile": {**FILE, "contents": "c"}, "processedFilename": "a"}
                ],
            },
            OUT,
            "analysis.templateTasks[0].templateFile.contents",
            "unknown key (did you mean 'content'?)",
        ),
        (
            {"command": "x"},
            [{"name": "o", "type": "txt", "paht": "o.txt", "path": "o.txt"}],
            "outputs[0].paht",
            "unknown key (did you mean 'path'?)",
        ),
        (
            {"command": "x"},
            [*OUT, {"name": "p", "tpye": "txt", "type": "txt", "path": "p"}],
            "outputs[1].tpye",
            "unknown key (did you mean 'type'?)",
        ),
        (
            {"command": "x", "compute": {"queue": "D", "timelimit": "01:00:00"}},
            OUT,
            "analysis.compute.timelimit",
            "unknown key (did you mean 'timeLimit'?)",
        ),
        (
            {"command": "x", "envVar": {"A": "1"}},
            OUT,
            "analysis.envVar",
            "unknown key (did you mean 'envVars'?)",
        ),
        (
            {"command": "x", "hardware": {"coreType": {"code": "c", "cod": "d"}}},
            OUT,
            "analysis.hardware.coreType.cod",
            "unknown key (did you mean 'code'?)",
        ),
        (
            {"command": "x", "preProcessScript": {"content": "echo", "nmae": "p.sh"}},
            OUT,
            "analysis.preProcessScript.nmae",
            "unknown key (did you mean 'name'?)",
        ),
        (
            {"type": "Shell", "mains": ["m.sh"], "job_configs": {"param": {"A": "1"}}},
            OUT,
            "analysis.job_configs.param",
            "unknown key (did you mean 'params'?)",
        ),
        (
            {"type": "Shell", "mains": [{"name": "m.sh", "content": "x", "urll": "u"}]},
            OUT,
            "analysis.mains[0].urll",
            "unknown key",
        ),
        (
            {"type": "Shell", "mains": ["m.sh"], "command": "x"},
            OUT,
            "analysis.command",
            "unknown key",
        ),
        (
            {"analyses": [{"command": "x"}], "command": "y"},
            OUT,
            "analysis.command",
            "unknown key",
        ),
        (
            {"command": "x", "hardware": {"qqqqqq": 1}},
            OUT,
            "analysis.hardware.qqqqqq",
            "unknown key",
        ),
    ],
)
def test_unknown_keys(analysis: Any, outputs: Any, field: str, message: str) -> None:
    error = error_of(analysis, outputs)
    assert [(e.field, e.message) for e in error.errors] == [(field, message)]
    assert str(error) == f"invalid analysis: {field} {message}"


def test_unknown_key_of_a_spec_document() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_document({"analysis": {"command": "x"}, "output": []})
    assert str(caught.value) == (
        "invalid analysis: spec.output unknown key (did you mean 'outputs'?)"
    )


# ---------------------------------------------------------------------- accepted, ignored

IGNORED_VALUE = {"any": ["value", 1, None]}


def _place(kind: str, key: str) -> list[tuple[str, Callable[[], RunSpec]]]:
    """Where an object of ``kind`` appears in a valid spec: (label, parse it with ``key``)."""
    extra = {key: IGNORED_VALUE}
    if kind == "document":
        document = {"analysis": {"command": "x"}, **extra}
        return [("document", partial(load_spec_document, document))]
    sahara = {"type": "Shell", "mains": ["m.sh"]}
    template = {"templateFile": {**FILE, **extra}, "processedFilename": "t"}
    places: dict[str, list[tuple[str, Any]]] = {
        "rescale": [("analysis", {"command": "x", **extra})],
        "exabyte": [("analysis", {"command": "x", "compute": {}, **extra})],
        "sahara": [("analysis", {**sahara, **extra})],
        "hardware": [("hardware", {"command": "x", "hardware": {"coresPerSlot": 2, **extra}})],
        "coreType": [
            ("coreType", {"command": "x", "hardware": {"coreType": {"code": "c", **extra}}})
        ],
        "compute": [("compute", {"command": "x", "compute": {"ppn": 2, **extra}})],
        "inputFile": [("inputFiles", {"command": "x", "inputFiles": [{**FILE, **extra}]})],
        "file": [
            ("preProcessScript", {"command": "x", "preProcessScript": {"content": "e", **extra}}),
            ("templateFile", {"command": "x", "templateTasks": [template]}),
            ("mains", {**sahara, "mains": [{"name": "m.sh", "content": "e", **extra}]}),
        ],
    }
    return [(label, partial(parse, analysis)) for label, analysis in places[kind]]


IGNORED_CASES = [
    pytest.param(kind, key, label, call, id=f"{kind}-{label}-{key}")
    for kind, keys in IGNORED.items()
    for key in keys
    for label, call in _place(kind, key)
]


@pytest.mark.parametrize(("kind", "key", "label", "call"), IGNORED_CASES)
def test_documented_but_ignored_fields_are_accepted(
    kind: str, key: str, label: str, call: Callable[[], RunSpec]
) -> None:
    assert key not in KNOWN[kind]
    assert isinstance(call(), RunSpec), (kind, key, label)


def test_every_kind_with_ignored_fields_is_covered() -> None:
    covered = {case.values[0] for case in IGNORED_CASES}
    assert covered == {kind for kind, keys in IGNORED.items() if keys}


def test_ignored_fields_change_nothing() -> None:
    plain = {
        "command": "x",
        "hardware": {"coresPerSlot": 2, "walltime": 1},
        "inputFiles": [FILE],
    }
    rescale = {
        **plain,
        "analysis": {"code": "user_included", "version": "0"},
        "useRescaleLicense": False,
        "onDemandLicenseSeller": None,
        "hardware": {**plain["hardware"], "coreType": "emerald", "type": "compute"},  # type: ignore[dict-item]
        "inputFiles": [{**FILE, "id": "XkpTse", "decompress": True}],
    }
    a, b = parse(plain), parse(rescale)
    assert (a.command, a.cores, a.walltime) == (b.command, b.cores, b.walltime)
    assert b.core_type == "emerald"
    assert b.input_files[0].decompress


def test_examples_parse() -> None:
    assert EXAMPLES
    for path in EXAMPLES:
        load_spec_document(json.loads(path.read_text(encoding="utf-8")), queues=["D"])


# ---------------------------------------------------------------------- all errors at once


def test_several_errors_are_reported_together_in_document_order() -> None:
    error = error_of(
        {
            "comand": "x",
            "hardware": {"coresPerSlot": 0, "walltime": "soon"},
            "inputFiles": [{**FILE, "md5": "abc"}, {"downloadUrl": 5}],
        },
        [{"name": "a b", "type": "t", "path": "/etc/passwd"}],
    )
    expected = [
        ("analysis.comand", "unknown key (did you mean 'command'?)"),
        ("analysis.command", "is required"),
        ("analysis.hardware.coresPerSlot", "must be an integer ≥ 1, got the number 0"),
        (
            "analysis.hardware.walltime",
            "must be hours (a number) or \"HH:MM:SS\", got the string 'soon'",
        ),
        ("analysis.inputFiles[0].md5", "must be 32 hex characters, got the string 'abc'"),
        ("analysis.inputFiles[1].downloadUrl", "must be a string, got the number 5"),
        ("outputs[0].name", "must match [A-Za-z0-9._-]+ (not . or ..), got the string 'a b'"),
        ("outputs[0].path", "must be relative to the job directory, got the string '/etc/passwd'"),
    ]
    assert [(e.field, e.message) for e in error.errors] == expected
    assert (error.field, error.message) == expected[0]
    assert str(error) == "invalid analysis: " + "; ".join(f"{f} {m}" for f, m in expected)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, str(copy), len(copy.errors)) == (error.field, str(error), len(expected))


def test_the_error_text_is_bounded() -> None:
    env = {f"V{i:03d}": [i] for i in range(300)}
    error = error_of({"command": "x", "envVars": env})
    assert len(error.errors) == 300
    text = str(error)
    assert len(text) <= MAX_ERROR_TEXT
    match = re.search(r"… and (\d+) more$", text)
    assert match is not None
    shown = text.count("must be a string, number or boolean")
    assert shown + int(match.group(1)) == 300
    assert text.startswith("invalid analysis: analysis.envVars.V000 must be")


def test_one_huge_error_is_cut_too() -> None:
    error = error_of({"command": "x", "hardware": {"k" * 10_000: 1}})
    assert error.field == "analysis.hardware." + "k" * 10_000
    assert len(str(error)) <= MAX_ERROR_TEXT
    assert str(error).endswith("…")


# ---------------------------------------------------------------------- output limits


@pytest.mark.parametrize("part", ["name", "type"])
def test_output_name_and_type_within_the_servers_limit(part: str) -> None:
    at_limit = {"name": "n", "type": "t", "path": "p", part: "a" * 200}
    assert parse({"command": "x"}, [at_limit]).outputs[0].name in ("n", "a" * 200)
    too_long = {**at_limit, part: "a" * 10_000}
    error = error_of({"command": "x"}, [at_limit, too_long])
    assert str(error) == (
        f"invalid analysis: outputs[1].{part} must be at most 200 characters "
        "(the job server's limit), got 10000"
    )


# ---------------------------------------------------------------------- property

VALID = [
    {
        "analysis": {
            "command": ["run", "${v}"],
            "envVars": {"A": "1", "B": 2},
            "useMpi": False,
            "hardware": {"coresPerSlot": 2, "slots": 1, "walltime": "00:10:00", "memory": 64},
            "inputFiles": [{**FILE, "relativePath": "in/a.bin", "md5": "0" * 32}],
            "templateTasks": [{"templateFile": {"content": "c", "name": "t"}}],
            "preProcessScript": {"content": "echo", "name": "pre.sh"},
            "postProcessScriptCommand": "echo post",
            "progressRegex": "(\\d+)%",
        },
        "outputs": [{"name": "o", "type": "txt", "path": "o.txt"}],
    },
    {
        "analysis": {"command": "x", "compute": {"nodes": 1, "ppn": 2, "queue": "D"}},
        "outputs": [],
    },
    {
        "analysis": {
            "type": "Shell",
            "mains": [{"name": "m.sh", "content": "echo"}],
            "libs": ["lib.sh"],
            "job_configs": {"args": ["a", 1], "params": {"P": "x"}, "configs": {}},
        },
        "outputs": [{"name": "a", "type": "b", "path": "c"}],
    },
    {"analysis": {"analyses": [{"command": "x"}]}, "outputs": []},
]
SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
KEY = st.text(st.characters(exclude_characters=".[]", codec="utf-8"), min_size=1, max_size=8)
WRONG = st.sampled_from([None, True, -1, 0, 2.5, "", "zz", [], [1], {}, {"k": "v"}])


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every object and list in ``value``."""
    found = [path] if isinstance(value, dict | list) else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += containers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += containers(item, (*path, index))
    return found


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every value below the top."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += leaves(item, (*path, index))
    return found


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def broken(draw: st.DrawFn) -> dict[str, Any]:
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            target = at(doc, draw(st.sampled_from(containers(doc))))
            if isinstance(target, dict):
                target[draw(KEY)] = copy.deepcopy(draw(WRONG))
            else:
                target.insert(draw(st.integers(0, len(target))), copy.deepcopy(draw(WRONG)))
        else:
            path = draw(st.sampled_from(leaves(doc)))
            at(doc, path[:-1])[path[-1]] = copy.deepcopy(draw(WRONG))
    return doc


def exists(doc: Any, field: str) -> bool:
    """Whether the dotted ``field`` (``analysis.inputFiles[0].md5``) is a path in ``doc``:
    every step is there, except that the last may be a missing (required) key."""
    steps = SEGMENT.findall("." + field)
    if "".join(f".{key}" if key else f"[{index}]" for key, index in steps) != "." + field:
        return False
    node = doc
    for number, (key, index) in enumerate(steps):
        if key:
            if not isinstance(node, dict):
                return False
            if key not in node:
                return number == len(steps) - 1
            node = node[key]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return False
            node = node[int(index)]
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=broken())
def test_broken_specs_only_raise_spec_errors_naming_real_fields(doc: dict[str, Any]) -> None:
    result = outcome(partial(parse, doc["analysis"], doc["outputs"]))
    if isinstance(result, SpecError):
        assert result.errors
        assert len(str(result)) <= MAX_ERROR_TEXT
        for single in result.errors:
            assert single.field.startswith(("analysis", "outputs")), single.field
            assert exists(doc, single.field), (single.field, doc)


def outcome(call: Callable[[], RunSpec]) -> RunSpec | SpecError:
    """The spec, or the error (anything else propagates and fails the test)."""
    try:
        return call()
    except SpecError as error:
        return error


# ---------------------------------------------------------------------- end to end


@pytest.fixture
async def h(any_server: ServerUnderTest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(any_server, tmp_path) as value:
        yield value


@pytest.mark.anyio
async def test_the_job_error_lists_every_spec_error(h: Harness) -> None:
    analysis = {"command": "sleep 5", "hardware": {"walltme": "00:00:02", "slots": 2}}
    outputs = [{"name": "n" * 10_000, "type": "txt", "path": "o.txt"}]
    expected = str(error_of(analysis, outputs))
    job = await h.submit(analysis, outputs)
    with anyio.fail_after(30):
        reports = await h.run_until_idle()
    assert [r.outcome.reason for r in reports] == [EndReason.INVALID_SPEC]
    final = await h.job(job)
    assert final.phase == "ERRORED"
    assert final.error_reason == expected
    assert final.error_reason.count(";") == 2
