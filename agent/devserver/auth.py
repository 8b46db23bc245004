"""Authentication: the token views (`auth/obtain`, `auth/refresh`) and bearer checks.

Bodies and errors are djangorestframework-simplejwt's: a missing or blank field is a
serializer error (`{"password": ["This field is required."]}`), wrong credentials a 401
`{"detail"}`, a bad token a 401 `{"detail", "code": "token_not_valid", "messages"?}`.
A request without an `Authorization: Bearer` header is anonymous (the permission check
then answers 401); one with a bad bearer token is a 401 before anything else.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from agent.devserver.errors import ApiError, FieldErrors
from agent.devserver.models import User
from agent.devserver.tokens import TokenError, TokenKind, TokenService

_INVALID_TOKEN = "Given token not valid for any token type"  # noqa: S105 - a message


def _reason(error: TokenError) -> str:
    """simplejwt's wording for why a token was refused."""
    return {"wrong token type": "Token has wrong type", "expired": "Token is expired"}.get(
        str(error), "Token is invalid"
    )


def _token_error(kind: TokenKind, message: str) -> ApiError:
    token_class = "AccessToken" if kind == "access" else "RefreshToken"
    return ApiError(
        401,
        _INVALID_TOKEN,
        code="token_not_valid",
        messages=[{"token_class": token_class, "token_type": kind, "message": message}],
    )


def _text_fields(body: object, names: tuple[str, ...]) -> dict[str, str]:
    """The serializer's `CharField`s: present, text (numbers pass), not blank."""
    if not isinstance(body, Mapping):
        kind = type(body).__name__ if body is not None else "null"
        raise FieldErrors(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    values: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for name in names:
        value = body.get(name)
        if name not in body:
            errors[name] = ["This field is required."]
        elif value is None:
            errors[name] = ["This field may not be null."]
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            errors[name] = ["Not a valid string."]
        elif not str(value).strip():
            errors[name] = ["This field may not be blank."]
        else:
            values[name] = str(value)
    if errors:
        raise FieldErrors(errors)
    return values


class Authenticator:
    """Users, their passwords and tokens."""

    def __init__(self, tokens: TokenService, accounts: Mapping[int, User]) -> None:
        self._tokens = tokens
        self._accounts = dict(accounts)
        self._by_name = {user.name: pk for pk, user in self._accounts.items()}

    def user(self, pk: int) -> User:
        """The account with this pk."""
        return self._accounts[pk]

    def authenticate(self, header: str | None) -> int | None:
        """The user pk of a bearer token; None without a bearer header; 401 when it is bad."""
        if header is None:
            return None
        parts = header.split()
        if not parts or parts[0] != "Bearer":
            return None
        if len(parts) != 2:
            raise ApiError(
                401,
                "Authorization header must contain two space-delimited values",
                code="bad_authorization_header",
            )
        try:
            pk = self._tokens.verify(parts[1], "access")
        except TokenError as exc:
            raise _token_error("access", _reason(exc)) from None
        if pk not in self._accounts:
            raise ApiError(401, "User not found", code="user_not_found")
        return pk

    def obtain(self, body: object) -> dict[str, Any]:
        """`{"username", "password"}` → `{"refresh", "access"}`."""
        fields = _text_fields(body, ("username", "password"))
        pk = self._by_name.get(fields["username"])
        user = self._accounts.get(pk) if pk is not None else None
        if (
            user is None
            or pk is None
            or not hmac.compare_digest(user.password.encode(), fields["password"].encode())
        ):
            raise ApiError(401, "No active account found with the given credentials")
        return {
            "refresh": self._tokens.issue(pk, "refresh"),
            "access": self._tokens.issue(pk, "access"),
        }

    def refresh(self, body: object) -> dict[str, Any]:
        """`{"refresh"}` → `{"access"}`."""
        token = _text_fields(body, ("refresh",))["refresh"]
        try:
            pk = self._tokens.verify(token, "refresh")
        except TokenError as exc:
            raise ApiError(401, _reason(exc), code="token_not_valid") from None
        if pk not in self._accounts:
            raise ApiError(401, "User not found", code="user_not_found")
        return {"access": self._tokens.issue(pk, "access")}
