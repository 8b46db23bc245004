"""Start the reference server as a separate process (its memory is not ours)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def devserver_process(db: Path, *extra: str) -> Iterator[str]:
    """Run ``python -m agent.devserver --port 0``; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.devserver", "--port", "0", "--db", str(db), *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                url = match.group(1)
        if url is None:
            raise RuntimeError("devserver did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
