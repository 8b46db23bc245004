"""Rows the real server's migrations seed, with the same pks: GPU generations and licences."""

from __future__ import annotations

from typing import NamedTuple


class Generation(NamedTuple):
    """A GPU hardware generation: compute capabilities in `[minimum, maximum)`."""

    pk: int
    generation: str
    minimum: float
    maximum: float


HARDWARE: tuple[Generation, ...] = (
    Generation(1, "Fermi", 2.0, 3.0),
    Generation(2, "Kepler", 3.0, 5.0),
    Generation(3, "Maxwell", 5.0, 6.0),
    Generation(4, "Pascal", 6.0, 7.0),
    Generation(5, "Volta", 7.0, 7.5),
    Generation(6, "Turing", 7.5, 8.0),
    Generation(7, "Ampere", 8.0, 9.0),
    Generation(8, "Hopper", 9.0, 10.0),
)

# Licence name → pk; templates name their licence, and the server shows its pk.
LICENCES: dict[str, int] = {
    name: pk
    for pk, name in enumerate(
        (
            "AGPL3",
            "Apache 2.0",
            "BSD 2-clause",
            "BSD 3-clause",
            "CC0",
            "CC-BY-4.0",
            "CC-BY-SA-4.0",
            "GPL2",
            "GPL3",
            "LGPL3",
            "MIT",
            "Mozilla Public License 2.0",
            "The Unlicense",
            "Proprietary",
        ),
        start=1,
    )
}
