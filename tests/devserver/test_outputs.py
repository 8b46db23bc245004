"""Outputs: upload rules per phase, filename, duplicates, download and /info."""

from __future__ import annotations

from collections.abc import Iterator

from agent.devserver.disposition import attachment

from .helpers import FINISH_OK, World, finish_error


def test_upload_download_and_info(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    data = bytes(range(256)) * 10
    reply = world.upload(job, node, "model", "tar.gz", data)
    assert reply.status_code == 200
    info = reply.json()
    assert set(info) == {"pk", "job", "name", "type", "creator", "creation_time", "deletion_time"}
    assert (info["job"], info["name"], info["type"]) == (job, "model", "tar.gz")
    download = world.node.get(f"/v1/jobs/{job}/outputs/model/tar.gz")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-type"] == "application/data"
    assert "model.tar.gz" in download.headers["content-disposition"]
    info_reply = world.node.get(f"/v1/jobs/{job}/outputs/model/tar.gz/info")
    assert info_reply.status_code == 200
    assert info_reply.json() == info
    assert world.job(job)["outputs"] == [{"pk": info["pk"], "name": "model", "type": "tar.gz"}]


def test_quoted_and_extended_filenames(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    for name, header, expected in [
        ("a", 'attachment; filename="my log.txt"', "my log.txt"),
        ("b", "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.txt", "résumé.txt"),
    ]:
        reply = world.node.post(
            f"/v1/jobs/{job}/outputs/{name}/txt",
            node=node,
            headers={"Content-Disposition": header},
            content=b"x",
        )
        assert reply.status_code == 200
        download = world.node.get(f"/v1/jobs/{job}/outputs/{name}/txt")
        assert download.status_code == 200
        assert download.headers["content-disposition"] == attachment(expected)


def chunks() -> Iterator[bytes]:
    for index in range(50):
        yield bytes([index]) * 1000


def test_streamed_upload_with_a_length(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(
        f"/v1/jobs/{job}/outputs/big/bin",
        node=node,
        headers={"Content-Disposition": "attachment; filename=big.bin", "Content-Length": "50000"},
        content=chunks(),
    )
    assert reply.status_code == 200
    assert world.node.get(f"/v1/jobs/{job}/outputs/big/bin").content == b"".join(chunks())


def test_upload_without_filename_is_400(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    for headers in ({}, {"Content-Disposition": "attachment"}):
        reply = world.node.post(
            f"/v1/jobs/{job}/outputs/log/txt", node=node, headers=headers, content=b"x"
        )
        assert reply.status_code == 400
        assert "filename" in reply.json()["detail"]


def test_upload_before_start_is_417(world: World) -> None:
    node = world.new_node()
    job = world.acquired(node)
    assert world.upload(job, node).status_code == 417


def test_upload_after_success_is_406(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=FINISH_OK)
    assert world.upload(job, node).status_code == 406


def test_upload_allowed_while_errored_and_cancelled(world: World) -> None:
    node = world.new_node()
    errored = world.errored(node)
    assert world.upload(errored, node).status_code == 200
    cancelled = world.started(node)
    world.admin.delete(f"/v1/jobs/{cancelled}/cancel")
    assert world.upload(cancelled, node).status_code == 200


def test_duplicate_name_type_is_400(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.upload(job, node, "log", "txt").status_code == 200
    reply = world.upload(job, node, "log", "txt")
    assert reply.status_code == 400
    assert "detail" in reply.json()
    assert world.upload(job, node, "log", "json").status_code == 200


def test_upload_by_non_owner_is_403_but_staff_may(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    assert world.upload(job, world.new_node()).status_code == 403
    assert world.upload(job, None).status_code == 403
    reply = world.admin.post(
        f"/v1/jobs/{job}/outputs/extra/txt",
        headers={"Content-Disposition": "attachment; filename=e.txt"},
        content=b"by admin",
    )
    assert reply.status_code == 200


def test_missing_output_is_400(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    for path in (f"/v1/jobs/{job}/outputs/no/txt", f"/v1/jobs/{job}/outputs/no/txt/info"):
        reply = world.node.get(path)
        assert reply.status_code == 400
        assert "detail" in reply.json()
    assert world.node.get("/v1/jobs/999/outputs/no/txt").status_code == 404


def test_reset_soft_deletes_outputs_which_still_block_duplicates(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    first = world.upload(job, node, "log", "txt", b"attempt 1").json()
    world.node.post(f"/v1/jobs/{job}/finish", node=node, json=finish_error("node stopping"))
    assert world.node.delete(f"/v1/jobs/{job}/reset", node=node).status_code == 200
    assert world.node.delete(f"/v1/jobs/{job}/release", node=node).status_code == 200

    info = world.node.get(f"/v1/jobs/{job}/outputs/log/txt/info").json()
    assert info["pk"] == first["pk"]
    assert info["deletion_time"] is not None
    assert world.job(job)["outputs"] == [{"pk": first["pk"], "name": "log", "type": "txt"}]

    # Run again elsewhere: the same name/type is refused although it was "deleted".
    other = world.new_node()
    assert world.node.get(f"/v1/jobs/{job}/acquire", node=other).status_code == 200
    assert (
        world.node.post(
            f"/v1/jobs/{job}/start", node=other, json={"send_notification": ""}
        ).status_code
        == 200
    )
    again = world.upload(job, other, "log", "txt", b"attempt 2")
    assert again.status_code == 400
    assert world.upload(job, other, "log2", "txt").status_code == 200


def test_download_errors_keep_the_binary_content_type(world: World) -> None:
    """The real server renders everything on the download route as `application/data`."""
    node = world.new_node()
    job = world.started(node)
    reply = world.node.get(f"/v1/jobs/{job}/outputs/no/txt")
    assert (reply.status_code, reply.headers["content-type"]) == (400, "application/data")
    assert "detail" in reply.json()
    anonymous = world.node.http.get(f"/v1/jobs/{job}/outputs/no/txt")
    assert (anonymous.status_code, anonymous.headers["content-type"]) == (401, "application/data")


def test_upload_body_is_read_before_the_job_is_looked_up(world: World) -> None:
    node = world.new_node()
    # No filename: 400 even for a job that does not exist.
    reply = world.node.post("/v1/jobs/999/outputs/log/txt", node=node, content=b"x")
    assert reply.status_code == 400
    # An empty body is never parsed on the real server: its view finds no file, an HTML 500.
    job = world.started(node)
    assert world.upload(job, node, data=b"").status_code == 500


def test_download_needs_an_accept_header_that_admits_data(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    world.upload(job, node, "log", "txt", b"data")
    url = f"/v1/jobs/{job}/outputs/log/txt"
    for accept in ("application/json", "text/html"):
        reply = world.node.get(url, headers={"Accept": accept})
        assert (reply.status_code, reply.headers["content-type"]) == (406, "application/data")
    for accept in ("*/*", "application/data", "application/json, */*"):
        assert world.node.get(url, headers={"Accept": accept}).content == b"data"
    # Negotiation comes before authentication.
    assert world.node.http.get(url, headers={"Accept": "application/json"}).status_code == 406


def test_chunked_upload_is_no_upload(world: World) -> None:
    """Without `Content-Length` the real server (Django under daphne) reads no body: its
    upload view finds no file (HTML 500), and a chunked JSON body reads as `{}`."""
    node = world.new_node()
    job = world.started(node)
    reply = world.node.post(
        f"/v1/jobs/{job}/outputs/big/bin",
        node=node,
        headers={"Content-Disposition": "attachment; filename=big.bin"},
        content=chunks(),
    )
    assert reply.status_code == 500
    assert world.job(job)["outputs"] == []
    listing = world.node.post(
        "/v1/jobs/list",
        headers={"Content-Type": "application/json"},
        content=iter([b"{not json"]),
    )
    assert listing.status_code == 200
    assert [j["pk"] for j in listing.json()] == [job]
