"""Job definitions → RunSpec: table tests per dialect, substitution, walltime, and the
invalid-input table (every bad value names its field)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spec import (
    FileSource,
    InputFile,
    OutputSpec,
    RunSpec,
    Script,
    SpecError,
    TemplateTask,
    check_url_safe,
    load_spec_document,
    parse_walltime,
    resolve_job_spec,
    substitute,
)

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TEMPLATE = {
    "analysis": {"types": ["JSON"], "default": {"command": "true"}, "help": "the run"},
    "outputs": {"types": ["JSON"], "default": [], "help": "declared outputs"},
    "greeting": {"types": ["str"], "default": "hello", "help": "a variable"},
}


def job(analysis: Any, outputs: Any = None, **variables: Any) -> RunSpec:
    values: dict[str, Any] = {"analysis": {"value": analysis, "type": "JSON"}}
    if outputs is not None:
        values["outputs"] = {"value": outputs, "type": "JSON"}
    for name, value in variables.items():
        values[name] = {"value": value, "type": "str"}
    return resolve_job_spec(TEMPLATE, values, {})


def error_of(analysis: Any, outputs: Any = None, queues: tuple[str, ...] = ()) -> SpecError:
    values: dict[str, Any] = {"analysis": {"value": analysis, "type": "JSON"}}
    if outputs is not None:
        values["outputs"] = {"value": outputs, "type": "JSON"}
    with pytest.raises(SpecError) as caught:
        resolve_job_spec(TEMPLATE, values, {}, queues=queues)
    return caught.value


# ---------------------------------------------------------------------- Rescale


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        pytest.param(
            {"command": "true"},
            {
                "command": "true",
                "cores": 1,
                "ranks": 1,
                "use_mpi": False,
                "walltime": None,
                "dialect": "rescale",
                "env": {},
                "memory_mb": None,
                "queue": None,
            },
            id="minimal",
        ),
        pytest.param(
            {"command": ["python", "run.py", "--n", "${greeting}"]},
            {"command": ("python", "run.py", "--n", "hello")},
            id="argv-substituted",
        ),
        pytest.param(
            {
                "command": "mpirun x",
                "useMpi": True,
                "hardware": {
                    "coresPerSlot": 4,
                    "slots": 1,
                    "coreType": "emerald",
                    "walltime": 2,
                    "memory": 2048,
                },
            },
            {
                "cores": 4,
                "ranks": 4,
                "use_mpi": True,
                "core_type": "emerald",
                "walltime": 7200.0,
                "walltime_text": "02:00:00",
                "memory_mb": 2048,
            },
            id="mpi-hardware",
        ),
        pytest.param(
            {"command": "x", "hardware": {"coresPerSlot": 8}},
            {"cores": 8, "ranks": 1, "use_mpi": False},
            id="threads-not-mpi",
        ),
        pytest.param(
            {"command": "x", "hardware": {"coreType": {"code": "onyx"}, "walltime": "00:30:00"}},
            {"core_type": "onyx", "walltime": 1800.0, "walltime_text": "00:30:00"},
            id="coretype-object",
        ),
        pytest.param(
            {
                "command": "x",
                "envVars": {"A": "${greeting} world", "N": 3, "F": 0.5, "B": True, "H": "$HOME"},
            },
            {"env": {"A": "hello world", "N": "3", "F": "0.5", "B": "true", "H": "$HOME"}},
            id="env-stringified-substituted",
        ),
        pytest.param(
            {"command": "x", "progressRegex": r"step (\d+)%"},
            {"progress_regex": r"step (\d+)%"},
            id="progress-regex-one-group",
        ),
        pytest.param(
            {"command": "x", "progressRegex": r"(step) (?P<progress>[0-9.]+)"},
            {"progress_regex": r"(step) (?P<progress>[0-9.]+)"},
            id="progress-regex-named",
        ),
        pytest.param(
            {"analyses": [{"command": "one", "hardware": {"coresPerSlot": 2}}]},
            {"command": "one", "cores": 2},
            id="analyses-wrapper",
        ),
        pytest.param(
            json.dumps({"command": "from text"}),
            {"command": "from text"},
            id="analysis-as-json-text",
        ),
        pytest.param(
            {"command": "x", "analysis": {"code": "user_included"}, "flags": {}},
            {"command": "x"},
            id="documented-keys-ignored",
        ),
    ],
)
def test_rescale(analysis: Any, expected: dict[str, Any]) -> None:
    spec = job(analysis)
    for name, value in expected.items():
        assert getattr(spec, name) == value, name


def test_rescale_files_and_scripts() -> None:
    spec = job(
        {
            "command": "./run.sh",
            "inputFiles": [
                {"downloadUrl": "https://h/files/data.tar.gz?x=1", "decompress": True},
                {
                    "downloadUrl": "/v1/f/2",
                    "relativePath": "in//./b.bin",
                    "md5": MD5.upper(),
                    "sha256": SHA256,
                },
            ],
            "templateTasks": [
                {"templateFile": {"content": "n=${greeting}"}, "processedFilename": "conf/a.ini"},
                {"templateFile": {"downloadUrl": "https://h/t/b.tmpl"}},
                {"templateFile": {"content": "c", "name": "sub/c.cfg"}},
            ],
            "preProcessScript": {"content": "#!/bin/sh\necho pre", "name": "pre.sh"},
            "postProcessScriptCommand": ["tar", "czf", "out-${greeting}.tgz", "out"],
        }
    )
    assert spec.input_files == (
        InputFile("https://h/files/data.tar.gz?x=1", "data.tar.gz", None, None, True),
        InputFile("/v1/f/2", "in/b.bin", MD5, SHA256, False),
    )
    assert spec.template_tasks == (
        TemplateTask(FileSource(None, "n=${greeting}"), "conf/a.ini"),
        TemplateTask(FileSource("https://h/t/b.tmpl", None), "b.tmpl"),
        TemplateTask(FileSource(None, "c"), "sub/c.cfg"),
    )
    assert spec.pre_process == Script(
        ("./pre.sh",), FileSource(None, "#!/bin/sh\necho pre"), "pre.sh"
    )
    assert spec.post_process == Script(("tar", "czf", "out-hello.tgz", "out"), None, None)
    assert spec.variables == {"greeting": "hello"}


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        (
            {"preProcessScript": {"downloadUrl": "https://h/s/setup.sh"}},
            Script(("./setup.sh",), FileSource("https://h/s/setup.sh", None), "setup.sh"),
        ),
        (
            {"preProcessScript": {"content": "echo"}},
            Script(("./preprocess.sh",), FileSource(None, "echo"), "preprocess.sh"),
        ),
        (
            {
                "preProcessScript": {"content": "echo", "name": "s/p.sh"},
                "preProcessScriptCommand": "sh s/p.sh ${greeting}",
            },
            Script("sh s/p.sh hello", FileSource(None, "echo"), "s/p.sh"),
        ),
        ({"preProcessScriptCommand": "echo hi"}, Script("echo hi", None, None)),
        ({}, None),
    ],
)
def test_pre_process_forms(analysis: dict[str, Any], expected: Script | None) -> None:
    assert job({"command": "x", **analysis}).pre_process == expected


# ---------------------------------------------------------------------- Exabyte


@pytest.mark.parametrize(
    ("extra", "compute", "queues", "expected"),
    [
        (
            {},
            {"nodes": 1, "ppn": 1, "queue": "D", "timeLimit": "00:10:00"},
            ("D",),
            {
                "cores": 1,
                "ranks": 1,
                "use_mpi": False,
                "queue": "D",
                "walltime": 600.0,
                "walltime_text": "00:10:00",
                "dialect": "exabyte",
            },
        ),
        (
            {},
            {"nodes": 2, "ppn": 4, "queue": "OR"},
            ("D", "OR"),
            {"cores": 8, "ranks": 8, "use_mpi": True, "walltime": None},
        ),
        (
            {"useMpi": False},
            {"ppn": 4},
            (),
            {"cores": 4, "ranks": 1, "use_mpi": False, "queue": None},
        ),
        ({"useMpi": True}, {}, (), {"cores": 1, "ranks": 1, "use_mpi": True}),
        ({}, {"queue": "anything"}, (), {"queue": "anything"}),
        ({}, {"timeLimit": 1.5}, (), {"walltime": 5400.0, "walltime_text": "01:30:00"}),
    ],
)
def test_exabyte(
    extra: dict[str, Any],
    compute: dict[str, Any],
    queues: tuple[str, ...],
    expected: dict[str, Any],
) -> None:
    values = {"analysis": {"value": {"command": "x", "compute": compute, **extra}, "type": "JSON"}}
    spec = resolve_job_spec(TEMPLATE, values, {}, queues=queues)
    for name, value in expected.items():
        assert getattr(spec, name) == value, name


# ---------------------------------------------------------------------- Sahara


@pytest.mark.parametrize(
    ("analysis", "command", "env", "extra"),
    [
        (
            {
                "type": "Shell",
                "mains": [{"name": "main.sh", "content": "echo"}],
                "libs": [],
                "job_configs": {
                    "args": ["a", 2, True, "${greeting}"],
                    "params": {"MODE": "${greeting}"},
                    "configs": {"mapred.x": "1"},
                },
            },
            ("./main.sh", "a", "2", "true", "hello"),
            {"MODE": "hello"},
            (("main.sh", FileSource(None, "echo")),),
        ),
        ({"type": "Shell", "mains": ["bin/run.sh"]}, ("./bin/run.sh",), {}, ()),
        (
            {
                "type": "Shell",
                "mains": [{"downloadUrl": "https://h/m/job.py"}],
                "libs": ["already/here.py", {"name": "lib/util.py", "content": "x = 1"}],
            },
            ("./job.py",),
            {},
            (
                ("job.py", FileSource("https://h/m/job.py", None)),
                ("lib/util.py", FileSource(None, "x = 1")),
            ),
        ),
    ],
)
def test_sahara(
    analysis: dict[str, Any],
    command: tuple[str, ...],
    env: dict[str, str],
    extra: tuple[tuple[str, FileSource], ...],
) -> None:
    spec = job(analysis)
    assert (spec.dialect, spec.command, dict(spec.env), spec.extra_files) == (
        "sahara",
        command,
        env,
        extra,
    )
    assert (spec.cores, spec.use_mpi) == (1, False)


# ---------------------------------------------------------------------- substitution


VARIABLES = {"a": "A", "b": "B", "n": "7", "empty": "", "ref": "${a}", "my-param": "dash"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${a}", "A"),
        ("x${a}y", "xAy"),
        ("${a}${b}", "AB"),
        ("${a}-${n}-${a}", "A-7-A"),
        ("$${a}", "${a}"),
        ("$${a}${a}", "${a}A"),
        ("$$", "$$"),
        ("$$ ${a}", "$$ A"),
        ("echo $$", "echo $$"),
        ("$HOME", "$HOME"),
        ("$a", "$a"),
        ("${PMI_RANK:-0}", "${PMI_RANK:-0}"),
        ("${PMI_RANK:-${a}}", "${PMI_RANK:-A}"),
        ("${unknown}", "${unknown}"),
        ("$${unknown}", "$${unknown}"),
        ("${ref}", "${a}"),
        ("${empty}", ""),
        ("${my-param}", "dash"),
        ("${a", "${a"),
        ("$", "$"),
        ("", ""),
        ("{a}", "{a}"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert substitute(text, VARIABLES) == expected


def test_variables_from_parameters_and_inputs() -> None:
    template = {
        **TEMPLATE,
        "count": {"types": ["int"], "default": 3},
        "config": {"types": ["JSON"], "default": '{"k": [1, 2]}', "default_type": "JSON"},
        "fixed": {"types": ["str"], "default": "template", "const": True},
        "nothing": {"types": ["str"], "default": None},
        "clash": {"types": ["str"], "default": "parameter"},
    }
    values = {
        "analysis": {
            "value": {"command": "echo ${count} ${config} ${fixed} ${nothing}"},
            "type": "JSON",
        },
        "flag": {"value": False, "type": "bool"},
        "ratio": {"value": 0.25, "type": "float"},
        "fixed": {"value": "job", "type": "str"},
        "loose": "bare",
    }
    inputs = {
        "dataset": {"value": 12, "type": "Dataset<x>"},
        "raw": [1, "a"],
        "clash": {"value": "input", "type": "str"},
    }
    spec = resolve_job_spec(template, values, inputs)
    assert spec.variables == {
        "greeting": "hello",
        "count": "3",
        "config": '{"k": [1, 2]}',
        "fixed": "template",
        "clash": "parameter",
        "flag": "false",
        "ratio": "0.25",
        "loose": "bare",
        "dataset": "12",
        "raw": '[1, "a"]',
    }
    assert spec.command == 'echo 3 {"k": [1, 2]} template ${nothing}'


def test_json_parameters_may_arrive_as_text() -> None:
    template = {
        "analysis": {"types": ["JSON"], "default": '{"command": "echo default"}'},
        "outputs": {"types": ["JSON"], "default": '[{"name": "o", "type": "txt", "path": "o"}]'},
        "notjson": {"types": ["JSON"], "default": "plain words"},
    }
    spec = resolve_job_spec(template, {}, {})
    assert spec.command == "echo default"
    assert spec.outputs == (OutputSpec("o", "txt", "o"),)
    assert spec.variables == {"notjson": "plain words"}


# ---------------------------------------------------------------------- walltime


@pytest.mark.parametrize(
    ("value", "seconds", "text"),
    [
        (1, 3600.0, "01:00:00"),
        (0.5, 1800.0, "00:30:00"),
        (0.1, 360.0, "00:06:00"),
        (48, 172800.0, "48:00:00"),
        ("01:00:00", 3600.0, "01:00:00"),
        ("1:02:03", 3723.0, "01:02:03"),
        ("120:00:00", 432000.0, "120:00:00"),
        ("00:00:01", 1.0, "00:00:01"),
        (" 00:05:00 ", 300.0, "00:05:00"),
    ],
)
def test_walltime(value: Any, seconds: float, text: str) -> None:
    parsed_seconds, parsed_text = parse_walltime(value, "w")
    assert parsed_seconds == pytest.approx(seconds)
    assert parsed_text == text


@pytest.mark.parametrize(
    "value",
    [
        "1:xx:00",
        "10:00",
        "1:60:00",
        "1:00:60",
        "",
        "1h",
        "2",
        "-1:00:00",
        "00:00:00",
        0,
        -1,
        0.0001,
        float("nan"),
        float("inf"),
        True,
        None,
        [1],
        {"h": 1},
        10**9,
    ],
)
def test_walltime_invalid(value: Any) -> None:
    with pytest.raises(SpecError) as caught:
        parse_walltime(value, "analysis.hardware.walltime")
    assert caught.value.field == "analysis.hardware.walltime"


# ---------------------------------------------------------------------- outputs and names


@pytest.mark.parametrize("value", ["model", "a.b-c_d", "tar.gz", "X9", "..."])
def test_url_safe(value: str) -> None:
    assert check_url_safe(value, "f") == value


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "a b", "é", "a?b", "a%20", None, 3])
def test_url_unsafe(value: Any) -> None:
    with pytest.raises(SpecError, match=r"^invalid analysis: f "):
        check_url_safe(value, "f")


def test_outputs() -> None:
    spec = job(
        {"command": "x"},
        [
            {"name": "model", "type": "bin", "path": "out/model.bin"},
            {"name": "model", "type": "json", "path": "rank-*.txt"},
            {"name": "all", "type": "tar.gz", "path": "results/"},
        ],
    )
    assert spec.outputs == (
        OutputSpec("model", "bin", "out/model.bin"),
        OutputSpec("model", "json", "rank-*.txt"),
        OutputSpec("all", "tar.gz", "results/"),
    )


# ---------------------------------------------------------------------- spec documents


def test_document_forms() -> None:
    bare = load_spec_document({"command": "echo ${x}", "hardware": {"coresPerSlot": 2}})
    assert (bare.command, bare.cores, bare.outputs, bare.variables) == ("echo ${x}", 2, (), {})
    full = load_spec_document(
        {
            "analysis": {"command": "echo ${x} ${y}"},
            "outputs": [{"name": "o", "type": "txt", "path": "o.txt"}],
            "parameters": {"x": 1, "y": {"k": True}},
            "description": "ignored",
        }
    )
    assert full.command == 'echo 1 {"k": true}'
    assert full.outputs == (OutputSpec("o", "txt", "o.txt"),)
    sahara = load_spec_document({"type": "Shell", "mains": ["m.sh"]})
    assert sahara.dialect == "sahara"
    exabyte = load_spec_document({"command": "x", "compute": {"queue": "D"}}, queues=["D"])
    assert exabyte.queue == "D"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ([], "spec"),
        ("echo", "spec"),
        ({"analysis": {"command": "x"}, "parameters": []}, "parameters"),
        ({"analysis": {"command": "x"}, "parameters": {"outputs": []}}, "parameters.outputs"),
        ({"analysis": None}, "analysis"),
        ({"analysis": {"command": "x"}, "outputs": {}}, "outputs"),
        ({"hardware": {}}, "analysis.command"),
        ({"command": "x", "compute": {"queue": "Q"}}, "analysis.compute.queue"),
    ],
)
def test_document_invalid(document: Any, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_document(document, queues=["D"])
    assert caught.value.field == field


def test_spec_is_json_serialisable_and_error_pickles() -> None:
    spec = load_spec_document(
        {
            "type": "Shell",
            "mains": [{"name": "m", "content": "x"}],
            "job_configs": {"params": {"A": 1}},
        }
    )
    assert json.loads(json.dumps(dataclasses.asdict(spec)))["extra_files"][0][0] == "m"
    error = SpecError("analysis.hardware.coresPerSlot", "must be an integer ≥ 1, got 0")
    assert (
        str(error)
        == "invalid analysis: analysis.hardware.coresPerSlot must be an integer ≥ 1, got 0"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, str(copy)) == (error.field, str(error))


# ---------------------------------------------------------------------- invalid inputs

A = "analysis"
H = "analysis.hardware"
OK_FILE = {"downloadUrl": "https://h/f/a.bin"}


@pytest.mark.parametrize(
    ("analysis", "outputs", "field"),
    [
        # the analysis itself
        (None, None, A),
        ([], None, A),
        ("not json", None, A),
        ("[1]", None, A),
        (3, None, A),
        ({"analyses": []}, None, "analysis.analyses"),
        ({"analyses": [{"command": "a"}, {"command": "b"}]}, None, "analysis.analyses"),
        ({"analyses": {"command": "a"}}, None, "analysis.analyses"),
        ({"analyses": ["x"]}, None, "analysis.analyses[0]"),
        ({"analyses": [{"command": ""}]}, None, "analysis.analyses[0].command"),
        # command
        ({}, None, "analysis.command"),
        ({"command": None}, None, "analysis.command"),
        ({"command": ""}, None, "analysis.command"),
        ({"command": "   "}, None, "analysis.command"),
        ({"command": []}, None, "analysis.command"),
        ({"command": 5}, None, "analysis.command"),
        ({"command": {"run": "x"}}, None, "analysis.command"),
        ({"command": ["ls", 3]}, None, "analysis.command[1]"),
        ({"command": ["ls", None]}, None, "analysis.command[1]"),
        ({"command": ["", "x"]}, None, "analysis.command[0]"),
        ({"command": "a\0b"}, None, "analysis.command"),
        ({"command": "a\ud800"}, None, "analysis.command"),
        # env
        ({"command": "x", "envVars": []}, None, "analysis.envVars"),
        ({"command": "x", "envVars": "A=1"}, None, "analysis.envVars"),
        ({"command": "x", "envVars": {"A": None}}, None, "analysis.envVars.A"),
        ({"command": "x", "envVars": {"A": [1]}}, None, "analysis.envVars.A"),
        ({"command": "x", "envVars": {"A": {"b": 1}}}, None, "analysis.envVars.A"),
        ({"command": "x", "envVars": {"A=B": "1"}}, None, "analysis.envVars.A=B"),
        ({"command": "x", "envVars": {"": "1"}}, None, "analysis.envVars."),
        ({"command": "x", "envVars": {"A": "a\0"}}, None, "analysis.envVars.A"),
        ({"command": "x", "useMpi": "yes"}, None, "analysis.useMpi"),
        ({"command": "x", "useMpi": 1}, None, "analysis.useMpi"),
        # hardware
        ({"command": "x", "hardware": []}, None, H),
        ({"command": "x", "hardware": "big"}, None, H),
        ({"command": "x", "hardware": {"coresPerSlot": 0}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"coresPerSlot": -2}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"coresPerSlot": "4"}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"coresPerSlot": True}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"coresPerSlot": 2.0}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"coresPerSlot": [2]}}, None, f"{H}.coresPerSlot"),
        ({"command": "x", "hardware": {"slots": 2}}, None, f"{H}.slots"),
        ({"command": "x", "hardware": {"slots": 0}}, None, f"{H}.slots"),
        ({"command": "x", "hardware": {"slots": True}}, None, f"{H}.slots"),
        ({"command": "x", "hardware": {"walltime": "1:xx:00"}}, None, f"{H}.walltime"),
        ({"command": "x", "hardware": {"walltime": -1}}, None, f"{H}.walltime"),
        ({"command": "x", "hardware": {"walltime": False}}, None, f"{H}.walltime"),
        ({"command": "x", "hardware": {"memory": 0}}, None, f"{H}.memory"),
        ({"command": "x", "hardware": {"memory": "4G"}}, None, f"{H}.memory"),
        ({"command": "x", "hardware": {"coreType": 3}}, None, f"{H}.coreType"),
        ({"command": "x", "hardware": {"coreType": {}}}, None, f"{H}.coreType.code"),
        # Exabyte
        ({"command": "x", "compute": {}, "hardware": {}}, None, "analysis.compute"),
        ({"command": "x", "compute": []}, None, "analysis.compute"),
        ({"command": "x", "compute": {"nodes": 0}}, None, "analysis.compute.nodes"),
        ({"command": "x", "compute": {"ppn": "2"}}, None, "analysis.compute.ppn"),
        ({"command": "x", "compute": {"ppn": False}}, None, "analysis.compute.ppn"),
        ({"command": "x", "compute": {"queue": "GPU"}}, None, "analysis.compute.queue"),
        ({"command": "x", "compute": {"queue": 1}}, None, "analysis.compute.queue"),
        ({"command": "x", "compute": {"timeLimit": "1:xx:00"}}, None, "analysis.compute.timeLimit"),
        # input files
        ({"command": "x", "inputFiles": {}}, None, "analysis.inputFiles"),
        ({"command": "x", "inputFiles": [None]}, None, "analysis.inputFiles[0]"),
        ({"command": "x", "inputFiles": [{}]}, None, "analysis.inputFiles[0].downloadUrl"),
        (
            {"command": "x", "inputFiles": [{"downloadUrl": 5}]},
            None,
            "analysis.inputFiles[0].downloadUrl",
        ),
        (
            {"command": "x", "inputFiles": [OK_FILE, {"downloadUrl": "https://h/"}]},
            None,
            "analysis.inputFiles[1].relativePath",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "relativePath": "/etc/passwd"}]},
            None,
            "analysis.inputFiles[0].relativePath",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "relativePath": "a/../../b"}]},
            None,
            "analysis.inputFiles[0].relativePath",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "relativePath": "."}]},
            None,
            "analysis.inputFiles[0].relativePath",
        ),
        (
            {"command": "x", "inputFiles": [{"downloadUrl": "https://h/..%2F..%2Fetc"}]},
            None,
            "analysis.inputFiles[0].relativePath",
        ),
        (
            {"command": "x", "inputFiles": [OK_FILE, OK_FILE, {**OK_FILE, "md5": "abc"}]},
            None,
            "analysis.inputFiles[2].md5",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "md5": "z" * 32}]},
            None,
            "analysis.inputFiles[0].md5",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "sha256": MD5}]},
            None,
            "analysis.inputFiles[0].sha256",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "sha256": 7}]},
            None,
            "analysis.inputFiles[0].sha256",
        ),
        (
            {"command": "x", "inputFiles": [{**OK_FILE, "decompress": "yes"}]},
            None,
            "analysis.inputFiles[0].decompress",
        ),
        # template tasks
        (
            {"command": "x", "templateTasks": [{"processedFilename": "a"}]},
            None,
            "analysis.templateTasks[0].templateFile",
        ),
        (
            {"command": "x", "templateTasks": [{"templateFile": {}, "processedFilename": "a"}]},
            None,
            "analysis.templateTasks[0].templateFile",
        ),
        (
            {
                "command": "x",
                "templateTasks": [
                    {"templateFile": {"content": "a", **OK_FILE}, "processedFilename": "a"}
                ],
            },
            None,
            "analysis.templateTasks[0].templateFile",
        ),
        (
            {
                "command": "x",
                "templateTasks": [{"templateFile": {"content": 1}, "processedFilename": "a"}],
            },
            None,
            "analysis.templateTasks[0].templateFile.content",
        ),
        (
            {"command": "x", "templateTasks": [{"templateFile": {"content": "a"}}]},
            None,
            "analysis.templateTasks[0].processedFilename",
        ),
        (
            {
                "command": "x",
                "templateTasks": [{"templateFile": {"content": "a"}, "processedFilename": "../a"}],
            },
            None,
            "analysis.templateTasks[0].processedFilename",
        ),
        # scripts
        ({"command": "x", "preProcessScript": "echo"}, None, "analysis.preProcessScript"),
        ({"command": "x", "preProcessScript": {"id": "abc"}}, None, "analysis.preProcessScript"),
        (
            {"command": "x", "postProcessScript": {"content": "x", "name": "/bin/sh"}},
            None,
            "analysis.postProcessScript.name",
        ),
        (
            {"command": "x", "postProcessScriptCommand": []},
            None,
            "analysis.postProcessScriptCommand",
        ),
        ({"command": "x", "preProcessScriptCommand": 3}, None, "analysis.preProcessScriptCommand"),
        # progress regex
        ({"command": "x", "progressRegex": "("}, None, "analysis.progressRegex"),
        ({"command": "x", "progressRegex": "no group"}, None, "analysis.progressRegex"),
        ({"command": "x", "progressRegex": "(a)(b)"}, None, "analysis.progressRegex"),
        ({"command": "x", "progressRegex": 5}, None, "analysis.progressRegex"),
        # Sahara
        ({"type": "Pig", "mains": ["a"]}, None, "analysis.type"),
        ({"mains": ["a"]}, None, "analysis.type"),
        ({"type": "Shell"}, None, "analysis.mains"),
        ({"type": "Shell", "mains": []}, None, "analysis.mains"),
        ({"type": "Shell", "mains": ["a", "b"]}, None, "analysis.mains"),
        ({"type": "Shell", "mains": [3]}, None, "analysis.mains[0]"),
        ({"type": "Shell", "mains": ["/bin/sh"]}, None, "analysis.mains[0]"),
        ({"type": "Shell", "mains": [{"content": "x"}]}, None, "analysis.mains[0].name"),
        ({"type": "Shell", "mains": ["a"], "libs": "b"}, None, "analysis.libs"),
        ({"type": "Shell", "mains": ["a"], "libs": ["../b"]}, None, "analysis.libs[0]"),
        ({"type": "Shell", "mains": ["a"], "job_configs": []}, None, "analysis.job_configs"),
        (
            {"type": "Shell", "mains": ["a"], "job_configs": {"args": "a b"}},
            None,
            "analysis.job_configs.args",
        ),
        (
            {"type": "Shell", "mains": ["a"], "job_configs": {"args": [None]}},
            None,
            "analysis.job_configs.args[0]",
        ),
        (
            {"type": "Shell", "mains": ["a"], "job_configs": {"params": {"P": [1]}}},
            None,
            "analysis.job_configs.params.P",
        ),
        (
            {"type": "Shell", "mains": ["a"], "job_configs": {"configs": "x"}},
            None,
            "analysis.job_configs.configs",
        ),
        # outputs
        ({"command": "x"}, {"name": "a"}, "outputs"),
        ({"command": "x"}, "[", "outputs"),
        ({"command": "x"}, [None], "outputs[0]"),
        ({"command": "x"}, [{"type": "t", "path": "p"}], "outputs[0].name"),
        ({"command": "x"}, [{"name": "a/b", "type": "t", "path": "p"}], "outputs[0].name"),
        ({"command": "x"}, [{"name": "..", "type": "t", "path": "p"}], "outputs[0].name"),
        ({"command": "x"}, [{"name": "a", "type": "t t", "path": "p"}], "outputs[0].type"),
        ({"command": "x"}, [{"name": "a", "type": "t"}], "outputs[0].path"),
        ({"command": "x"}, [{"name": "a", "type": "t", "path": "/etc/passwd"}], "outputs[0].path"),
        ({"command": "x"}, [{"name": "a", "type": "t", "path": "x/../../y"}], "outputs[0].path"),
        (
            {"command": "x"},
            [{"name": "a", "type": "t", "path": "p"}, {"name": "a", "type": "t", "path": "q"}],
            "outputs[1]",
        ),
    ],
)
def test_invalid(analysis: Any, outputs: Any, field: str) -> None:
    error = error_of(analysis, outputs, queues=("D",))
    assert error.field == field
    assert str(error).startswith(f"invalid analysis: {field} ")


@pytest.mark.parametrize(
    ("template", "values", "inputs", "field"),
    [
        ({}, {}, {}, "analysis"),
        ([], {}, {}, "parameters"),
        ({"analysis": "x"}, {}, {}, "parameters.analysis"),
        (TEMPLATE, None, {}, "parameter_values"),
        (TEMPLATE, {}, [], "input_values"),
        (TEMPLATE, {"analysis": {"value": None, "type": "JSON"}}, {}, "analysis"),
        (TEMPLATE, {"bad": {"value": "\ud800", "type": "str"}}, {}, "parameters.bad"),
    ],
)
def test_invalid_parameters(template: Any, values: Any, inputs: Any, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_job_spec(template, values, inputs)
    assert caught.value.field == field


def test_substituted_value_is_checked_like_the_command() -> None:
    with pytest.raises(SpecError) as caught:
        job({"command": ["${greeting}"]}, greeting="")
    assert caught.value.field == "analysis.command[0]"
    with pytest.raises(SpecError) as caught:
        job({"command": "echo ${greeting}"}, greeting="a\0b")
    assert caught.value.field == "analysis.command"


# ---------------------------------------------------------------------- property

KEYS = [
    "command",
    "envVars",
    "useMpi",
    "hardware",
    "coresPerSlot",
    "slots",
    "walltime",
    "memory",
    "coreType",
    "inputFiles",
    "downloadUrl",
    "relativePath",
    "md5",
    "sha256",
    "decompress",
    "templateTasks",
    "templateFile",
    "content",
    "processedFilename",
    "preProcessScript",
    "preProcessScriptCommand",
    "postProcessScript",
    "name",
    "postProcessScriptCommand",
    "progressRegex",
    "analyses",
    "compute",
    "nodes",
    "ppn",
    "queue",
    "timeLimit",
    "type",
    "mains",
    "libs",
    "job_configs",
    "args",
    "params",
    "configs",
    "path",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["Shell", "01:00:00", "a/b", "..", "(x)", "${v}"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=30,
)


def outcome(call: Callable[[], RunSpec]) -> RunSpec | SpecError:
    try:
        return call()
    except SpecError as error:
        return error


@settings(max_examples=400, deadline=None)
@given(analysis=JSON, outputs=JSON, variable=JSON)
def test_only_spec_errors(analysis: Any, outputs: Any, variable: Any) -> None:
    values = {
        "analysis": {"value": analysis, "type": "JSON"},
        "outputs": {"value": outputs, "type": "JSON"},
        "v": {"value": variable},
    }
    result = outcome(lambda: resolve_job_spec(TEMPLATE, values, {"i": variable}, queues=("D",)))
    if isinstance(result, SpecError):
        assert result.field
    else:
        assert result.cores >= 1
        assert result.ranks >= 1
        json.dumps(dataclasses.asdict(result))
