from __future__ import annotations

import io
import json

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from agent.config import DEFAULT_REDACT
from agent.logs import configure_logging
from agent.redact import MASK, Redactor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2 next", f"password={MASK} next"),
        ('{"api_key": "abc123"}', f'{{"api_key": "{MASK}"}}'),
        ("Authorization: Bearer eyJhbGciOi.xyz.abc", f"Authorization: Bearer {MASK}"),
        ("TOKEN: t0k3n", f"TOKEN: {MASK}"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_default_patterns(text: str, expected: str) -> None:
    assert Redactor(DEFAULT_REDACT).redact(text) == expected


def test_literal_secrets_added_later() -> None:
    redactor = Redactor([], secrets=["s3cr3t-pw"])
    redactor.add_secret("tok-abcdef")
    redactor.add_secret("node")  # too short to mask safely as a bare word
    assert redactor.redact("s3cr3t-pw and tok-abcdef and node") == f"{MASK} and {MASK} and node"


@given(prefix=st.text(max_size=50), suffix=st.text(max_size=50))
def test_a_literal_secret_never_survives(prefix: str, suffix: str) -> None:
    secret = "Zq9-very-secret-Zq9"
    redacted = Redactor(DEFAULT_REDACT, secrets=[secret]).redact(prefix + secret + suffix)
    assert secret not in redacted


def test_log_lines_never_carry_credentials() -> None:
    out = io.StringIO()
    redactor = Redactor(DEFAULT_REDACT, secrets=["hunter2-password"])
    configure_logging("json", "debug", redactor, stream=out)
    log = structlog.get_logger("test")
    log.info(
        "login",
        detail="user node password hunter2-password refused",
        url="http://x/?token=abcdef123",
        error=ValueError("hunter2-password"),
    )
    line = json.loads(out.getvalue().strip())
    assert "hunter2-password" not in out.getvalue()
    assert "abcdef123" not in out.getvalue()
    assert line["event"] == "login"
