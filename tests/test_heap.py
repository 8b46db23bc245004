"""The agent keeps its large buffers in the heap (glibc): 1 MiB blocks of a chatty
job's output no longer come from fresh mmaps of zeroed pages, one after the other."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.heap import tuned_by_operator

#: Allocates four 2 MiB buffers and prints how many bytes malloc mmapped meanwhile
#: (``mallinfo2().hblkhd``), after ``keep_large_buffers()`` when told to.
PROBE = """
import ctypes, sys
from agent.heap import keep_large_buffers
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
took = keep_large_buffers() if sys.argv[1] == "tuned" else None
before = mallinfo2().hblkhd
blocks = [bytearray(2 << 20) for _ in range(4)]
print(took, mallinfo2().hblkhd - before)
"""


def probe(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not tuned_by_operator({k: v})}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


def glibc() -> bool:
    return os.confstr("CS_GNU_LIBC_VERSION") is not None


@pytest.mark.skipif(not glibc(), reason="mallopt thresholds are glibc's")
def test_large_buffers_come_from_the_heap() -> None:
    took, mapped = probe("tuned")
    assert took == "True"
    assert mapped < 2 << 20
    took, mapped = probe("plain")  # the control: glibc's default maps each one
    assert mapped >= 8 << 20


@pytest.mark.skipif(not glibc(), reason="mallopt thresholds are glibc's")
@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
    ],
)
def test_the_operators_malloc_settings_win(env: dict[str, str]) -> None:
    took, mapped = probe("tuned", **env)
    assert took == "False"
    assert mapped >= 8 << 20  # their 128 KiB threshold stands


def test_tuned_by_operator() -> None:
    assert not tuned_by_operator({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=512"})
    assert tuned_by_operator({"MALLOC_TRIM_THRESHOLD_": "0"})
