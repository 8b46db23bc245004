from __future__ import annotations

import pytest

from agent.slots import Allocator, Need, pick_ids, spread, why_never_fits


def test_pick_lowest_ids() -> None:
    assert pick_ids({3, 1, 2}, 2) == (1, 2)
    assert pick_ids({1}, 2) is None
    assert pick_ids(set(), 0) == ()


def test_allocate_and_release() -> None:
    allocator = Allocator({"cores": [0, 1]}, memory_mb=1000)
    first = allocator.allocate(Need({"cores": 1}, 400))
    second = allocator.allocate(Need({"cores": 1}, 400))
    assert first is not None and second is not None
    assert {first.cores, second.cores} == {(0,), (1,)}
    assert allocator.allocate(Need({"cores": 1})) is None
    allocator.release(first)
    assert allocator.fits(Need({"cores": 1}, 600))
    assert not allocator.fits(Need({"cores": 1}, 700))


def test_any_resource_by_id() -> None:
    allocator = Allocator({"cores": [0, 1, 2, 3], "gpus": [0, 1]}, memory_mb=100)
    allocation = allocator.allocate(Need({"cores": 2, "gpus": 1}))
    assert allocation is not None
    assert allocation.ids["gpus"] == (0,)
    assert allocator.free("gpus") == frozenset({1})


@pytest.mark.parametrize(
    ("need", "why"),
    [
        (Need({"cores": 3}), "needs 3 cores, this agent has 2"),
        (Need({"cores": 1}, 5000), "needs 5000 MiB"),
        (Need({"cores": 1}, 0, "GPU"), "queue 'GPU' is not served here"),
        (Need({"cores": 2}, 100, "D"), None),
    ],
)
def test_never_fits(need: Need, why: str | None) -> None:
    reason = why_never_fits(need, {"cores": 2}, 1000, ["D", "OR"])
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_any_queue_when_none_configured() -> None:
    assert why_never_fits(Need({"cores": 1}, 0, "X"), {"cores": 1}, 10, []) is None


def test_spread_rotates_only_the_head_of_the_queue() -> None:
    jobs = list(range(20))
    assert spread(jobs, 0) == jobs
    assert spread(jobs, 3, window=5) == [3, 4, 0, 1, 2, *range(5, 20)]
    assert spread(jobs, 21, window=5) == [1, 2, 3, 4, 0, *range(5, 20)]  # offset mod head
    assert spread([7, 8], 5) == [8, 7]
    assert spread([7], 5) == [7] and spread([], 5) == []
    for offset in range(40):
        assert sorted(spread(jobs, offset)) == jobs  # nothing lost, nothing repeated
