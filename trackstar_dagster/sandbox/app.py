"""The sandbox's HTTP surface: a Starlette app that answers like Trackstar's documentation says it does.

This module assembles it: one ``Sandbox`` (``core.py``: catalog, write-info docs, connections, store,
limits, faults) shared by three route groups built around it, ``CatalogRoutes`` (``catalog_routes.py``:
catalog, write-info, connections, generate-sandbox), ``AdminRoutes`` (``admin_routes.py``: ``/_sandbox/...``)
and ``DataRoutes`` (``data_routes.py``: ``/{vertical}/...``), plus the request-id/access-log middleware and
the JSON error handlers. All state is touched from the event loop thread only; ``server.SandboxHandle``
marshals its calls onto that loop. Body judging (422s, connection-specific enums) lives in ``judge.py``,
list queries (filters, pages) in ``queries.py`` and the error/answer shapes and body limits in
``responses.py``.

Choices where the docs are silent (kept simple, and relied on by tests):

- Order of checks on a data request: API key, token (401) -> per-token rate limit (429) -> route (404/501)
  -> disabled action (403) -> body size (413) and JSON (422: not JSON, nested too deep) -> Idempotency-Key
  (replay/409/400) -> latency -> injected fault -> 404 unknown id -> 422 validation -> store. Replays, 4xx
  before the key check and rate-limit 429s skip the latency.
- Body limits (Trackstar's docs name none): a data write's body is at most 1 MiB (``MAX_WRITE_BODY``), an
  admin body (``/_sandbox/write-info``, ``/_sandbox/configure``) 4 MiB (``MAX_ADMIN_BODY``). A real order
  is a few KB (one with a thousand line items about 100 KB) and the largest shipped write-info document
  48 KB: the limits sit far above anything real and far below what strains a local process (a body is
  held in memory, parsed, judged and copied several times). Over the limit is a 413 ``{"error",
  "origin"}``, answered from ``Content-Length`` before the body is read, or for a chunked body as soon as
  the bytes read pass the limit; uvicorn discards the rest and the connection stays usable. JSON nested
  more than 64 levels (``MAX_JSON_DEPTH``; real bodies nest about 5, write-info documents 11) is a 422
  ``{"_schema": ["JSON nested more than 64 levels deep."]}`` (a cancel ignores its body, as it does
  invalid JSON): deeper data would reach Python's recursion limit in the parser, the judge, the store or
  the answer.
- ``PUT /_sandbox/write-info/{name}`` (and ``set_write_info``) takes a document only when writes can be
  judged with it (``judge.check_write_info``: an object whose ``paths`` is an object of path items, valid
  JSON Schema bodies, local ``$ref``s that resolve, at most 64 levels); else 400 ``Bad write-info
  document: ...`` (``ValueError`` from Python) and the previous document stays.
- Idempotency keys are scoped per access token and kept 24 h. Any non-2xx answer releases the key, except
  commit-then-fail: the record was stored, so the key stays bound to that success and a retry with the same
  key replays the 200 (``Idempotent-Replayed: true``) instead of writing twice. Hangs and drops release it.
  The fault switch ``ignore_idempotency_key`` makes it a server that does not honour keys at all (or whose
  24 h window has passed): every write is performed, nothing is replayed.
- ``trackstar_tags[contains]=X`` matches a string tag equal to X, or a one-key ``{k: v}`` tag when X is
  ``k:v``, ``v`` or ``k``. Other filters: ``field=``/``field[op]=`` with eq, neq, in, nin, contains,
  not_contains, gt/gte/lt/lte (dates compared as datetimes for ``*_date`` fields) and ``-insensitive``
  variants; ``ids[in]`` ignores the others. ``limit`` defaults to 1000 and larger values are clamped.
- ``next_token`` is opaque (it encodes the position of the last item returned).
- The catalog's 1/min limit (only with ``catalog_limit``) is one budget per API key for the list and one
  for single-integration calls; write-info is not limited.
- ``PUT /{vertical}/{resource}/{id}/cancel`` works for any resource the integration can create (sets
  ``status: "cancelled"``); write-info documents carry no cancel operation.
- With an access token, write-info sets every ``warehouse_id`` enum to the connection's warehouse ids and
  replaces placeholder enums (``return_reason`` / ``code``) with its return causes; without one,
  ``warehouse_id`` gets ``["N/A - Connect an account to see options"]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from trackstar_dagster.sandbox.admin_routes import AdminRoutes
from trackstar_dagster.sandbox.catalog_routes import CatalogRoutes
from trackstar_dagster.sandbox.core import DATA_DIR, Sandbox, SandboxSettings
from trackstar_dagster.sandbox.data_routes import DataRoutes
from trackstar_dagster.sandbox.heap import HeapKeeper
from trackstar_dagster.sandbox.responses import error, not_found, request_id

__all__ = ["DATA_DIR", "RequestIdMiddleware", "Sandbox", "SandboxSettings", "create_app"]

log = logging.getLogger("trackstar_dagster.sandbox")
access_log = logging.getLogger("trackstar_dagster.sandbox.access")


# -- ASGI plumbing ---------------------------------------------------------------------------------------
class RequestIdMiddleware:
    """Adds ``X-Request-Id`` to every answer and writes one access-log line (path only: no query, no secrets)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"req_{uuid.uuid4().hex[:24]}"
        scope.setdefault("state", {})["request_id"] = rid
        status = 0
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", rid)
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %.1fms %s",
                    scope["method"],
                    scope["path"],
                    status or "dropped",
                    (time.perf_counter() - started) * 1000,
                    rid,
                )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (unknown route, wrong method) in Trackstar's JSON shapes."""
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "Internal Server Error")
    if status == 404:
        return not_found(request, "Not Found")
    return error(status, str(detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    """A bug in the sandbox: logged with its request id, answered as a JSON 500 (never a traceback)."""
    log.exception("unhandled error in sandbox (request %s)", request_id(request))
    return error(500, "Internal Server Error")


def create_app(
    settings: SandboxSettings | None = None, sandbox: Sandbox | None = None, *, keep_heap: bool = False
) -> Starlette:
    """The Starlette app; ``app.state.sandbox`` is the ``Sandbox`` behind it. ``keep_heap`` only in a process
    that is the sandbox's alone: its collector is kept from stalling the server (``heap.py``)."""
    sb = sandbox or Sandbox(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """Give the sandbox its loop (for ``SandboxHandle``) and stop event; close the store at shutdown."""
        sb.loop = asyncio.get_running_loop()
        sb.stopping = asyncio.Event()
        keeper = asyncio.create_task(HeapKeeper(lambda: sb.limits.count).run()) if keep_heap else None
        yield
        if keeper is not None:
            keeper.cancel()
        sb.store.close()

    # the data group's catch-all ``/{vertical}/{rest:path}`` comes last, after every fixed path
    routes = [*AdminRoutes(sb).routes(), *CatalogRoutes(sb).routes(), *DataRoutes(sb).routes()]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.sandbox = sb
    app.add_middleware(RequestIdMiddleware)
    return app
