"""The sandbox's HTTP surface: a Starlette app that answers like Trackstar's documentation says it does.

One ``Sandbox`` object holds everything (catalog, write-info docs, connections, store, limits, faults); the
routes are its methods. All state is touched from the event loop thread only; ``server.SandboxHandle``
marshals its calls onto that loop.

Body judging (422s, connection-specific enums) lives in ``judge.py``, list queries (filters, pages) in
``queries.py``, the data routes (``/{vertical}/...`` reads and writes) in ``data_routes.py`` (a mixin the
``Sandbox`` inherits) and the error/answer shapes in ``responses.py``; their public names are re-exported
here.

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
import copy
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trackstar_dagster.sandbox.data_routes import KNOWN_RESOURCES as KNOWN_RESOURCES
from trackstar_dagster.sandbox.data_routes import VERTICALS as VERTICALS
from trackstar_dagster.sandbox.data_routes import WRITE_METHODS as WRITE_METHODS
from trackstar_dagster.sandbox.data_routes import DataRoutes
from trackstar_dagster.sandbox.faults import FaultConfig, FaultInjector
from trackstar_dagster.sandbox.judge import FORMAT_CHECKER, _doc_with_enums, check_write_info
from trackstar_dagster.sandbox.judge import PLACEHOLDER as PLACEHOLDER
from trackstar_dagster.sandbox.judge import dotted as dotted
from trackstar_dagster.sandbox.judge import null_path as null_path
from trackstar_dagster.sandbox.queries import FILTER_OPS as FILTER_OPS
from trackstar_dagster.sandbox.queries import decode_page_token as decode_page_token
from trackstar_dagster.sandbox.queries import encode_page_token as encode_page_token
from trackstar_dagster.sandbox.queries import paginate, parse_limit
from trackstar_dagster.sandbox.queries import tag_matches as tag_matches
from trackstar_dagster.sandbox.ratelimits import RateLimits, Verdict
from trackstar_dagster.sandbox.responses import (
    MAX_ADMIN_BODY,
    error,
    not_found,
    parse_json,
    read_body,
    request_id,
    validation_error,
)
from trackstar_dagster.sandbox.responses import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from trackstar_dagster.sandbox.responses import MAX_WRITE_BODY as MAX_WRITE_BODY
from trackstar_dagster.sandbox.responses import NoResponse as NoResponse
from trackstar_dagster.sandbox.state import (
    SANDBOX_INTEGRATION,
    Connection,
    ConnectionSpec,
    Store,
    canonical_integration,
    fingerprint,
)
from trackstar_dagster.schema.openapi import normalise_schema

log = logging.getLogger("trackstar_dagster.sandbox")
access_log = logging.getLogger("trackstar_dagster.sandbox.access")

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_CONNECTIONS: dict[str, str] = {
    "sandbox-token-wms": SANDBOX_INTEGRATION,
    "sandbox-token-shiphero": "shiphero",
    "sandbox-token-shipbob": "shipbob",
}
_UNSET: Any = object()


# -- data ------------------------------------------------------------------------------------------------
def load_data(data_dir: str | Path | None = None) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict]]:
    """(catalog per integration type, write-info doc per integration name) from a data directory."""
    root = Path(data_dir) if data_dir else DATA_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"sandbox data directory not found: {root}")
    catalogs: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(root.glob("catalog-*.json")):
        obj = json.loads(f.read_text(encoding="utf-8"))
        catalogs[f.stem[len("catalog-"):]] = obj["data"] if isinstance(obj, dict) else list(obj)
    docs = {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in sorted((root / "write-info").glob("*.json"))}
    return catalogs, docs


# -- the sandbox -----------------------------------------------------------------------------------------
@dataclass
class SandboxSettings:
    """Everything ``run_sandbox`` and the CLI can set."""

    api_key: str = DEFAULT_API_KEY
    connections: dict[str, ConnectionSpec | str] | None = None
    latency: float = 0.0
    jitter: float = 0.0
    write_rate: float | None = 50.0
    read_rate: float | None = 10.0
    catalog_limit: bool = False
    faults: FaultConfig | dict[str, Any] | None = None
    state_file: str | Path | None = None
    data_dir: str | Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Sandbox(DataRoutes):
    """The whole sandbox: data, connections, store, limits, faults, and the route handlers."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        s = settings or SandboxSettings()
        self.settings = s
        self.api_key = s.api_key
        self.catalogs, self._shipped_docs = load_data(s.data_dir)
        self.docs = copy.deepcopy(self._shipped_docs)
        self.doc_version: dict[str, int] = dict.fromkeys(self.docs, 0)
        conns = DEFAULT_CONNECTIONS if s.connections is None else s.connections
        self.connections: dict[str, Connection] = {t: Connection.build(t, spec) for t, spec in conns.items()}
        self.store = Store(s.state_file)
        self.limits = RateLimits(s.write_rate, s.read_rate)
        self.catalog_limit = s.catalog_limit
        faults = s.faults if isinstance(s.faults, FaultConfig) else FaultConfig(**(s.faults or {}))
        if s.latency or s.jitter:
            faults = faults.model_copy(update={"latency": s.latency, "jitter": s.jitter})
        self.faults = FaultInjector(faults)
        self._doc_cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._public_docs: dict[tuple[str, int], dict[str, Any]] = {}
        self._validators: dict[tuple[str, str, int], Draft202012Validator] = {}
        self.uvicorn_server: Any = None  # set by server.py: needed to drop connections
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None

    # -- lookups -------------------------------------------------------------------------------------
    def catalog_entry(self, integration_type: str, name: str) -> dict[str, Any] | None:
        canon = canonical_integration(name)
        for entry in self.catalogs.get(integration_type, []):
            if entry.get("integration_name") == canon:
                return entry
        return None

    def any_catalog_entry(self, name: str) -> dict[str, Any] | None:
        for itype in self.catalogs:
            entry = self.catalog_entry(itype, name)
            if entry:
                return entry
        return None

    def display_name(self, name: str) -> str:
        entry = self.any_catalog_entry(name) or {}
        return entry.get("display_name") or name

    def connection_doc(self, conn: Connection) -> dict[str, Any] | None:
        canon = conn.canonical_name
        if canon not in self.docs:
            return None
        key = (conn.token, self.doc_version[canon])
        if key not in self._doc_cache:
            self._doc_cache[key] = _doc_with_enums(self.docs[canon], conn)
        return self._doc_cache[key]

    def validator(self, conn: Connection, action: str) -> Draft202012Validator:
        canon = conn.canonical_name
        key = (conn.token, action, self.doc_version[canon])
        v = self._validators.get(key)
        if v is None:
            doc = self.connection_doc(conn)
            assert doc is not None
            v = self._validators[key] = Draft202012Validator(normalise_schema(doc, action),
                                                             format_checker=FORMAT_CHECKER)
        return v

    def available_actions(self, conn: Connection) -> list[str]:
        entry = self.catalog_entry(conn.integration_type, conn.integration_name) or {}
        return [a for a in entry.get("available_actions", []) if a not in conn.disabled_actions]

    def connection_info(self, conn: Connection) -> dict[str, Any]:
        return {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "integration_type": conn.integration_type,
            "integration_display_name": self.display_name(conn.integration_name),
            "customer_id": conn.customer_id,
            "created_at": conn.created_at,
            "last_used": conn.last_used,
            "times_used": conn.times_used,
            "available_actions": self.available_actions(conn),
            "webhooks_disabled": False,
            "sync_schedules": [],
            "errors": [],
            "historical_sync_completed": {},
        }

    # -- admin operations (event loop thread) --------------------------------------------------------
    def configure(
        self,
        latency: float | None = None,
        jitter: float | None = None,
        write_rate: float | None = _UNSET,
        read_rate: float | None = _UNSET,
        faults: FaultConfig | dict[str, Any] | None = None,
        catalog_limit: bool | None = None,
        rates: dict[str, float | None] | None = None,
    ) -> dict[str, Any]:
        """Change behaviour while running. A FaultConfig replaces the faults (latency/jitter kept unless it sets
        them); a dict updates only the fields it names."""
        if isinstance(faults, FaultConfig):
            current = self.faults.config
            keep = {k: getattr(current, k) for k in ("latency", "jitter") if k not in faults.model_fields_set}
            self.faults.configure(faults.model_copy(update=keep))
        elif isinstance(faults, dict):
            self.faults.configure(None, **faults)
        if latency is not None or jitter is not None:
            self.faults.configure(None, latency=latency, jitter=jitter)
        rates = dict(rates or {})
        if write_rate is not _UNSET:
            rates["write"] = write_rate
        if read_rate is not _UNSET:
            rates["read"] = read_rate
        for kind, rate in rates.items():
            self.limits.set_rate(kind, rate)
        if catalog_limit is not None:
            self.catalog_limit = catalog_limit
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "faults": self.faults.config.model_dump(),
            "write_rate": self.limits.rates.get("write"),
            "read_rate": self.limits.rates.get("read"),
            "catalog_limit": self.catalog_limit,
        }

    def set_write_info(self, name: str, doc: dict[str, Any]) -> None:
        """Schema drift: replace an integration's write-info document while running. ``ValueError`` (the
        document kept) unless writes can be judged with it (``judge.check_write_info``)."""
        check_write_info(doc)
        canon = canonical_integration(name)
        self.docs[canon] = copy.deepcopy(doc)
        self.doc_version[canon] = self.doc_version.get(canon, 0) + 1
        self._doc_cache.clear()
        self._public_docs.clear()
        self._validators.clear()

    def records(self, resource: str = "orders", token: str | None = None) -> list[dict[str, Any]]:
        if token is None:
            return copy.deepcopy(self.store.all_for_resource(resource))
        conn = self.connections.get(token)
        return copy.deepcopy(self.store.list(conn.connection_id, resource)) if conn else []

    def reset(self) -> None:
        """Forget records, idempotency keys and rate windows; restore the shipped write-info docs."""
        self.store.clear()
        self.limits.reset()
        self.faults.configure(self.faults.config)
        for name in list(self.docs):
            if name in self._shipped_docs:
                self.docs[name] = copy.deepcopy(self._shipped_docs[name])
                self.doc_version[name] += 1
        self._doc_cache.clear()
        self._public_docs.clear()
        self._validators.clear()

    # -- auth ----------------------------------------------------------------------------------------
    def check_key(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-trackstar-api-key")
        if not key:
            return error(401, "Missing API key: send the x-trackstar-api-key header.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return error(401, "Invalid API key.")
        return None

    def token_connection(self, request: Request) -> Connection | JSONResponse:
        token = request.headers.get("x-trackstar-access-token")
        if not token:
            return error(401, "Missing access token: send the x-trackstar-access-token header.")
        conn = self.connections.get(token)
        if conn is None:
            return error(401, "Invalid access token.")
        return conn

    # -- management routes ---------------------------------------------------------------------------
    def _catalog_verdict(self, request: Request, which: str) -> Verdict | None:
        if not self.catalog_limit:
            return None
        return self.limits.check(f"{fingerprint(self.api_key)}:{which}", "catalog")

    async def integrations(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        itype = request.path_params["integration_type"]
        if itype not in self.catalogs:
            return not_found(request, f"Unknown integration type {itype!r}.")
        verdict = self._catalog_verdict(request, "list")
        headers = verdict.headers() if verdict else None
        if verdict and not verdict.allowed:
            return error(429, "429 Too Many Requests", headers=headers)
        return JSONResponse({"data": self.catalogs[itype]}, headers=headers)

    async def integration(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        itype, name = request.path_params["integration_type"], request.path_params["integration_name"]
        entry = self.catalog_entry(itype, name)
        if entry is None:
            return not_found(request, f"Integration {name} not found for type {itype}.")
        verdict = self._catalog_verdict(request, "one")
        headers = verdict.headers() if verdict else None
        if verdict and not verdict.allowed:
            return error(429, "429 Too Many Requests", headers=headers)
        return JSONResponse({"data": [entry]}, headers=headers)

    async def write_info(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        itype, name = request.path_params["integration_type"], request.path_params["integration_name"]
        canon = canonical_integration(name)
        if self.catalog_entry(itype, name) is None or canon not in self.docs:
            return not_found(request, f"Integration {name} not found for type {itype}.")
        if request.headers.get("x-trackstar-access-token"):
            conn = self.token_connection(request)
            if isinstance(conn, Response):
                return conn
            if conn.canonical_name != canon or conn.integration_type != itype:
                return error(400, f"The access token's connection is a {conn.integration_name} connection, "
                                  f"not {name}.")
            return JSONResponse(self.connection_doc(conn))
        key = (canon, self.doc_version[canon])
        doc = self._public_docs.get(key)
        if doc is None:
            doc = self._public_docs[key] = _doc_with_enums(self.docs[canon], None)
        return JSONResponse(doc)

    async def list_connections(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        conns = list(self.connections.values())
        wanted = request.query_params.get("access_token")
        if wanted is not None:
            conns = [c for c in conns if hmac.compare_digest(c.token.encode(), wanted.encode())]
        try:
            limit = parse_limit(request.query_params.get("limit"))
            page = paginate([self.connection_info(c) for c in conns], list(range(len(conns))), limit,
                            request.query_params.get("page_token"))
        except (ValueError, KeyError, TypeError):
            return validation_error({"page_token": ["Invalid limit or page_token."]}, "query")
        return JSONResponse(page)

    async def get_connection(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        cid = request.path_params["connection_id"]
        for conn in self.connections.values():
            if conn.connection_id == cid:
                return JSONResponse(self.connection_info(conn))
        return not_found(request, f"Connection {cid} not found.")

    async def generate_sandbox(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        itype = request.path_params.get("integration_type", "wms")
        if itype != "wms":
            return not_found(request, f"No {itype} sandbox in this local sandbox (only wms).")
        conn = next((c for c in self.connections.values() if c.canonical_name == SANDBOX_INTEGRATION), None)
        if conn is None:
            token = "sandbox-token-wms"
            while token in self.connections:
                token = f"sandbox-token-wms-{uuid.uuid4().hex[:8]}"
            conn = self.connections[token] = Connection.build(token, SANDBOX_INTEGRATION)
        self.store.clear(conn.connection_id, scope=fingerprint(conn.token))
        return JSONResponse({
            "access_token": conn.token,
            "connection_id": conn.connection_id,
            "integration_name": "sandbox",
            "customer_id": conn.customer_id,
            "available_actions": self.available_actions(conn),
            "available_endpoints": [],
        })

    # -- admin routes (/_sandbox/...) ----------------------------------------------------------------
    async def admin_health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def admin_configure(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        raw = await read_body(request, MAX_ADMIN_BODY)
        if isinstance(raw, Response):
            return raw
        try:
            body = parse_json(raw)
            allowed = {"latency", "jitter", "write_rate", "read_rate", "faults", "catalog_limit", "rates"}
            return JSONResponse(self.configure(**{k: v for k, v in body.items() if k in allowed}))
        except Exception as exc:  # a bad admin call: say why
            return error(400, f"Bad configure request: {exc}")

    async def admin_write_info(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        raw = await read_body(request, MAX_ADMIN_BODY)
        if isinstance(raw, Response):
            return raw
        try:
            doc = parse_json(raw)
        except ValueError as exc:
            return error(400, f"Bad write-info document: not valid JSON ({exc}).")
        try:
            self.set_write_info(request.path_params["integration_name"], doc)
        except ValueError as exc:  # the previous document stays
            return error(400, str(exc))
        return JSONResponse({"ok": True})

    async def admin_records(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        token = request.headers.get("x-trackstar-access-token")
        return JSONResponse({"data": self.records(request.path_params["resource"], token)})

    async def admin_reset(self, request: Request) -> Response:
        if (bad := self.check_key(request)) is not None:
            return bad
        self.reset()
        return JSONResponse({"ok": True})


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
                access_log.info("%s %s %s %.1fms %s", scope["method"], scope["path"], status or "dropped",
                                (time.perf_counter() - started) * 1000, rid)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "Internal Server Error")
    if status == 404:
        return not_found(request, "Not Found")
    return error(status, str(detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in sandbox (request %s)", request_id(request))
    return error(500, "Internal Server Error")


def create_app(settings: SandboxSettings | None = None, sandbox: Sandbox | None = None) -> Starlette:
    """The Starlette app; ``app.state.sandbox`` is the ``Sandbox`` behind it."""
    sb = sandbox or Sandbox(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        sb.loop = asyncio.get_running_loop()
        sb.stopping = asyncio.Event()
        yield
        sb.store.close()

    routes = [
        Route("/_sandbox/health", sb.admin_health, methods=["GET"]),
        Route("/_sandbox/configure", sb.admin_configure, methods=["POST"]),
        Route("/_sandbox/write-info/{integration_name}", sb.admin_write_info, methods=["PUT"]),
        Route("/_sandbox/records/{resource}", sb.admin_records, methods=["GET"]),
        Route("/_sandbox/reset", sb.admin_reset, methods=["POST"]),
        Route("/integrations/{integration_type}", sb.integrations, methods=["GET"]),
        Route("/integrations/{integration_type}/{integration_name}", sb.integration, methods=["GET"]),
        Route("/integrations/{integration_type}/{integration_name}/write-info", sb.write_info, methods=["GET"]),
        Route("/connections", sb.list_connections, methods=["GET"]),
        Route("/connections/{connection_id}", sb.get_connection, methods=["GET"]),
        Route("/sandbox/generate-sandbox", sb.generate_sandbox, methods=["POST"]),
        Route("/sandbox/generate-sandbox/{integration_type}", sb.generate_sandbox, methods=["POST"]),
        Route("/{vertical}/{rest:path}", sb.data, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},  # type: ignore[dict-item]
    )
    app.state.sandbox = sb
    app.add_middleware(RequestIdMiddleware)
    return app
