"""Async client of the job server: one method per call of docs/protocol.md.

Transport concerns live in :meth:`ServerClient._call`: bearer auth with one refresh on
401, ``Node-Id``, a timeout on every request, error classification, and retries with
jittered exponential backoff whose length depends on the call (short for polling, long
for finish and uploads; see :class:`RetryPolicies`).
"""

from __future__ import annotations

import math
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import httpx
import stamina
import structlog
from pydantic import BaseModel, ValidationError

from agent.redact import Redactor
from agent.server import filters
from agent.server.errors import (
    AuthError,
    BadRequest,
    Conflict,
    JobTaken,
    ServerError,
    ServerUnreachable,
    TooLarge,
    error_for,
    retry_delay,
)
from agent.server.filebody import FILE_BODY, FileBody
from agent.server.link import CallObserver, ServerLink, call_name
from agent.server.models import Job, Node, OutputInfo, Template, Tokens
from agent.server.transport import DeferredTransport, KeepAliveTransport
from executors.safefiles import open_regular

CHUNK_SIZE = 256 * 1024
LOGIN_WAIT_MAX = 2.0
"""Longest pause between start-up login attempts, so giving up comes soon after
``server.startup_timeout``."""

logger = structlog.get_logger("agent.server")
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one kind of call keeps trying (stamina's knobs)."""

    attempts: int | None
    timeout: float | None
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0


@dataclass(frozen=True)
class RetryPolicies:
    quick: RetryPolicy = RetryPolicy(attempts=3, timeout=20.0, wait_max=5.0)
    """Polling, ping, progress, cancel checks: the next round will try again anyway."""
    normal: RetryPolicy = RetryPolicy(attempts=8, timeout=120.0)
    """Acquire, start, reads, node registration."""
    long: RetryPolicy = RetryPolicy(attempts=None, timeout=900.0)
    """Finish, reset, release, uploads: giving up here loses a result or a job."""


def format_progress(value: float) -> str:
    """The progress path segment the server accepts: ``(0.[0-9]+)|(1.(0)+)``."""
    if math.isnan(value) or value <= 0:
        return "0.0000"
    if value >= 1:
        return "1.0"
    text = f"{value:.4f}"
    return "1.0" if text.startswith("1") else text


@dataclass
class _Auth:
    access: str | None = None
    refresh: str | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class ServerClient:
    """One authenticated session with the job server; share it between slots."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        policies: RetryPolicies | None = None,
        redactor: Redactor | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.observer = observer
        """Told about every request (the agent's metrics); settable after creation."""
        self.link = ServerLink()
        """Whether the server answers: logged once per change, read by ``/readyz``."""
        self.timeout = timeout
        self._username = username
        self._password = password
        self._policies = policies or RetryPolicies()
        self._redactor = redactor
        self._auth = _Auth()
        self._templates: dict[tuple[int, int], Template] = {}
        timeouts = httpx.Timeout(timeout)
        self._timeout = timeouts.as_dict()
        """The request extension that carries ``timeouts`` to the transport."""
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeouts,
            transport=transport if transport is not None else _default_transport(),
            headers={"Accept": "application/json"},
            follow_redirects=False,
            cookies=_NoCookies(),
        )
        self._direct = _direct_transport(self._http, httpx.URL(self.url), given=transport)
        """What the server's calls travel on without the client's own layers (None: the
        client's ``request``)."""
        if redactor is not None and password:
            redactor.add_secret(password)

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if isinstance(self._direct, KeepAliveTransport):
            await self._direct.aclose()
        await self._http.aclose()

    @property
    def policies(self) -> RetryPolicies:
        return self._policies

    # ----------------------------------------------------------------- transport

    def _remember(self, tokens: Tokens) -> None:
        self._auth.access = tokens.access
        if tokens.refresh:
            self._auth.refresh = tokens.refresh
        if self._redactor is not None:
            self._redactor.add_secret(tokens.access)
            if tokens.refresh:
                self._redactor.add_secret(tokens.refresh)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: str | None = None,
    ) -> httpx.Response:
        request_headers = dict(headers or {})
        if auth is not None:
            request_headers["Authorization"] = f"Bearer {auth}"
        began = time.monotonic()
        try:
            response = await self._exchange(method, path, json, content, request_headers)
        except httpx.TransportError as exc:
            unreachable = ServerUnreachable(method, path, exc)
            self._observe(method, path, None, began, str(unreachable))
            raise unreachable from exc
        self._observe(method, path, response.status_code, began)
        return response

    async def _exchange(
        self,
        method: str,
        path: str,
        json: Any,
        content: Callable[[], AsyncIterator[bytes]] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        """One request to the server and its whole answer, read.

        What ``AsyncClient.request`` does for our calls, done directly on a transport
        (:func:`_direct_transport`): the client's default headers and timeout, no
        cookies, no redirects, no auth flow, no event hooks. The client's own layers
        cost about a third of a call's CPU (the URL merge, the cookie extraction, the
        auth and redirect generators), and a server call is most of an agent's work for
        a short job.
        """
        url = httpx.URL(self.url + path)
        stream = content() if content is not None else None
        if self._direct is None:
            return await self._http.request(method, url, json=json, content=stream, headers=headers)
        merged = self._http.headers.copy()
        merged.update(headers)
        extensions: dict[str, Any] = {"timeout": self._timeout}
        if isinstance(content, FileBody):  # the transport may send it from the file
            extensions[FILE_BODY] = content
        request = httpx.Request(
            method, url, json=json, content=stream, headers=merged, extensions=extensions
        )
        response = await self._direct.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _observe(
        self, method: str, path: str, status: int | None, began: float, problem: str = ""
    ) -> None:
        self.link.record(status, problem)
        if self.observer is not None:
            self.observer.request(
                call_name(method, path),
                "unreachable" if status is None else str(status),
                time.monotonic() - began,
            )

    def _retrying(self, attempt: Any, method: str, path: str) -> None:
        if attempt.num > 1 and self.observer is not None:
            self.observer.retry(call_name(method, path))

    async def obtain(self) -> Tokens:
        """Log in with username and password (``POST /v1/auth/obtain``)."""
        path = "/v1/auth/obtain"
        body = {"username": self._username, "password": self._password}
        response = await self._send("POST", path, json=body)
        if response.status_code != 200:
            error = error_for(response, "POST", path)
            if error.status == 401:
                raise AuthError(
                    401, f"login as {self._username!r} refused: {error.detail}", "POST", path
                )
            raise error
        tokens = Tokens.model_validate(response.json())
        self._remember(tokens)
        return tokens

    async def login(self, patience: float) -> None:
        """Log in at start-up, trying an unreachable or failing (5xx) server again with
        backoff for up to ``patience`` seconds; a refused login is not retried
        (:class:`AuthError` at once)."""
        policy = replace(
            self._policies.normal,
            attempts=None,
            timeout=patience,
            wait_max=min(self._policies.normal.wait_max, LOGIN_WAIT_MAX),
        )
        async for attempt in _attempts(policy, retry_500=True):
            self._retrying(attempt, "POST", "/v1/auth/obtain")
            with attempt:
                await self.obtain()

    async def refresh(self) -> Tokens:
        """Get a new access token from the refresh token; log in again if that fails."""
        path = "/v1/auth/refresh"
        if self._auth.refresh:
            response = await self._send("POST", path, json={"refresh": self._auth.refresh})
            if response.status_code == 200:
                tokens = Tokens.model_validate(response.json())
                self._remember(tokens)
                return tokens
            if response.status_code != 401:
                raise error_for(response, "POST", path)
        return await self.obtain()

    async def _token(self, stale: str | None = None) -> str:
        access = self._auth.access
        if stale is None and access is not None:
            return access  # the lock (a pass through the event loop) only to change it
        async with self._auth.lock:
            if self._auth.access is None or self._auth.access == stale:
                if stale is None:
                    await self.obtain()
                else:
                    await self.refresh()
            assert self._auth.access is not None
            return self._auth.access

    async def _send_authenticated(
        self,
        method: str,
        path: str,
        *,
        node: int | None,
        json: Any,
        content: Callable[[], AsyncIterator[bytes]] | None,
        headers: Mapping[str, str] | None,
        conflict: type[Conflict],
    ) -> httpx.Response:
        request_headers = dict(headers or {})
        if node is not None:
            request_headers["Node-Id"] = str(node)
        token = await self._token()
        response = await self._send(
            method, path, json=json, content=content, headers=request_headers, auth=token
        )
        if response.status_code == 401:
            token = await self._token(stale=token)
            response = await self._send(
                method, path, json=json, content=content, headers=request_headers, auth=token
            )
        if response.status_code >= 400:
            error = error_for(response, method, path)
            if error.status == 406:
                raise conflict(406, error.detail, method, path)
            raise error
        return response

    async def _call(
        self,
        method: str,
        path: str,
        *,
        policy: RetryPolicy,
        node: int | None = None,
        json: Any = None,
        content: Callable[[], AsyncIterator[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_500: bool = False,
        conflict: type[Conflict] = Conflict,
    ) -> httpx.Response:
        async for attempt in _attempts(policy, retry_500=retry_500):
            self._retrying(attempt, method, path)
            with attempt:
                return await self._send_authenticated(
                    method,
                    path,
                    node=node,
                    json=json,
                    content=content,
                    headers=headers,
                    conflict=conflict,
                )
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    # ----------------------------------------------------------------- nodes

    async def ping(self, node: int | None = None) -> None:
        await self._call(
            "GET", "/v1/nodes/ping", node=node, policy=self._policies.quick, retry_500=True
        )

    async def list_nodes(self, spec: Mapping[str, Any]) -> list[Node]:
        response = await self._call(
            "POST", "/v1/nodes/list", json=spec, policy=self._policies.normal, retry_500=True
        )
        return _parse_list(Node, response.json())

    async def find_node(self, ip: str, index: int) -> Node | None:
        nodes = await self.list_nodes(filters.node_by_address(ip, index))
        matching = [node for node in nodes if node.ip == ip and node.index == index]
        return matching[0] if matching else None

    async def create_node(
        self,
        ip: str,
        index: int,
        *,
        cpu_mem: int,
        gpu_mem: int | None = None,
        driver_version: str | None = None,
        hardware_generation: int | None = None,
    ) -> Node:
        """Register a node. ``cpu_mem`` and ``gpu_mem`` are bytes; a node without GPUs
        sends null ``gpu_mem``, ``driver_version`` and ``hardware_generation`` (the pk of
        a GPU-generation row, see the hardware endpoints in docs/protocol.md)."""
        body = {
            "ip": ip,
            "index": index,
            "cpu_mem": cpu_mem,
            "gpu_mem": gpu_mem,
            "driver_version": driver_version,
            "hardware_generation": hardware_generation,
        }
        response = await self._call(
            "POST", "/v1/nodes/create", json=body, policy=self._policies.normal
        )
        return Node.model_validate(response.json())

    async def hardware_generation(self, compute_capability: str) -> int | None:
        """The pk of the GPU generation covering ``compute_capability`` (``9.0`` →
        Hopper), or None when the server has none for it (it answers 400)."""
        try:
            response = await self._call(
                "GET",
                f"/v1/hardware/get-hardware-generation/{quote(compute_capability, safe='.')}",
                policy=self._policies.normal,
                retry_500=True,
            )
        except BadRequest:
            return None
        pk = response.json().get("pk")
        return pk if isinstance(pk, int) else None

    async def update_node(self, pk: int, **values: Any) -> Node:
        response = await self._call(
            "PATCH", f"/v1/nodes/{pk}", node=pk, json=values, policy=self._policies.normal
        )
        return Node.model_validate(response.json())

    async def get_node(self, pk: int) -> Node:
        response = await self._call(
            "GET", f"/v1/nodes/{pk}", policy=self._policies.normal, retry_500=True
        )
        return Node.model_validate(response.json())

    # ----------------------------------------------------------------- jobs

    async def list_jobs(self, spec: Mapping[str, Any]) -> list[Job]:
        return list(await self.lazy_jobs(spec))

    async def list_pending_jobs(self) -> list[Job]:
        """Jobs nobody has started or taken, oldest first."""
        return await self.list_jobs(filters.PENDING_JOBS)

    async def lazy_jobs(self, spec: Mapping[str, Any]) -> LazyJobs:
        """:meth:`list_jobs`, each job validated only when read."""
        response = await self._call(
            "POST", "/v1/jobs/list", json=spec, policy=self._policies.quick, retry_500=True
        )
        return LazyJobs(_items(response.json()))

    async def get_job(self, pk: int, node: int | None = None) -> Job:
        response = await self._call(
            "GET", f"/v1/jobs/{pk}", node=node, policy=self._policies.quick, retry_500=True
        )
        return Job.model_validate(response.json())

    async def job_progress_at_least(self, pk: int, fraction: float) -> bool:
        """Whether job ``pk``'s last reported progress is at least ``fraction``. The job
        record has no progress field; the list filter on ``progress_amount`` is the only
        way to read it."""
        spec = filters.spec(
            filters.all_of(
                filters.exact("pk", pk), filters.compare("progress_amount", ">=", fraction)
            )
        )
        return bool(await self.list_jobs(spec))

    async def acquire(self, pk: int, node: int) -> Job:
        """Take the job for ``node``. :class:`JobTaken` if another node won."""
        response = await self._call(
            "GET",
            f"/v1/jobs/{pk}/acquire",
            node=node,
            policy=self._policies.normal,
            conflict=JobTaken,
        )
        return Job.model_validate(response.json())

    async def start(self, pk: int, node: int) -> Job:
        response = await self._call(
            "POST",
            f"/v1/jobs/{pk}/start",
            node=node,
            json={"send_notification": ""},
            policy=self._policies.normal,
        )
        return Job.model_validate(response.json())

    async def progress(
        self, pk: int, node: int, value: float, body: Mapping[str, Any] | None = None
    ) -> None:
        """Report progress. :class:`Conflict` (406) means the job is no longer running."""
        await self._call(
            "POST",
            f"/v1/jobs/{pk}/progress/{format_progress(value)}",
            node=node,
            json=dict(body or {}),
            policy=self._policies.quick,
        )

    async def add_output(
        self,
        pk: int,
        node: int,
        name: str,
        type_: str,
        source: Path | int,
        filename: str | None = None,
    ) -> OutputInfo:
        """Upload a file as output ``name``/``type_``, streamed from disk.

        ``source`` is a path (opened here as a regular file, no symlink followed) or the
        descriptor of a regular file the caller opened and checked, and closes. The size
        is taken from that descriptor once, and each attempt sends exactly that many
        bytes read from offset 0 (``pread``): a file that grows meanwhile is cut there,
        one that shrinks is padded with zero bytes, so the Content-Length always holds.
        """
        if isinstance(source, Path):
            fd = await anyio.to_thread.run_sync(open_regular, source)
            try:
                return await self.add_output(pk, node, name, type_, fd, filename or source.name)
            finally:
                os.close(fd)
        size = os.fstat(source).st_size
        body = FileBody(source, size, self.observer.sent if self.observer is not None else None)

        headers = {
            "Content-Disposition": f"attachment; filename={_safe_filename(filename or 'output')}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
        }
        response = await self._call(
            "POST",
            _output_path(pk, name, type_),
            node=node,
            content=body,
            headers=headers,
            policy=self._policies.long,
        )
        return OutputInfo.model_validate(response.json())

    async def output_info(
        self, pk: int, name: str, type_: str, node: int | None = None
    ) -> OutputInfo:
        response = await self._call(
            "GET",
            _output_path(pk, name, type_) + "/info",
            node=node,
            policy=self._policies.normal,
            retry_500=True,
        )
        return OutputInfo.model_validate(response.json())

    async def download_output(self, pk: int, name: str, type_: str, dest: Path) -> int:
        return await self.download(_output_path(pk, name, type_), dest)

    async def finish(self, pk: int, node: int, success: bool, error: str | None = None) -> None:
        body: dict[str, Any] = {"success": success, "send_notification": ""}
        if error is not None:
            body["error"] = error
        await self._call(
            "POST", f"/v1/jobs/{pk}/finish", node=node, json=body, policy=self._policies.long
        )

    async def reset(self, pk: int, node: int) -> None:
        await self._call("DELETE", f"/v1/jobs/{pk}/reset", node=node, policy=self._policies.long)

    async def release(self, pk: int, node: int) -> None:
        await self._call("DELETE", f"/v1/jobs/{pk}/release", node=node, policy=self._policies.long)

    async def cancel(self, pk: int) -> None:
        """Admin: cancel a job."""
        await self._call("DELETE", f"/v1/jobs/{pk}/cancel", policy=self._policies.normal)

    async def abort(self, pk: int) -> None:
        """Admin: abort a job."""
        await self._call("DELETE", f"/v1/jobs/{pk}/abort", policy=self._policies.normal)

    # ----------------------------------------------------------------- templates

    async def get_template(self, pk: int, version: int | None = None) -> Template:
        """A template; cached per (pk, version), since those never change."""
        if version is not None and (pk, version) in self._templates:
            return self._templates[(pk, version)]
        response = await self._call(
            "GET", f"/v1/job-templates/{pk}", policy=self._policies.normal, retry_500=True
        )
        template = Template.model_validate(response.json())
        self._templates[(template.pk, template.version)] = template
        return template

    async def list_templates(self, spec: Mapping[str, Any]) -> list[Template]:
        response = await self._call(
            "POST",
            "/v1/job-templates/list",
            json=spec,
            policy=self._policies.normal,
            retry_500=True,
        )
        return _parse_list(Template, response.json())

    async def import_template(
        self,
        name: str,
        executor_class: str,
        parameters: Mapping[str, Any],
        *,
        job_type: str = "Export",
    ) -> Template:
        """Admin: create a workable template."""
        body = {
            "name": name,
            "scope": "public",
            "licence": "Apache 2.0",
            "specific": {
                "job_type": job_type,
                "executor_class": executor_class,
                "required_packages": "",
                "parameters": dict(parameters),
            },
        }
        response = await self._call(
            "POST", "/v1/job-templates/import", json=body, policy=self._policies.normal
        )
        return Template.model_validate(response.json())

    async def create_job(
        self,
        template: int,
        parameter_values: Mapping[str, Any],
        input_values: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Job:
        """Admin: submit a job (``parameter_values`` always sent: the server needs it)."""
        body = {
            "input_values": dict(input_values or {}),
            "parameter_values": dict(parameter_values),
            "description": description,
        }
        response = await self._call(
            "POST",
            f"/v1/job-templates/{template}/create-job",
            json=body,
            policy=self._policies.normal,
        )
        return Job.model_validate(response.json())

    # ----------------------------------------------------------------- files

    async def download(self, url: str, dest: Path, limit: int | None = None) -> int:
        """Stream ``url`` into ``dest``: relative URLs go to the server with our auth,
        absolute http(s) URLs elsewhere are fetched without it. Returns the byte count.

        With ``limit``, raises :class:`TooLarge` as soon as more than ``limit`` bytes
        arrive (or a ``Content-Length`` announces more): the count, not the header, rules.
        """
        foreign = url.startswith(("http://", "https://")) and not url.startswith(self.url + "/")
        path = url.removeprefix(self.url)
        async for attempt in _attempts(self._policies.normal, retry_500=True):
            self._retrying(attempt, "GET", url if foreign else path)
            with attempt:
                if foreign:
                    return await self._download_once(url, dest, None, limit)
                token = await self._token()
                try:
                    return await self._download_once(path, dest, token, limit)
                except AuthError:
                    token = await self._token(stale=token)
                    return await self._download_once(path, dest, token, limit)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _download_once(
        self, url: str, dest: Path, token: str | None, limit: int | None
    ) -> int:
        # Files are served as application/data: the session's JSON Accept gets a 406.
        headers = {"Accept": "*/*"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        written = 0
        ours = not url.startswith(("http://", "https://"))
        began = time.monotonic()
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if ours:
                    self._observe("GET", url, response.status_code, began)
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for(response, "GET", url)
                announced = response.headers.get("content-length", "")
                if limit is not None and announced.isdigit() and int(announced) > limit:
                    raise TooLarge(url, int(announced), limit)
                async with await anyio.open_file(dest, "wb") as handle:
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        written += len(chunk)
                        if limit is not None and written > limit:
                            raise TooLarge(url, written, limit)
                        await handle.write(chunk)
        except httpx.TransportError as exc:
            unreachable = ServerUnreachable("GET", url, exc)
            if ours:
                self._observe("GET", url, None, began, str(unreachable))
            raise unreachable from exc
        return written


def _attempts(policy: RetryPolicy, *, retry_500: bool) -> Any:
    """stamina's retry context for ``policy``, classifying errors with :func:`retry_delay`."""
    return stamina.retry_context(
        on=lambda exc: retry_delay(exc, retry_500=retry_500),
        attempts=policy.attempts,
        timeout=policy.timeout,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_jitter,
    )


def _default_transport() -> httpx.AsyncBaseTransport | None:
    """The client's own transport: ``httpx``'s, made on first use
    (:class:`~agent.server.transport.DeferredTransport`), unless a proxy is set in the
    environment (None: the client then makes its transports, the proxies' included; one
    handed to it would turn the environment's proxies off)."""
    proxies = urllib.request.getproxies()  # what httpx reads the environment with
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None
    return DeferredTransport()


def _direct_transport(
    client: httpx.AsyncClient, url: httpx.URL, *, given: httpx.AsyncBaseTransport | None
) -> httpx.AsyncBaseTransport | None:
    """The transport the server's calls to ``url`` go on, past the client's own layers.

    The one the client itself picks for ``url`` (its proxy from ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, read once: a proxy depends on the
    scheme, host and port only), except that where it would go straight to the server
    on its default transport, a :class:`KeepAliveTransport` does. A transport ``given``
    to the client (tests) is used as it is. None with an ``httpx`` that lacks the
    lookup (a private method): every call then goes through the client.
    """
    transport_for = getattr(client, "_transport_for_url", None)
    if transport_for is None:
        return None
    chosen: httpx.AsyncBaseTransport = transport_for(url)
    if given is None and chosen is getattr(client, "_transport", None):
        return KeepAliveTransport()
    return chosen


class LazyJobs:
    """The jobs of a list reply, each validated when first read: a poll of hundreds of
    pending jobs looks at the first few. A malformed item is skipped (and logged) when
    the iteration reaches it, as :meth:`ServerClient.list_jobs` skips it."""

    def __init__(self, items: Sequence[Any]) -> None:
        self._items = list(items)  # raw items of the reply, or Job models

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Job]:
        for item in self._items:
            job = item if isinstance(item, Job) else _parse_item(Job, item)
            if job is not None:
                yield job

    @property
    def pks(self) -> set[int]:
        """The pk of every item that has one (validated or not)."""
        return {pk for pk in map(_item_pk, self._items) if pk is not None}

    def pks_in_order(self) -> Iterator[int]:
        """The pks of the items that have one, in the list's order."""
        for pk in map(_item_pk, self._items):
            if pk is not None:
                yield pk

    def after(self, count: int) -> LazyJobs:
        """The jobs past the first ``count`` items."""
        return LazyJobs(self._items[count:])

    def reordered(self, order: Callable[[list[Any]], list[Any]]) -> LazyJobs:
        """The same jobs in the order ``order`` gives their items."""
        return LazyJobs(order(self._items))

    def starting_at(self, pk: int, limit: int | None = None) -> LazyJobs:
        """The jobs from the one with ``pk`` on, at most ``limit`` of them (none when no
        item has that pk)."""
        for index, item in enumerate(self._items):
            if _item_pk(item) == pk:
                end = None if limit is None else index + limit
                return LazyJobs(self._items[index:end])
        return LazyJobs([])


class _NoCookies(CookieJar):
    """The client keeps no cookies: the server is called with bearer tokens only, and
    parsing every reply's headers for cookies costs time on each call."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None


def _item_pk(item: Any) -> int | None:
    """The pk of a list item, a :class:`Job` or a raw one (None when it has none)."""
    return item.pk if isinstance(item, Job) else _raw_pk(item)


def _raw_pk(item: Any) -> int | None:
    pk = item.get("pk") if isinstance(item, dict) else None
    return pk if isinstance(pk, int) and not isinstance(pk, bool) else None


def _parse_item(model: type[_M], item: Any) -> _M | None:
    """One item of a list reply, or None (logged) when it does not parse."""
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        logger.warning(
            "skipping a malformed list item from the server",
            model=model.__name__,
            pk=item.get("pk") if isinstance(item, dict) else None,
            errors=exc.error_count(),
        )
        return None


def _parse_list(model: type[_M], body: Any) -> list[_M]:
    """Each item of a list reply that parses; one malformed item must not hide the rest."""
    return [parsed for item in _items(body) if (parsed := _parse_item(model, item)) is not None]


def _items(body: Any) -> Sequence[Any]:
    """List replies are arrays; accept a paginated ``{"results": [...]}`` too."""
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        return list(body["results"])
    if isinstance(body, list):
        return body
    raise ServerError(200, f"expected a list, got {type(body).__name__}", "POST", "list")


def _output_path(pk: int, name: str, type_: str) -> str:
    return f"/v1/jobs/{pk}/outputs/{quote(name, safe='')}/{quote(type_, safe='')}"


def _safe_filename(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    return cleaned or "output"
