"""Auth: obtain, refresh, bearer checks, token expiry, routing errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from agent.devserver import DevServer, User

from .helpers import Client, wait_until


@pytest.fixture
def http(server: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield client


def test_obtain_gives_jwt_shaped_tokens(http: httpx.Client) -> None:
    reply = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"})
    assert reply.status_code == 200
    tokens = reply.json()
    assert set(tokens) == {"access", "refresh"}
    for token in tokens.values():
        parts = token.split(".")
        assert len(parts) == 3
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        assert "exp" in payload


@pytest.mark.parametrize(
    "body", [{"username": "node", "password": "wrong"}, {"username": "nobody", "password": "x"}]
)
def test_bad_credentials_are_401(http: httpx.Client, body: dict[str, str]) -> None:
    reply = http.post("/v1/auth/obtain", json=body)
    assert reply.status_code == 401
    assert "detail" in reply.json()


def test_obtain_missing_field_is_400(http: httpx.Client) -> None:
    reply = http.post("/v1/auth/obtain", json={"username": "node"})
    assert reply.status_code == 400
    assert reply.json() == {"password": ["This field is required."]}


def test_obtain_bad_json_is_400(http: httpx.Client) -> None:
    reply = http.post(
        "/v1/auth/obtain", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"


def test_refresh_gives_a_working_access_token(http: httpx.Client) -> None:
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    reply = http.post("/v1/auth/refresh", json={"refresh": tokens["refresh"]})
    assert reply.status_code == 200
    access = reply.json()["access"]
    assert access != tokens["access"]
    listing = http.post("/v1/jobs/list", headers={"Authorization": f"Bearer {access}"}, json={})
    assert listing.status_code == 200


def test_refresh_rejects_access_tokens_and_garbage(http: httpx.Client) -> None:
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    for token in (tokens["access"], "a.b.c", "garbage"):
        reply = http.post("/v1/auth/refresh", json={"refresh": token})
        assert reply.status_code == 401
        assert "detail" in reply.json()


def test_refresh_token_is_not_a_bearer_token(http: httpx.Client) -> None:
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    reply = http.get("/v1/nodes/ping", headers={"Authorization": f"Bearer {tokens['refresh']}"})
    assert reply.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
)
def test_endpoints_need_a_valid_bearer_token(http: httpx.Client, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/nodes/ping"),
        ("POST", "/v1/jobs/list"),
        ("GET", "/v1/jobs/1"),
        ("GET", "/v1/job-templates/1"),
        ("POST", "/v1/nodes/create"),
    ]:
        reply = http.request(method, path, headers=headers, json={})
        assert reply.status_code == 401, (method, path)
        assert "detail" in reply.json()
        assert reply.headers["www-authenticate"].startswith("Bearer")


def test_tampered_token_is_401(http: httpx.Client) -> None:
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    header, payload, signature = tokens["access"].split(".")
    forged = f"{header}.{payload}x.{signature}"
    reply = http.get("/v1/nodes/ping", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status_code == 401


def test_access_token_expires_and_refresh_recovers() -> None:
    with DevServer(access_ttl=0.5) as server:
        client = Client(server.url, "node", "node")
        try:
            assert client.post("/v1/jobs/list", json={}).status_code == 200
            assert wait_until(
                lambda: client.post("/v1/jobs/list", json={}).status_code == 401, timeout=10
            )
            expired = client.post("/v1/jobs/list", json={})
            assert expired.json()["code"] == "token_not_valid"
            assert expired.json()["messages"][0]["message"] == "Token is expired"
            refreshed = client.http.post(
                "/v1/auth/refresh", json={"refresh": client.tokens["refresh"]}
            )
            assert refreshed.status_code == 200
            client.tokens["access"] = refreshed.json()["access"]
            assert client.post("/v1/jobs/list", json={}).status_code == 200
        finally:
            client.close()


def test_refresh_token_expires() -> None:
    with DevServer(access_ttl=0.2, refresh_ttl=0.5) as server:
        client = Client(server.url, "node", "node")
        try:

            def refresh_refused() -> bool:
                body = {"refresh": client.tokens["refresh"]}
                return client.http.post("/v1/auth/refresh", json=body).status_code == 401

            assert wait_until(refresh_refused, timeout=10)
        finally:
            client.close()


def test_custom_users() -> None:
    users = [User("boss", "pw", staff=True), User("worker", "pw2")]
    with DevServer(users=users) as server, httpx.Client(base_url=server.url) as http:
        ok = http.post("/v1/auth/obtain", json={"username": "worker", "password": "pw2"})
        assert ok.status_code == 200
        gone = http.post("/v1/auth/obtain", json={"username": "admin", "password": "admin"})
        assert gone.status_code == 401


def test_unknown_route_is_an_html_404(http: httpx.Client) -> None:
    """Django's page (the real server runs with DEBUG on), before any authentication."""
    for path in ("/v1/nothing", "/", "/v1/jobs/abc", "/v1/jobs/1/acquire/more"):
        reply = http.get(path)
        assert reply.status_code == 404, path
        assert reply.headers["content-type"].startswith("text/html")


def test_wrong_method_is_an_html_500_after_authentication(http: httpx.Client) -> None:
    """The real view-set has no permission class for a method it does not map: it crashes."""
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    auth = {"Authorization": f"Bearer {tokens['access']}"}
    reply = http.post("/v1/jobs/1/acquire", headers=auth)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("text/html")
    assert http.post("/v1/jobs/1/acquire", headers={"Authorization": "Bearer x"}).status_code == 401
    # The token views are plain DRF views: a JSON 405.
    assert http.get("/v1/auth/obtain").status_code == 405


def test_bad_bearer_tokens_say_why(http: httpx.Client) -> None:
    tokens = http.post("/v1/auth/obtain", json={"username": "node", "password": "node"}).json()
    for token, why in ((tokens["refresh"], "Token has wrong type"), ("a.b.c", "Token is invalid")):
        reply = http.post("/v1/jobs/list", headers={"Authorization": f"Bearer {token}"}, json={})
        assert reply.status_code == 401
        assert reply.json()["code"] == "token_not_valid"
        assert reply.json()["messages"] == [
            {"token_class": "AccessToken", "token_type": "access", "message": why}
        ]


def test_authorization_header_variants(http: httpx.Client) -> None:
    # Another scheme is no credentials at all; a bearer header must have two parts.
    for header, code in (("Basic Zm9vOmJhcg==", None), ("Bearer", "bad_authorization_header")):
        reply = http.post("/v1/jobs/list", headers={"Authorization": header}, json={})
        assert reply.status_code == 401
        assert reply.json().get("code") == code
