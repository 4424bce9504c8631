"""The Trackstar API as Python calls, on httpx. No Dagster here, no pandas.

What it takes care of so callers don't have to: the two auth headers, a timeout on every call, typed
errors, retrying reads (429/5xx/transport, honouring the server's wait), per-token client-side rate limits,
the catalog's 1/min limit (cache), pagination, and keeping keys and tokens out of logs, reprs and exception
text. Writes are sent once: their retries are the writer's to decide (it holds the ledger).

This module is the public methods only; the parts with a job of their own live beside it: ``send.py``
(httpx clients, budgets, the one send loop), ``retry.py`` (the server's wait, backoff, retry or raise),
``catalog_cache.py`` (the 1/min catalog cache) and ``endpoints.py`` (paths and response shapes).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from trackstar_dagster.base.redaction import fingerprint, register_secret
from trackstar_dagster.client.catalog_cache import CatalogCache
from trackstar_dagster.client.endpoints import (
    WriteResponse,
    clean_path,
    connection_path,
    data_dict,
    data_list,
    integrations_path,
    next_token,
    one_connection,
    page_params,
    record_path,
    response_body,
    write_info_path,
    write_method,
    write_response,
)
from trackstar_dagster.client.send import LIMIT_WINDOW_S, USER_AGENT, Request, Sender, logger
from trackstar_dagster.client.shared_budget import SlotSource

__all__ = ["LIMIT_WINDOW_S", "PRODUCTION_URL", "USER_AGENT", "TrackstarClient"]

PRODUCTION_URL = "https://production.trackstarhq.com"

#: What a write's body may be: a mapping to encode, or JSON already encoded (the mapping's text, sent as is).
Body = Mapping[str, Any] | bytes | str | None


class TrackstarClient:
    """One client per API key; it serves many connections (the access token is an argument of each call).

    Reads are blocking calls (catalog, write-info, connections, records); the writer's calls are async
    (``awrite``, ``alist_records``); ``write`` is ``awrite`` for scripts. All go through one send loop.
    ``async_transport``: what carries the async calls, ``"aiohttp"`` (``transport.py``, a fraction of the
    CPU per request) or ``"httpcore"`` (httpx's own pool, as before; the benchmark's baseline).
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = PRODUCTION_URL,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        read_rate: float | None = 10.0,
        write_rate: float | None = 50.0,
        catalog_interval: float = 60.0,
        max_connections: int = 150,
        max_wait: float = 120.0,
        slot_source: SlotSource | None = None,
        async_transport: str = "aiohttp",
    ) -> None:
        """``slot_source``: a budget shared with every process using the same tokens (e.g. the ledger's
        database); without it, each process keeps the rates on its own."""
        if not api_key:
            raise ValueError("api_key is required")
        self.base_url = str(base_url).rstrip("/")
        self.catalog_interval = float(catalog_interval or 0.0)
        self._key_fp = fingerprint(api_key)
        self._sender = Sender(
            api_key,
            self.base_url,
            timeout=float(timeout),
            connect_timeout=float(connect_timeout),
            max_retries=max(0, int(max_retries)),
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
            read_rate=read_rate or None,
            write_rate=write_rate or None,
            max_connections=int(max_connections),
            max_wait=float(max_wait),
            slot_source=slot_source,
            async_transport=async_transport,
        )

    def __repr__(self) -> str:
        return f"TrackstarClient(base_url={self.base_url!r})"

    __str__ = __repr__

    @property
    def write_rate(self) -> float | None:
        """Writes per second per access token this client allows itself."""
        return self._sender.write_rate

    @property
    def read_rate(self) -> float | None:
        return self._sender.read_rate

    @property
    def timeout(self) -> float:
        """Seconds a call may take (connecting has its own, shorter, ``connect_timeout``)."""
        return self._sender.timeout

    @property
    def http(self) -> httpx.Client:
        """The sync httpx client (for event hooks; created on first use)."""
        return self._sender.http

    def close(self) -> None:
        """Close the sync client (async clients are closed by ``aclose`` in their own loop)."""
        self._sender.close()

    async def aclose(self) -> None:
        """Close this loop's async clients (and the sync one)."""
        await self._sender.aclose()

    def __enter__(self) -> TrackstarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TrackstarClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _get(
        self,
        path: str,
        *,
        kind: str = "read",
        access_token: str | None = None,
        params: Any = None,
        retries: int | None = None,
    ) -> Any:
        request = Request("GET", path, kind, access_token, params, retries=retries)
        response, _ = self._sender.send(request)
        return response_body(response, "GET", clean_path(path))

    async def _aget(self, path: str, *, access_token: str | None = None, params: Any = None) -> Any:
        response, _ = await self._sender.asend(Request("GET", path, "read", access_token, params))
        return response_body(response, "GET", clean_path(path))

    # -- catalog (1/min per API key: cached) -------------------------------------------------------

    def _catalog(self, path: str) -> list[dict[str, Any]]:
        def fetch(has_stale: bool) -> list[dict[str, Any]]:
            # with an older copy at hand, one attempt only: waiting out a 1/min limit is worse than stale
            return data_list(self._get(path, kind="catalog", retries=0 if has_stale else None))

        return CatalogCache.read((self.base_url, self._key_fp, path), self.catalog_interval, fetch)

    def get_integrations(self, integration_type: str = "wms") -> list[dict[str, Any]]:
        """``GET /integrations/{type}``: every integration of a vertical (cached ``catalog_interval`` s)."""
        return self._catalog(integrations_path(integration_type))

    def get_integration(self, integration_type: str, name: str) -> list[dict[str, Any]]:
        """``GET /integrations/{type}/{name}`` (``data`` is still a list); answered from a fresh copy of the
        whole catalog when there is one, saving a 1/min call."""
        whole = (self.base_url, self._key_fp, integrations_path(integration_type))
        hit, value = CatalogCache.fresh(whole, self.catalog_interval)
        found = [i for i in value if isinstance(i, dict) and i.get("integration_name") == name] if hit else []
        return found or self._catalog(integrations_path(integration_type, name))

    # -- write-info and connections ----------------------------------------------------------------

    def get_write_info(
        self, integration_type: str, integration_name: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The OpenAPI 3.1 document of an integration's writes; with a token, that connection's enums."""
        return self._get(write_info_path(integration_type, integration_name), access_token=access_token)

    def list_connections(self, limit: int = 1000) -> list[dict[str, Any]]:
        """``GET /connections``, all pages."""
        return list(self._pages("/connections", None, None, limit))

    def get_connection_by_id(self, connection_id: str) -> dict[str, Any]:
        """``GET /connections/{connection_id}`` (API key only): ``integration_name``, ``integration_type``, ...

        The way to learn a connection's integration without its token leaving the headers.
        """
        path = connection_path(connection_id)
        return one_connection(self._get(path), path)

    def lookup_connection_by_token(self, access_token: str) -> dict[str, Any]:
        """The connection an access token belongs to, with ``GET /connections?access_token=...``.

        Avoid it where you can: the token is in the URL there, and URLs end up in the access logs of
        proxies and of the server. Our own log lines are redacted (the filter installed on import), other
        machines' are not. Prefer ``get_connection_by_id`` or a configured ``integration_name``.
        """
        register_secret(access_token)
        return one_connection(self._get("/connections", params={"access_token": access_token}))

    # -- records -------------------------------------------------------------------------------------

    def _pages(
        self, path: str, access_token: str | None, filters: Mapping[str, Any] | None, limit: int
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            body = self._get(path, access_token=access_token, params=page_params(filters, limit, token))
            yield from data_list(body)
            token = _next_page(body, path, seen)
            if token is None:
                return

    async def _apages(
        self, path: str, access_token: str | None, filters: Mapping[str, Any] | None, limit: int
    ) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            body = await self._aget(
                path, access_token=access_token, params=page_params(filters, limit, token)
            )
            for item in data_list(body):
                yield item
            token = _next_page(body, path, seen)
            if token is None:
                return

    def iter_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Records of a list endpoint (``/wms/orders``), page after page, filters repeated on each page."""
        return self._pages(clean_path(resource_path), access_token, filters, limit)

    def list_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """All records matching ``filters`` (every page)."""
        return list(self.iter_records(resource_path, access_token, filters, limit))

    async def alist_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """``list_records`` on the running event loop (the writer's look-ups)."""
        return [r async for r in self._apages(clean_path(resource_path), access_token, filters, limit)]

    def get_record(self, resource_path: str, record_id: str, access_token: str) -> dict[str, Any]:
        """One record by Trackstar id (``GET /wms/orders/{id}``)."""
        return data_dict(self._get(record_path(resource_path, record_id), access_token=access_token))

    # -- writes ---------------------------------------------------------------------------------------

    async def awrite(
        self, method: str, path: str, body: Body, access_token: str, idempotency_key: str | None = None
    ) -> WriteResponse:
        """One write (``POST /wms/orders``, ``PUT /wms/orders/{id}``, ...) with an ``Idempotency-Key``, sent once.

        ``body`` as bytes (or text) goes on the wire as it is: the mapping's JSON, byte for byte what was hashed.
        Every failure raises, typed: a 429 with its ``retry_after``; a timeout, 5xx or dropped connection with
        ``outcome_unknown=True`` (look the record up before sending again); a connection refused with
        ``sent=False``. The writer decides what to retry.
        """
        request, key = _write_request(method, path, body, access_token, idempotency_key)
        started = time.monotonic()
        response, attempts = await self._sender.asend(request)
        return write_response(response, attempts, time.monotonic() - started, key)

    def write(
        self, method: str, path: str, body: Body, access_token: str, idempotency_key: str | None = None
    ) -> WriteResponse:
        """``awrite``, blocking (scripts, tests)."""
        request, key = _write_request(method, path, body, access_token, idempotency_key)
        started = time.monotonic()
        response, attempts = self._sender.send(request)
        return write_response(response, attempts, time.monotonic() - started, key)


def _write_request(
    method: str, path: str, body: Body, access_token: str, idempotency_key: str | None
) -> tuple[Request, str]:
    key = idempotency_key or str(uuid.uuid4())
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes):
        return Request(
            write_method(method), path, "write", access_token, content=body, idempotency_key=key
        ), key
    return Request(
        write_method(method), path, "write", access_token, json=dict(body or {}), idempotency_key=key
    ), key


def _next_page(body: Any, path: str, seen: set[str]) -> str | None:
    """The next page's token, or None at the end (or when the server repeats one: a loop, not a page)."""
    token = next_token(body)
    if token is None:
        return None
    if token in seen:
        logger.warning("GET %s: next_token repeated; stopping pagination", path)
        return None
    seen.add(token)
    return token
