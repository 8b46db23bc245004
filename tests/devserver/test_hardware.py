"""GPU generations: the seeded list, one row, and the generation for a compute capability."""

from __future__ import annotations

import pytest

from .helpers import World

GENERATIONS = [
    (1, "Fermi", 2.0, 3.0),
    (2, "Kepler", 3.0, 5.0),
    (3, "Maxwell", 5.0, 6.0),
    (4, "Pascal", 6.0, 7.0),
    (5, "Volta", 7.0, 7.5),
    (6, "Turing", 7.5, 8.0),
    (7, "Ampere", 8.0, 9.0),
    (8, "Hopper", 9.0, 10.0),
]


def test_list_is_the_seeded_generations(world: World) -> None:
    reply = world.node.post("/v1/hardware/list", json={})
    assert reply.status_code == 200
    assert [
        (h["pk"], h["generation"], h["min_compute_capability"], h["max_compute_capability"])
        for h in reply.json()
    ] == GENERATIONS


def test_list_takes_a_filter_spec(world: World) -> None:
    spec = {
        "expressions": [
            {"type": "compare", "field": "min_compute_capability", "operator": ">=", "value": 8}
        ],
        "order_by": [{"field": "generation", "ascending": False}],
    }
    assert [h["generation"] for h in world.node.post("/v1/hardware/list", json=spec).json()] == [
        "Hopper",
        "Ampere",
    ]


def test_get_one(world: World) -> None:
    assert world.node.get("/v1/hardware/6").json()["generation"] == "Turing"
    assert world.node.get("/v1/hardware/99").status_code == 404


@pytest.mark.parametrize(
    ("capability", "generation"),
    [
        ("2.0", "Fermi"),
        ("3.0", "Kepler"),
        ("6.1", "Pascal"),
        ("7", "Volta"),
        ("7.5", "Turing"),
        ("8.6", "Ampere"),
        ("9.0", "Hopper"),
        ("9.99", "Hopper"),
    ],
)
def test_generation_for_a_compute_capability(
    world: World, capability: str, generation: str
) -> None:
    reply = world.node.get(f"/v1/hardware/get-hardware-generation/{capability}")
    assert reply.status_code == 200
    assert reply.json()["generation"] == generation


@pytest.mark.parametrize("capability", ["1.99", "10.0", "12", "-3", "abc", "nan", "inf", "7.5/"])
def test_no_generation_is_400(world: World, capability: str) -> None:
    reply = world.node.get(f"/v1/hardware/get-hardware-generation/{capability}")
    assert reply.status_code == 400
    assert reply.json()["detail"] == (
        f"Bad value for get_hardware_generation parameter 'compute': {capability}, "
        "options: [2.0, 10.0)"
    )


def test_hardware_needs_a_login(world: World) -> None:
    assert world.node.http.get("/v1/hardware/get-hardware-generation/7.5").status_code == 401
