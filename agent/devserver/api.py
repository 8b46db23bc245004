"""The request pipeline: routing, authentication, permissions, node identity, bodies.

Each request goes through the real server's stages, in its order:
1. fault injection (tests), then the URL: none matches → Django's HTML 404; the URL matches
   but not the method → HTML 500 (the real view-set has no permission for a `None` action);
   a download whose `Accept` does not admit `application/data` → 406;
2. the bearer token: a bad one is a 401 (no header: anonymous);
3. the route's permission, evaluated like the real `IsAdminUser | ...` classes: a node
   permission reads `Node-Id` (unknown or non-numeric: 400, even before a 401), a refusal is
   401 for an anonymous caller and 403 otherwise;
4. the body: malformed JSON 400, an output upload without a filename 400; a body sent
   without `Content-Length` (chunked) is not seen at all, as under daphne;
5. `Node-Id` on any request: 400 when bad, else the node's `last_seen` is bumped;
6. the view: object lookup (404), object permission (403), body checks, lifecycle rules.

`ApiError`s become JSON; `ServerCrash` and any unexpected exception the HTML 500 page, so
bad input never takes the server down.

Deliberately not mirrored: the real server lets a request *without* `Authorization` act as
a node when its `Node-Id` names one (its node permissions never look at the user); here an
anonymous caller always gets 401.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from agent.devserver.auth import Authenticator
from agent.devserver.disposition import upload_filename
from agent.devserver.errors import (
    ApiError,
    PageNotFound,
    ServerCrash,
    forbidden,
    unauthenticated,
)
from agent.devserver.faults import FaultInjector
from agent.devserver.hardware import Hardware
from agent.devserver.lifecycle import Lifecycle
from agent.devserver.messages import Request, Response
from agent.devserver.outputs import Outputs
from agent.devserver.routes import DATA, Context, Permission, Route, build_routes
from agent.devserver.store import Store
from agent.devserver.validate import JsonBody

_log = logging.getLogger(__name__)

_MISSING_FILENAME = (
    "Missing filename. Request should include a Content-Disposition header with a filename "
    "parameter."
)


class _Download(Exception):
    """An error on the download route, which the real server renders as `application/data`."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.detail)
        self.error = error


def _visible_body(request: Request) -> bytes:
    """The body as the real server's views see it: Django reads `Content-Length` bytes, so
    a chunked body (no `Content-Length`) is no body."""
    return request.body if "content-length" in request.headers else b""


def _accepts_data(accept: str | None) -> bool:
    """Whether an `Accept` header admits `application/data` (content negotiation comes
    first on the real server: a download asked for as JSON is a 406)."""
    if accept is None:
        return True
    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {"*/*", "application/*", DATA})


class Api:
    """The request handler of the reference server."""

    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        outputs: Outputs,
        hardware: Hardware,
        auth: Authenticator,
        faults: FaultInjector,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._outputs = outputs
        self._hardware = hardware
        self._auth = auth
        self._faults = faults
        self._public: dict[str, Callable[[object], dict[str, Any]]] = {
            "/v1/auth/obtain": auth.obtain,
            "/v1/auth/refresh": auth.refresh,
        }
        self._routes = build_routes(store, lifecycle, outputs, hardware)

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
        except _Download as exc:
            answer = Response.json(exc.error.status, exc.error.body())
            return Response(answer.status, answer.body, DATA)
        except PageNotFound:
            return Response.html_404(request.path)
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
            body = JsonBody.parse(_visible_body(request), request.headers.get("content-type"))
            return Response.json(200, public(body.value()))
        route, match = self._resolve(request)
        if route is None or match is None:
            self._auth.authenticate(request.headers.get("authorization"))
            raise ServerCrash("Exception: No permission class defined for action 'None'")
        if not route.download:
            return self._run(route, match, request)
        try:
            return self._run(route, match, request)
        except ApiError as exc:
            raise _Download(exc) from None

    def _run(self, route: Route, match: re.Match[str], request: Request) -> Response:
        if route.download and not _accepts_data(request.headers.get("accept")):
            raise ApiError(406, "Could not satisfy the request Accept header.")
        user_pk = self._permit(
            route.permission,
            self._auth.authenticate(request.headers.get("authorization")),
            request.headers.get("node-id"),
        )
        filename: str | None = None
        if route.upload:
            filename = self._upload_filename(request)
            body = JsonBody({})
        else:
            body = JsonBody.parse(_visible_body(request), request.headers.get("content-type"))
        node = self._seen(request.headers.get("node-id"))
        params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        context = Context(
            request=request,
            params=params,
            user_pk=user_pk,
            user=self._auth.user(user_pk),
            node=node,
            body=body,
            filename=filename,
        )
        return route.view(context)

    def _resolve(self, request: Request) -> tuple[Route | None, re.Match[str] | None]:
        """The route for this method and path; (None, None) when only the path matches."""
        method = "GET" if request.method == "HEAD" else request.method
        path_matches = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method == method:
                return route, match
            path_matches = True
        if not path_matches:
            raise PageNotFound(request.path)
        return None, None

    def _permit(self, permission: Permission, user_pk: int | None, node_id: str | None) -> int:
        """The caller's user pk once the route's permission lets it through."""
        staff = user_pk is not None and self._auth.user(user_pk).staff
        if permission == "auth":
            allowed = user_pk is not None
        elif permission == "staff":
            allowed = staff
        elif permission == "node":
            allowed = self._node(node_id) is not None
        else:
            allowed = staff or self._node(node_id) is not None
        if user_pk is None:
            raise unauthenticated()
        if not allowed:
            raise forbidden()
        return user_pk

    def _node(self, node_id: str | None) -> int | None:
        """The node a `Node-Id` header names (None without one); 400 when it names none."""
        if node_id is None:
            return None
        try:
            pk = int(node_id)
        except ValueError:
            raise ApiError(
                400, f"Bad Node-Id header '{node_id}': Unable to parse into an integer primary-key"
            ) from None
        if not self._store.node_exists(pk):
            raise ApiError(400, f"Bad Node-Id header '{node_id}': No node with this primary-key")
        return pk

    def _seen(self, node_id: str | None) -> int | None:
        """Check `Node-Id` again and bump that node's `last_seen`."""
        pk = self._node(node_id)
        if pk is not None:
            self._store.touch_node(pk)
        return pk

    @staticmethod
    def _upload_filename(request: Request) -> str:
        """The upload's filename, as the real server's file-upload parser finds it.

        An empty body is never parsed there: the view then finds no file and crashes (HTML
        500). Any content type will do.
        """
        if not _visible_body(request):
            raise ServerCrash("KeyError: 'file'")
        filename = upload_filename(request.headers.get("content-disposition"))
        if not filename:
            raise ApiError(400, _MISSING_FILENAME)
        return filename
