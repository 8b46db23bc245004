"""Outputs: upload rules per phase, filename, duplicates, download and /info."""

from __future__ import annotations

from collections.abc import Iterator

from .helpers import FINISH_OK, World, finish_error


def test_upload_download_and_info(world: World) -> None:
    node = world.new_node()
    job = world.started(node)
    data = bytes(range(256)) * 10
    reply = world.upload(job, node, "model", "tar.gz", data)
    assert reply.status_code == 200
    info = reply.json()
    assert {"pk", "job", "name", "type"} <= set(info)
    assert (info["job"], info["name"], info["type"], info["size"]) == (job, "model", "tar.gz", 2560)
    download = world.node.get(f"/v1/jobs/{job}/outputs/model/tar.gz")
    assert download.status_code == 200
    assert download.content == data
    assert "model.tar.gz" in download.headers["content-disposition"]
    info_reply = world.node.get(f"/v1/jobs/{job}/outputs/model/tar.gz/info")
    assert info_reply.status_code == 200
    assert info_reply.json()["filename"] == "model.tar.gz"
    assert info_reply.json()["deletion_time"] is None
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
        assert reply.json()["filename"] == expected
        assert world.node.get(f"/v1/jobs/{job}/outputs/{name}/txt").status_code == 200


def test_streamed_chunked_upload(world: World) -> None:
    node = world.new_node()
    job = world.started(node)

    def chunks() -> Iterator[bytes]:
        for index in range(50):
            yield bytes([index]) * 1000

    reply = world.node.post(
        f"/v1/jobs/{job}/outputs/big/bin",
        node=node,
        headers={"Content-Disposition": "attachment; filename=big.bin"},
        content=chunks(),
    )
    assert reply.status_code == 200
    assert reply.json()["size"] == 50_000
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
