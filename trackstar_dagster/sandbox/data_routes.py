"""The data routes (``/{vertical}/...`` reads and writes): what a request to the WMS itself goes through.

Auth and the per-token rate limit, route resolution against the connection's write-info document (501 for
what the integration lacks), the body limits (413, too deep), Idempotency-Key handling around writes, the
simulated latency, injected faults, 422 judging (``judge.py``) and the store. The order of these checks, the
limits and the idempotency rules are described in ``app.py``'s module docstring.

``DataRoutes`` holds no state of its own: it is built with the ``Sandbox`` whose state it reads and changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from contextlib import suppress
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trackstar_dagster.base.redaction import fingerprint
from trackstar_dagster.sandbox.core import Sandbox
from trackstar_dagster.sandbox.faults import FaultDecision
from trackstar_dagster.sandbox.judge import judge_body
from trackstar_dagster.sandbox.queries import (
    FILTER_RE,
    MAX_LIMIT,
    Predicate,
    build_filter,
    paginate,
    parse_limit,
)
from trackstar_dagster.sandbox.responses import (
    MAX_WRITE_BODY,
    JSONTooDeep,
    NoResponse,
    error,
    not_found,
    parse_json,
    read_body,
    validation_error,
)
from trackstar_dagster.sandbox.state import Connection, Store, utc_now_iso
from trackstar_dagster.schema.openapi import action_for, operations

VERTICALS = ("wms", "cart", "carrier", "freight", "erp")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
KNOWN_RESOURCES = (
    "orders",
    "returns",
    "products",
    "inbound-shipments",
    "kits",
    "inventory",
    "warehouses",
    "shipping-methods",
    "warehouse-customers",
)


class DataRoutes:
    """The ``/{vertical}/...`` route handlers over one ``Sandbox`` (see the module docstring)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def routes(self) -> list[Route]:
        """The one catch-all route of this group (registered last: the other groups' paths come first)."""
        return [Route("/{vertical}/{rest:path}", self.data, methods=["GET", "HEAD", *WRITE_METHODS])]

    # -- data routes (/wms/...) ----------------------------------------------------------------------
    async def data(self, request: Request) -> Response:
        """Every ``/{vertical}/...`` request: auth, rate limit, latency, then the read or write."""
        vertical = request.path_params["vertical"]
        if vertical not in VERTICALS:
            return not_found(request, "Not Found")
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        conn = self.sb.token_connection(request)
        if isinstance(conn, Response):
            return conn
        is_write = request.method in WRITE_METHODS
        verdict = self.sb.limits.arrived(fingerprint(conn.token), "write" if is_write else "read")
        headers = verdict.headers() if verdict else {}
        if verdict and not verdict.allowed:
            return error(429, "429 Too Many Requests", headers=headers)
        conn.times_used += 1
        conn.last_used = utc_now_iso()
        segments = [s for s in request.path_params["rest"].split("/") if s]
        if is_write:
            response = await self._write(request, conn, vertical, segments)
        else:
            response = await self._read(request, conn, vertical, segments)
        for k, v in headers.items():
            response.headers.setdefault(k, v)
        return response

    async def _latency(self) -> None:
        """The simulated WMS round trip (after auth, rate limit and idempotency checks; replays skip it)."""
        delay = self.sb.faults.delay()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _fault_response(self, decision: FaultDecision, request: Request) -> Response:
        """What an injected fault answers: 429, a 5xx, a hang then 504, or no answer at all (drop)."""
        kind = decision.kind
        if kind == "429":
            retry = str(self.sb.faults.config.retry_after_s)
            return error(429, "429 Too Many Requests", headers={"retry-after": retry})
        if kind == "hang":
            stopping = self.sb.stopping or asyncio.Event()
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.sb.faults.config.hang_s)
            return error(504, "Gateway Timeout: the integration did not answer in time.")
        if kind == "drop":
            await self._drop(request)
            return NoResponse()
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return error(decision.status, reason.get(decision.status, "Server Error"))

    async def _drop(self, request: Request) -> None:
        """Close the client's TCP connection without an HTTP answer (uvicorn's transport, found by peer address)."""
        client = request.scope.get("client")
        server = self.sb.uvicorn_server
        if server is None or client is None:
            raise RuntimeError(
                "drop fault needs the uvicorn server (run via trackstar_dagster.sandbox.server)"
            )
        for proto in list(server.server_state.connections):
            if getattr(proto, "client", None) and tuple(proto.client) == tuple(client):
                proto.transport.abort()
                break
        for _ in range(3):
            await asyncio.sleep(0)  # let connection_lost run so uvicorn sees the disconnect

    def _readable(self, conn: Connection, vertical: str, resource: str) -> bool:
        """Whether the integration can list this resource: in its actions, or a path of its document."""
        entry = self.sb.catalog_entry(conn.integration_type, conn.integration_name) or {}
        if f"get_{resource.replace('-', '_')}" in entry.get("available_actions", []) or resource == "orders":
            return True
        doc = self.sb.connection_doc(conn) or {}
        prefix = f"/{vertical}/{resource}"
        return any(p == prefix or p.startswith(prefix + "/") for p in doc.get("paths", {}))

    async def _read(self, request: Request, conn: Connection, vertical: str, segments: list[str]) -> Response:
        """``GET /{vertical}/{resource}[/{id}]``: 501 when the integration lacks it, then latency and faults."""
        if request.method not in ("GET", "HEAD") or not segments or len(segments) > 2:
            return not_found(request, "Not Found")
        resource = segments[0]
        if not self._readable(conn, vertical, resource):
            action = f"get_{resource.replace('-', '_')}"
            return error(
                501, f"Endpoint {action} is not implemented for {self.sb.display_name(conn.integration_name)}"
            )
        await self._latency()
        decision = self.sb.faults.decide(False)
        if decision.kind:
            return await self._fault_response(decision, request)
        if len(segments) == 2:
            record = self.sb.store.get(conn.connection_id, resource, segments[1])
            if record is None:
                return not_found(request, f"{resource} {segments[1]} not found.")
            return JSONResponse({"data": self.sb.view(resource, record)})
        return self._list(request, conn, resource)

    def _list(self, request: Request, conn: Connection, resource: str) -> Response:
        """A page of a connection's records after ``ids[in]`` or the ``field[op]`` filters (422 for bad ones)."""
        records = [self.sb.view(resource, r) for r in self.sb.store.list(conn.connection_id, resource)]
        params = request.query_params
        problems: dict[str, list[str]] = {}
        try:
            limit = parse_limit(params.get("limit"))
        except ValueError:
            problems["limit"] = ["Must be an integer between 1 and 1000."]
            limit = MAX_LIMIT
        ids = params.get("ids[in]")
        if ids is not None:
            wanted = set(ids.split(","))
            if len(wanted) > 100:
                problems["ids[in]"] = ["At most 100 values in an [in]/[nin] filter."]
            records = [r for r in records if r.get("id") in wanted]
        else:
            preds: list[Predicate] = []
            for key, value in params.multi_items():
                if key in ("limit", "page_token"):
                    continue
                m = FILTER_RE.match(key)
                if not m:
                    problems[key] = ["Unknown query parameter."]
                    continue
                try:
                    preds.append(build_filter(m.group(1), m.group(2) or "eq", value))
                except ValueError as exc:
                    problems[key] = [str(exc)]
            records = [r for r in records if all(p(r) for p in preds)]
        if problems:
            return validation_error(problems, "query")
        try:
            page = paginate(
                records, [self.sb.store.seq.get(r["id"], 0) for r in records], limit, params.get("page_token")
            )
        except (ValueError, KeyError, TypeError):
            return validation_error({"page_token": ["Invalid page_token."]}, "query")
        return JSONResponse(page)

    async def _write(
        self, request: Request, conn: Connection, vertical: str, segments: list[str]
    ) -> Response:
        """A create/update/cancel: resolve the operation, read the body, then the Idempotency-Key around the write."""
        if not segments or len(segments) > 3:
            return not_found(request, "Not Found")
        resource = segments[0]
        template = f"/{vertical}/{resource}" + ("/{id}" if len(segments) > 1 else "")
        template += f"/{segments[2]}" if len(segments) > 2 else ""
        action = action_for(request.method, template)
        display = self.sb.display_name(conn.integration_name)
        doc = self.sb.connection_doc(conn)
        if doc is None:
            return error(501, f"Endpoint {action} is not implemented for {display}")
        concrete = "/" + "/".join([vertical, *segments])
        op = next(
            (
                o
                for o in operations(doc)
                if o.method == request.method
                and re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", o.path), concrete)
            ),
            None,
        )
        is_cancel = (
            op is None
            and request.method == "PUT"
            and len(segments) == 3
            and segments[2] == "cancel"
            and any(o.path == f"/{vertical}/{resource}" for o in operations(doc))
        )
        if op is not None:
            action = op.action
        elif not is_cancel:
            if resource not in KNOWN_RESOURCES:
                return not_found(request, "Not Found")
            return error(501, f"Endpoint {action} is not implemented for {display}")
        if action in conn.disabled_actions:
            return error(403, f"{action} is disabled for this connection")
        raw = await read_body(request, MAX_WRITE_BODY)
        if isinstance(raw, Response):
            return raw  # 413
        body: Any = None
        if raw.strip():
            try:
                body = parse_json(raw)
            except ValueError as exc:  # a cancel ignores its body, whatever it is
                if not is_cancel:
                    message = str(exc) if isinstance(exc, JSONTooDeep) else "Invalid JSON body."
                    return validation_error({"_schema": [message]})
        if body is None and not is_cancel:
            return validation_error({"_schema": ["A JSON object body is required."]})

        key = None if self.sb.faults.config.ignore_idempotency_key else request.headers.get("idempotency-key")
        scope = fingerprint(conn.token)
        if key is not None:
            if not key or len(key) > 255:
                return error(400, "Idempotency-Key must be 1 to 255 characters.")
            canon_body = json.dumps(body, sort_keys=True, separators=(",", ":")) if body is not None else ""
            request_hash = hashlib.sha256(f"{request.method} {concrete}\n{canon_body}".encode()).hexdigest()
            entry = self.sb.store.idem_get(scope, key)
            if entry is not None:
                if entry.request_hash != request_hash:
                    return error(400, "Idempotency-Key was already used with a different endpoint or body.")
                if entry.in_flight:
                    return error(409, "A request with this Idempotency-Key is still in progress.")
                return JSONResponse(
                    entry.body, status_code=entry.status, headers={"Idempotent-Replayed": "true"}
                )
            self.sb.store.idem_claim(scope, key, request_hash)
        stored: dict[str, Any] | None = None
        try:
            response, stored = await self._perform_write(
                request, conn, action, resource, segments, body, is_cancel
            )
            return response
        finally:
            if key is not None:
                if stored is not None:
                    # commit-then-fail keeps the key bound to the stored success: a retry replays it.
                    self.sb.store.idem_complete(scope, key, 200, stored)
                else:
                    self.sb.store.idem_release(scope, key)

    async def _perform_write(
        self,
        request: Request,
        conn: Connection,
        action: str,
        resource: str,
        segments: list[str],
        body: Any,
        is_cancel: bool,
    ) -> tuple[Response, dict[str, Any] | None]:
        """Latency, fault, validate, store. Returns (response, success payload when something was stored)."""
        await self._latency()
        decision = self.sb.faults.decide(True)
        if decision.kind in ("429", "5xx", "hang", "drop"):
            return await self._fault_response(decision, request), None
        now = self.sb.now_iso()  # Trackstar's clock (advance_clock moves it)
        record_id = segments[1] if len(segments) > 1 else None
        old = self.sb.store.get(conn.connection_id, resource, record_id) if record_id else None
        if record_id and old is None:
            return not_found(request, f"{resource} {record_id} not found."), None
        if old is not None:  # a write lands on the order as it stands now (its status moved on)
            old = self.sb.view(resource, old)
        if is_cancel:
            assert old is not None
            record = {**old, "status": "cancelled", "updated_date": now, "trackstar_updated_date": now}
        else:
            problems = judge_body(self.sb.validator(conn, action), body)
            if problems:
                return validation_error(problems), None
            if old is not None:
                record = {**old, **body, "id": old["id"], "updated_date": now, "trackstar_updated_date": now}
            else:
                record = {
                    **body,
                    "id": Store.new_id(resource),
                    "created_date": now,
                    "updated_date": now,
                    "trackstar_created_date": now,
                    "trackstar_updated_date": now,
                }
                if resource == "orders":
                    record.setdefault("status", "open")
        self.sb.store.put(conn.connection_id, resource, record)
        payload = {"data": record, "id": record["id"], "unused_fields": []}
        if decision.kind == "commit_then_fail":
            return error(502, "Bad Gateway"), payload
        return JSONResponse(payload), payload
