"""JWT-shaped bearer tokens (HS256), as issued by djangorestframework-simplejwt.

A token is `base64url(header).base64url(payload).base64url(hmac)`. The payload carries
`token_type` ("access" or "refresh"), `exp` (a float: sub-second TTLs work for tests),
`iat`, `jti` and `user_id`. The signing secret lives in the server's database, so tokens
stay valid across a restart that keeps the same `--db` file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Literal

TokenKind = Literal["access", "refresh"]

_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenError(Exception):
    """The token is malformed, forged, of the wrong kind or expired."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


class TokenService:
    """Issues and verifies access/refresh tokens for user pks."""

    def __init__(
        self,
        secret: bytes,
        access_ttl: float,
        refresh_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._ttl: dict[TokenKind, float] = {"access": access_ttl, "refresh": refresh_ttl}
        self._clock = clock
        self._header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())

    def _sign(self, signing_input: str) -> str:
        digest = hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest)

    def issue(self, user_id: int, kind: TokenKind) -> str:
        """A new token of `kind` for `user_id`, expiring after that kind's TTL."""
        issued = self._clock()
        payload = {
            "token_type": kind,
            "exp": issued + self._ttl[kind],
            "iat": issued,
            "jti": secrets.token_hex(16),
            "user_id": user_id,
        }
        body = _b64encode(json.dumps(payload, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{body}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str, kind: TokenKind) -> int:
        """The user pk of a valid, unexpired token of `kind`; TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed token")
        header, body, signature = parts
        expected = self._sign(f"{header}.{body}")
        if not hmac.compare_digest(expected, signature):
            raise TokenError("bad signature")
        try:
            payload = json.loads(_b64decode(body))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenError("malformed payload") from exc
        if not isinstance(payload, dict) or payload.get("token_type") != kind:
            raise TokenError("wrong token type")
        exp = payload.get("exp")
        user_id = payload.get("user_id")
        if not isinstance(exp, int | float) or not isinstance(user_id, int):
            raise TokenError("malformed payload")
        if self._clock() >= exp:
            raise TokenError("expired")
        return user_id
