"""Staging against a real HTTP server on 127.0.0.1 (pytest-httpserver)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from agent.commands.local import local_fetcher
from agent.spec import FileSource, InputFile, TemplateTask, load_spec_document
from agent.staging import JobFault, stage, unpack
from agent.workspace import Workspace

pytestmark = pytest.mark.anyio


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def spec_with(inputs: list[dict[str, object]], **extra: object) -> object:
    return load_spec_document(
        {"command": "true", "inputFiles": inputs, "hardware": {"coresPerSlot": 1}, **extra}
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    (tmp_path / "private").mkdir()
    return Workspace.create(tmp_path, tmp_path / "private", "job")


async def test_download_checksums_and_decompress(
    httpserver: HTTPServer, workspace: Workspace, tmp_path: Path
) -> None:
    data = b"x" * 100_000
    httpserver.expect_request("/data.bin").respond_with_data(data)
    httpserver.expect_request("/pack.tar.gz").respond_with_data(
        tarball({"inner/a.txt": b"A", "b.txt": b"B"})
    )
    spec = spec_with(
        [
            {
                "downloadUrl": httpserver.url_for("/data.bin"),
                "relativePath": "in/data.bin",
                "md5": hashlib.md5(data).hexdigest(),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            {
                "downloadUrl": httpserver.url_for("/pack.tar.gz"),
                "relativePath": "pack.tar.gz",
                "decompress": True,
            },
        ]
    )
    wrote = await stage(spec, workspace, local_fetcher(tmp_path, 5.0))  # type: ignore[arg-type]
    assert wrote  # files to hand over to the job user
    run = workspace.run_dir
    assert (run / "in" / "data.bin").read_bytes() == data
    assert (run / "inner" / "a.txt").read_bytes() == b"A"
    assert (run / "b.txt").read_bytes() == b"B"
    assert not (run / "pack.tar.gz").exists()


async def test_checksum_mismatch_is_the_jobs_fault(
    httpserver: HTTPServer, workspace: Workspace, tmp_path: Path
) -> None:
    httpserver.expect_request("/data.bin").respond_with_data(b"actual")
    spec = spec_with(
        [
            {
                "downloadUrl": httpserver.url_for("/data.bin"),
                "relativePath": "data.bin",
                "sha256": "0" * 64,
            }
        ]
    )
    with pytest.raises(JobFault, match="sha256 mismatch"):
        await stage(spec, workspace, local_fetcher(tmp_path, 5.0))  # type: ignore[arg-type]


async def test_missing_input_is_the_jobs_fault(
    httpserver: HTTPServer, workspace: Workspace, tmp_path: Path
) -> None:
    httpserver.expect_request("/gone").respond_with_data("nope", status=404)
    spec = spec_with([{"downloadUrl": httpserver.url_for("/gone"), "relativePath": "x"}])
    with pytest.raises(JobFault, match="404"):
        await stage(spec, workspace, local_fetcher(tmp_path, 5.0))  # type: ignore[arg-type]


async def test_tarball_escaping_the_directory_is_refused(
    httpserver: HTTPServer, workspace: Workspace, tmp_path: Path
) -> None:
    httpserver.expect_request("/evil.tar.gz").respond_with_data(
        tarball({"ok.txt": b"fine", "../evil": b"gotcha"})
    )
    spec = spec_with(
        [
            {
                "downloadUrl": httpserver.url_for("/evil.tar.gz"),
                "relativePath": "evil.tar.gz",
                "decompress": True,
            }
        ]
    )
    with pytest.raises(JobFault, match=r"'\.\./evil' escapes the job directory"):
        await stage(spec, workspace, local_fetcher(tmp_path, 5.0))  # type: ignore[arg-type]
    assert not (workspace.root / "evil").exists()
    # Members are unpacked one by one (a bomb must not be read ahead), so "ok.txt" before
    # the bad member may be there: the job ends ERRORED and its directory goes with it.


def test_symlink_member_pointing_out_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(JobFault, match="escapes"):
        unpack(archive, dest)


def test_zip_escaping_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../../evil.txt", "x")
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(JobFault, match="escapes"):
        unpack(archive, dest)


async def test_templates_are_rendered_with_variables(workspace: Workspace, tmp_path: Path) -> None:
    spec = load_spec_document(
        {
            "analysis": {
                "command": "true",
                "hardware": {"coresPerSlot": 1},
                "templateTasks": [
                    {
                        "templateFile": {"content": "n=${n} keep=$${n} home=$HOME"},
                        "processedFilename": "conf/run.ini",
                    }
                ],
            },
            "parameters": {"n": 7},
        }
    )
    await stage(spec, workspace, local_fetcher(tmp_path, 5.0))
    assert (workspace.run_dir / "conf" / "run.ini").read_text() == "n=7 keep=${n} home=$HOME"


async def test_a_job_with_nothing_to_stage_writes_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    before = sorted(workspace.root.rglob("*"))
    wrote = await stage(spec_with([]), workspace, local_fetcher(tmp_path, 5.0))  # type: ignore[arg-type]
    assert not wrote
    assert sorted(workspace.root.rglob("*")) == before


def test_log_is_empty_only_for_an_empty_regular_file(workspace: Workspace, tmp_path: Path) -> None:
    log = workspace.log_path
    assert workspace.log_is_empty()  # as created
    log.write_bytes(b"x")
    assert not workspace.log_is_empty()
    log.unlink()
    assert not workspace.log_is_empty()  # missing: the upload says what is wrong
    (tmp_path / "elsewhere").touch()
    log.symlink_to(tmp_path / "elsewhere")
    assert not workspace.log_is_empty()  # a link to an empty file is not an empty log


def test_unused_names_are_importable() -> None:
    # The typed pieces of a spec are what staging consumes.
    assert FileSource and InputFile and TemplateTask
