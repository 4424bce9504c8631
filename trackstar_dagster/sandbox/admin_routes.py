"""The admin routes (``/_sandbox/...``): what a test or a subprocess's ``SandboxHandle`` turns over HTTP.

They mirror the ``Sandbox``'s admin operations (``configure``, ``set_write_info``, ``records``, ``reset``)
for a sandbox running in another process, where they cannot be called directly. All but the health check
need the API key; their bodies have their own, larger limit (``MAX_ADMIN_BODY``: a write-info document).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trackstar_dagster.sandbox.core import Sandbox
from trackstar_dagster.sandbox.responses import MAX_ADMIN_BODY, error, parse_json, read_body

#: the ``POST /_sandbox/configure`` fields passed on to ``Sandbox.configure`` (others are ignored)
CONFIGURE_FIELDS = frozenset(
    {"latency", "jitter", "write_rate", "read_rate", "faults", "catalog_limit", "rates"}
)


class AdminRoutes:
    """``/_sandbox/health``, ``configure``, ``write-info/{name}``, ``records/{resource}``, ``arrivals/{kind}``,
    ``reset``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def routes(self) -> list[Route]:
        """The Starlette routes of this group."""
        return [
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/configure", self.configure, methods=["POST"]),
            Route("/_sandbox/write-info/{integration_name}", self.write_info, methods=["PUT"]),
            Route("/_sandbox/records/{resource}", self.records, methods=["GET"]),
            Route("/_sandbox/arrivals/{kind}", self.arrivals, methods=["GET"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/clock", self.clock, methods=["POST"]),
            Route("/_sandbox/progression", self.progression, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        """Up and answering (no key needed: it tells nothing)."""
        return JSONResponse({"ok": True})

    async def configure(self, request: Request) -> Response:
        """Faults, latency, rates, catalog limit; answers the resulting settings (400 on a bad request)."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        raw = await read_body(request, MAX_ADMIN_BODY)
        if isinstance(raw, Response):
            return raw
        try:
            body = parse_json(raw)
            return JSONResponse(self.sb.configure(**{k: v for k, v in body.items() if k in CONFIGURE_FIELDS}))
        except Exception as exc:  # a bad admin call: say why
            return error(400, f"Bad configure request: {exc}")

    async def write_info(self, request: Request) -> Response:
        """Replace an integration's write-info document (schema drift); 400 keeps the previous one."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        raw = await read_body(request, MAX_ADMIN_BODY)
        if isinstance(raw, Response):
            return raw
        try:
            doc = parse_json(raw)
        except ValueError as exc:
            return error(400, f"Bad write-info document: not valid JSON ({exc}).")
        try:
            self.sb.set_write_info(request.path_params["integration_name"], doc)
        except ValueError as exc:  # the previous document stays
            return error(400, str(exc))
        return JSONResponse({"ok": True})

    async def records(self, request: Request) -> Response:
        """The stored records of a resource: of the access token's connection when one is sent, else all."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        token = request.headers.get("x-trackstar-access-token")
        return JSONResponse({"data": self.sb.records(request.path_params["resource"], token)})

    async def arrivals(self, request: Request) -> Response:
        """When the access token's requests of a kind (``write``, ``read``) arrived, and which were refused."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        token = request.headers.get("x-trackstar-access-token") or ""
        log = self.sb.arrivals(token, request.path_params["kind"])
        return JSONResponse({"data": [{"at": t, "admitted": ok} for t, ok in log]})

    async def reset(self, request: Request) -> Response:
        """Forget records, keys and rate windows; restore the shipped documents."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        self.sb.reset()
        return JSONResponse({"ok": True})

    async def clock(self, request: Request) -> Response:
        """``{"advance": seconds}``: move Trackstar's clock on; answers its new time."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        try:
            body = parse_json(await request.body())
            return JSONResponse({"now": self.sb.advance_clock(float(body["advance"]))})
        except Exception as exc:  # a bad admin call: say why
            return error(400, f"Bad clock request: {exc}")

    async def progression(self, request: Request) -> Response:
        """``{"seconds_per_step": s, "steps": [...]}``: how orders move through statuses (0/null: they stay)."""
        if (bad := self.sb.check_key(request)) is not None:
            return bad
        try:
            body = parse_json(await request.body())
            self.sb.set_progression(body.get("seconds_per_step"), body.get("steps"))
        except Exception as exc:  # a bad admin call: say why
            return error(400, f"Bad progression request: {exc}")
        return JSONResponse({"ok": True})
