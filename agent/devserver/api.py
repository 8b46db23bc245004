"""Routing, authentication, node identity and the views of the `/v1` API.

Request flow: fault injection → route (unknown path: 404, wrong method: 405) → bearer
token (401) → `Node-Id` (unknown: 400; known: bumps `last_seen`) → view. `ApiError`s
become `{"detail": ...}` JSON; `ServerCrash` and any unexpected exception become the HTML
500 page, so bad input never takes the server down.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from agent.devserver.disposition import attachment, upload_filename
from agent.devserver.errors import ApiError, ServerCrash
from agent.devserver.faults import FaultInjector
from agent.devserver.lifecycle import Lifecycle
from agent.devserver.messages import Request, Response
from agent.devserver.models import User
from agent.devserver.outputs import Outputs
from agent.devserver.store import Store
from agent.devserver.tokens import TokenError, TokenService
from agent.devserver.validate import JsonBody, require

_log = logging.getLogger(__name__)

_PK = r"(?P<pk>[0-9]+)"
_JOB = rf"/v1/jobs/{_PK}"
_OUTPUT = rf"{_JOB}/outputs/(?P<name>[^/]+)/(?P<type>[^/]+)"
# The real server's URL pattern for progress amounts (so `0`, `1` and `1e-05` are 404s).
PROGRESS_PATTERN = r"(0.[0-9]+)|(1.(0)+)"


@dataclass(frozen=True)
class Context:
    """What a view gets: the request, URL parameters, caller and lazily parsed body."""

    request: Request
    params: Mapping[str, str]
    user_pk: int
    user: User
    node: int | None
    body: JsonBody

    @property
    def pk(self) -> int:
        """The `{pk}` URL parameter."""
        return int(self.params["pk"])


View = Callable[[Context], Response]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    view: View


def _json(value: object, status: int = 200) -> Response:
    return Response.json(status, value)


class Api:
    """The request handler of the reference server."""

    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        outputs: Outputs,
        tokens: TokenService,
        accounts: Mapping[int, User],
        faults: FaultInjector,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._outputs = outputs
        self._tokens = tokens
        self._accounts = dict(accounts)
        self._by_name = {user.name: pk for pk, user in self._accounts.items()}
        self._faults = faults
        self._public: dict[str, Callable[[Request], Response]] = {
            "/v1/auth/obtain": self._obtain,
            "/v1/auth/refresh": self._refresh,
        }
        self._routes = [_Route(m, re.compile(rf"{p}/?"), v) for m, p, v in self._table()]

    def _table(self) -> list[tuple[str, str, View]]:
        store, jobs, outputs = self._store, self._lifecycle, self._outputs
        return [
            ("POST", "/v1/nodes/list", lambda c: _json(store.list_nodes(c.body.value()))),
            ("POST", "/v1/nodes/create", lambda c: _json(store.create_node(c.body), 201)),
            ("GET", "/v1/nodes/ping", lambda c: Response(200)),
            ("GET", rf"/v1/nodes/{_PK}", lambda c: _json(store.get_node(c.pk))),
            (
                "PATCH",
                rf"/v1/nodes/{_PK}",
                lambda c: _json(store.update_node(c.pk, c.node, c.body)),
            ),
            ("POST", "/v1/jobs/list", lambda c: _json(store.list_jobs(c.body.value()))),
            ("GET", _JOB, lambda c: _json(store.get_job(c.pk))),
            ("GET", rf"{_JOB}/acquire", lambda c: _json(jobs.acquire(c.pk, c.node))),
            ("POST", rf"{_JOB}/start", lambda c: _json(jobs.start(c.pk, c.node, c.body))),
            (
                "POST",
                rf"{_JOB}/progress/(?P<progress>{PROGRESS_PATTERN})",
                lambda c: _json(jobs.progress(c.pk, c.node, c.params["progress"], c.body)),
            ),
            ("POST", rf"{_JOB}/finish", lambda c: _json(jobs.finish(c.pk, c.node, c.body))),
            ("DELETE", rf"{_JOB}/reset", lambda c: _json(jobs.reset(c.pk, c.node))),
            ("DELETE", rf"{_JOB}/release", lambda c: _json(jobs.release(c.pk, c.node))),
            ("DELETE", rf"{_JOB}/cancel", lambda c: _json(jobs.cancel(c.pk, c.user.staff))),
            ("DELETE", rf"{_JOB}/abort", lambda c: _json(jobs.abort(c.pk, c.user.staff))),
            ("POST", _OUTPUT, self._add_output),
            ("GET", _OUTPUT, self._get_output),
            (
                "GET",
                rf"{_OUTPUT}/info",
                lambda c: _json(outputs.output_info(c.pk, c.params["name"], c.params["type"])),
            ),
            (
                "POST",
                "/v1/job-templates/import",
                lambda c: _json(store.import_template(c.body, c.user.staff, c.user_pk)),
            ),
            (
                "POST",
                "/v1/job-templates/list",
                lambda c: _json(store.list_templates(c.body.value())),
            ),
            ("GET", rf"/v1/job-templates/{_PK}", lambda c: _json(store.get_template(c.pk))),
            (
                "POST",
                rf"/v1/job-templates/{_PK}/create-job",
                lambda c: _json(store.create_job(c.pk, c.body, c.user_pk), 201),
            ),
        ]

    # ------------------------------------------------------------ pipeline

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises."""
        try:
            injected = self._faults.take(request.path)
            if injected is not None:
                return injected
            return self._dispatch(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="api"'} if exc.status == 401 else {}
            return Response.json(exc.status, exc.body(), headers)
        except ServerCrash as exc:
            return Response.html_500(str(exc))
        except Exception as exc:
            _log.exception("devserver: unhandled error on %s %s", request.method, request.path)
            return Response.html_500(f"{type(exc).__name__}: {exc}")

    def _dispatch(self, request: Request) -> Response:
        public = self._public.get(request.path.rstrip("/") or "/")
        if public is not None:
            if request.method != "POST":
                raise ApiError(405, f'Method "{request.method}" not allowed.')
            return public(request)
        allowed = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed = True
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            user_pk = self._authenticate(request)
            context = Context(
                request=request,
                params=params,
                user_pk=user_pk,
                user=self._accounts[user_pk],
                node=self._node(request),
                body=JsonBody(request.body),
            )
            return route.view(context)
        if allowed:
            raise ApiError(405, f'Method "{request.method}" not allowed.')
        raise ApiError(404, "Not found.")

    def _authenticate(self, request: Request) -> int:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authentication credentials were not provided.")
        try:
            user_pk = self._tokens.verify(token.strip(), "access")
        except TokenError:
            raise ApiError(
                401, "Given token not valid for any token type", code="token_not_valid"
            ) from None
        if user_pk not in self._accounts:
            raise ApiError(401, "User not found", code="user_not_found")
        return user_pk

    def _node(self, request: Request) -> int | None:
        raw = request.headers.get("node-id")
        if raw is None:
            return None
        try:
            pk = int(raw.strip())
        except ValueError:
            raise ApiError(400, f"Invalid Node-Id header: {raw!r}") from None
        if not self._store.touch_node(pk):
            raise ApiError(400, f"No node with pk {pk} (Node-Id header)")
        return pk

    # ------------------------------------------------------------ auth views

    def _obtain(self, request: Request) -> Response:
        body = JsonBody(request.body).object()
        username: str = require(body, "username", str)
        password: str = require(body, "password", str)
        pk = self._by_name.get(username)
        user = self._accounts.get(pk) if pk is not None else None
        if (
            user is None
            or pk is None
            or not hmac.compare_digest(user.password.encode(), password.encode())
        ):
            raise ApiError(401, "No active account found with the given credentials")
        return _json(
            {
                "refresh": self._tokens.issue(pk, "refresh"),
                "access": self._tokens.issue(pk, "access"),
            }
        )

    def _refresh(self, request: Request) -> Response:
        body = JsonBody(request.body).object()
        token: str = require(body, "refresh", str)
        try:
            pk = self._tokens.verify(token, "refresh")
        except TokenError:
            raise ApiError(401, "Token is invalid or expired", code="token_not_valid") from None
        if pk not in self._accounts:
            raise ApiError(401, "User not found", code="user_not_found")
        return _json({"access": self._tokens.issue(pk, "access")})

    # ---------------------------------------------------------- output views

    def _add_output(self, c: Context) -> Response:
        info: dict[str, Any] = self._outputs.add_output(
            c.pk,
            c.params["name"],
            c.params["type"],
            node=c.node,
            staff=c.user.staff,
            creator=c.user_pk,
            filename=upload_filename(c.request.headers.get("content-disposition")),
            data=c.request.body,
        )
        return _json(info)

    def _get_output(self, c: Context) -> Response:
        filename, data = self._outputs.output_data(c.pk, c.params["name"], c.params["type"])
        return Response(
            200, data, "application/octet-stream", {"Content-Disposition": attachment(filename)}
        )
