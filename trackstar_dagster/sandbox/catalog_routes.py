"""The management routes: the integrations catalog, write-info documents, connections, generate-sandbox.

These answer from the sandbox's configuration, not from stored records, and none of them is slowed by the
latency or hit by faults (those are for the WMS round trip of data requests). Only the catalog has a limit,
and only when ``catalog_limit`` is on: 1 call a minute per API key for the list and 1 for one integration.
"""

from __future__ import annotations

import hmac
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trackstar_dagster.base.redaction import fingerprint
from trackstar_dagster.sandbox.core import Sandbox
from trackstar_dagster.sandbox.queries import paginate, parse_limit
from trackstar_dagster.sandbox.ratelimits import Verdict
from trackstar_dagster.sandbox.responses import error, not_found, validation_error
from trackstar_dagster.sandbox.state import SANDBOX_INTEGRATION, Connection, canonical_integration


class CatalogRoutes:
    """``/integrations/...``, ``/connections...`` and ``/sandbox/generate-sandbox`` over one ``Sandbox``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def routes(self) -> list[Route]:
        """The Starlette routes of this group."""
        return [
            Route("/integrations/{integration_type}", self.integrations, methods=["GET"]),
            Route("/integrations/{integration_type}/{integration_name}", self.integration, methods=["GET"]),
            Route(
                "/integrations/{integration_type}/{integration_name}/write-info",
                self.write_info,
                methods=["GET"],
            ),
            Route("/connections", self.list_connections, methods=["GET"]),
            Route("/connections/{connection_id}", self.get_connection, methods=["GET"]),
            Route("/sandbox/generate-sandbox", self.generate_sandbox, methods=["POST"]),
            Route("/sandbox/generate-sandbox/{integration_type}", self.generate_sandbox, methods=["POST"]),
        ]

    def _catalog_verdict(self, which: str) -> Verdict | None:
        """The catalog limit's verdict (``which``: "list" or "one"), None when the limit is off."""
        if not self.sb.catalog_limit:
            return None
        return self.sb.limits.check(f"{fingerprint(self.sb.api_key)}:{which}", "catalog")

    async def integrations(self, request: Request) -> Response:
        """``GET /integrations/{type}``: the catalog of one integration type."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        itype = request.path_params["integration_type"]
        if itype not in self.sb.catalogs:
            return not_found(request, f"Unknown integration type {itype!r}.")
        verdict = self._catalog_verdict("list")
        headers = verdict.headers() if verdict else None
        if verdict and not verdict.allowed:
            return error(429, "429 Too Many Requests", headers=headers)
        return JSONResponse({"data": self.sb.catalogs[itype]}, headers=headers)

    async def integration(self, request: Request) -> Response:
        """``GET /integrations/{type}/{name}``: one catalog entry, as a one-item list."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        itype, name = request.path_params["integration_type"], request.path_params["integration_name"]
        entry = self.sb.catalog_entry(itype, name)
        if entry is None:
            return not_found(request, f"Integration {name} not found for type {itype}.")
        verdict = self._catalog_verdict("one")
        headers = verdict.headers() if verdict else None
        if verdict and not verdict.allowed:
            return error(429, "429 Too Many Requests", headers=headers)
        return JSONResponse({"data": [entry]}, headers=headers)

    async def write_info(self, request: Request) -> Response:
        """``GET .../write-info``: the document, with the connection's enums when an access token is sent."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        itype, name = request.path_params["integration_type"], request.path_params["integration_name"]
        canon = canonical_integration(name)
        if self.sb.catalog_entry(itype, name) is None or canon not in self.sb.docs:
            return not_found(request, f"Integration {name} not found for type {itype}.")
        if request.headers.get("x-trackstar-access-token"):
            conn = self.sb.token_connection(request)
            if isinstance(conn, Response):
                return conn
            if conn.canonical_name != canon or conn.integration_type != itype:
                return error(
                    400, f"The access token's connection is a {conn.integration_name} connection, not {name}."
                )
            return JSONResponse(self.sb.connection_doc(conn))
        return JSONResponse(self.sb.public_doc(canon))

    async def list_connections(self, request: Request) -> Response:
        """``GET /connections``: every connection (or the one of ``access_token``), paginated."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        conns = list(self.sb.connections.values())
        wanted = request.query_params.get("access_token")
        if wanted is not None:
            conns = [c for c in conns if hmac.compare_digest(c.token.encode(), wanted.encode())]
        try:
            limit = parse_limit(request.query_params.get("limit"))
            page = paginate(
                [self.sb.connection_info(c) for c in conns],
                list(range(len(conns))),
                limit,
                request.query_params.get("page_token"),
            )
        except (ValueError, KeyError, TypeError):
            return validation_error({"page_token": ["Invalid limit or page_token."]}, "query")
        return JSONResponse(page)

    async def get_connection(self, request: Request) -> Response:
        """``GET /connections/{id}``."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        cid = request.path_params["connection_id"]
        for conn in self.sb.connections.values():
            if conn.connection_id == cid:
                return JSONResponse(self.sb.connection_info(conn))
        return not_found(request, f"Connection {cid} not found.")

    async def generate_sandbox(self, request: Request) -> Response:
        """``POST /sandbox/generate-sandbox[/wms]``: the wms_sandbox connection (made if missing), emptied."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        itype = request.path_params.get("integration_type", "wms")
        if itype != "wms":
            return not_found(request, f"No {itype} sandbox in this local sandbox (only wms).")
        conn = next(
            (c for c in self.sb.connections.values() if c.canonical_name == SANDBOX_INTEGRATION), None
        )
        if conn is None:
            token = "sandbox-token-wms"
            while token in self.sb.connections:
                token = f"sandbox-token-wms-{uuid.uuid4().hex[:8]}"
            conn = self.sb.connections[token] = Connection.build(token, SANDBOX_INTEGRATION)
        self.sb.store.clear(conn.connection_id, scope=fingerprint(conn.token))
        return JSONResponse(
            {
                "access_token": conn.token,
                "connection_id": conn.connection_id,
                "integration_name": "sandbox",
                "customer_id": conn.customer_id,
                "available_actions": self.sb.available_actions(conn),
                "available_endpoints": [],
            }
        )
