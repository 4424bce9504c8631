"""HTTP client for the Trackstar API (sync and async), on httpx. No Dagster here.

What it takes care of so callers don't have to: the two auth headers, a timeout on every call, typed
errors, retries that are safe (reads: 429/5xx/transport; writes: only where the request surely did not
take effect), per-token client-side rate limits, the catalog's 1/min limit (cache), pagination, and
keeping keys and tokens out of logs, reprs and exception text.

This module is the plumbing and the public methods; the parts with a job of their own live beside it:
``redaction.py`` (secrets out of logs), ``retry_policy.py`` (the server's wait, backoff, retry or raise),
``catalog_cache.py`` (the 1/min catalog cache) and ``api_shapes.py`` (response shapes and paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx

from trackstar_dagster.base.errors import (
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
)
from trackstar_dagster.base.secrets import _register_secret, fingerprint
from trackstar_dagster.client.catalog_cache import _CatalogCache
from trackstar_dagster.client.endpoints import (
    WriteResponse,
    _body,
    _clean_path,
    _connection_path,
    _data_dict,
    _data_list,
    _integrations_path,
    _next_token,
    _one_connection,
    _page_params,
    _record_path,
    _write_info_path,
    _write_method,
    _write_response,
)
from trackstar_dagster.client.ratelimit import RateLimiter, RateLimiters
from trackstar_dagster.client.retry import decide, full_jitter_backoff, retry_wait
from trackstar_dagster.version import __version__

__all__ = ["LIMIT_WINDOW_S", "PRODUCTION_URL", "USER_AGENT", "TrackstarClient"]

PRODUCTION_URL = "https://production.trackstarhq.com"
USER_AGENT = f"trackstar-dagster/{__version__}"

logger = logging.getLogger(__name__)

# Our 1-second budget window, padded a little so that network jitter does not push a request into the
# server's previous window (Trackstar counts arrivals; we can only count departures). A rare 429 that
# slips through is retried after its retry-after, so the padding stays small to keep ~99% of the budget.
LIMIT_WINDOW_S = 1.01


# ---------------------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------------------


class TrackstarClient:
    """One client per API key; it serves many connections (the access token is an argument of each call).

    Sync methods use one ``httpx.Client``; the ``a``-prefixed twins use an ``httpx.AsyncClient`` made
    lazily per event loop (an AsyncClient is bound to the loop it first ran on).
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
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self._api_key = api_key
        _register_secret(api_key)
        self.base_url = str(base_url).rstrip("/")
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.read_rate = read_rate or None
        self.write_rate = write_rate or None
        self.catalog_interval = float(catalog_interval or 0.0)
        self.max_connections = int(max_connections)
        self.max_wait = float(max_wait)
        self._key_fp = fingerprint(api_key)
        self._sync: httpx.Client | None = None
        self._sync_lock = threading.Lock()
        # one connection pool per (event loop, access token): httpx's pool does work that grows with the
        # square of its connections, so a pool per token keeps several busy connections fast
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"TrackstarClient(base_url={self.base_url!r})"

    __str__ = __repr__

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": {
                "x-trackstar-api-key": self._api_key,
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
            "follow_redirects": False,
        }

    @property
    def http(self) -> httpx.Client:
        """The sync httpx client (created on first use)."""
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    self._sync = httpx.Client(**self._client_kwargs())
        return self._sync

    def _ahttp(self, access_token: str | None = None) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        pools = self._async.setdefault(loop, {})
        pool_key = fingerprint(access_token) if access_token else ""
        client = pools.get(pool_key)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(**self._client_kwargs())
            pools[pool_key] = client
        return client

    def close(self) -> None:
        """Close the sync client (async clients are closed by ``aclose`` in their own loop)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close this loop's async clients (and the sync one)."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for client in (self._async.pop(loop, None) or {}).values():
                await client.aclose()
        self.close()

    def __enter__(self) -> TrackstarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TrackstarClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one request, with the retry policy --------------------------------------------------------

    def _limiter(self, kind: str, access_token: str | None) -> RateLimiter | None:
        if kind == "catalog":
            return None
        rate = self.write_rate if kind == "write" else self.read_rate
        secret = access_token or self._api_key
        return RateLimiters.get(fingerprint(secret), kind, rate, window=LIMIT_WINDOW_S)

    def _headers(self, access_token: str | None, idempotency_key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if access_token:
            _register_secret(access_token)
            headers["x-trackstar-access-token"] = access_token
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
        return full_jitter_backoff(attempt, self.backoff_base, self.backoff_max)

    def _retry_wait(self, attempt: int, asked: float | None) -> float:
        """The server's wait wins over our backoff (plus a little jitter so tasks don't stampede)."""
        return retry_wait(attempt, asked, self._backoff, self.max_wait)

    def _log(
        self,
        method: str,
        path: str,
        attempt: int,
        started: float,
        response: httpx.Response | None,
        exc: Exception | None,
    ) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        elapsed = time.monotonic() - started
        if response is not None:
            logger.debug(
                "%s %s -> %s request_id=%s elapsed=%.3fs attempt=%d",
                method,
                path,
                response.status_code,
                response.headers.get("x-request-id"),
                elapsed,
                attempt,
            )
        else:
            logger.debug(
                "%s %s -> %s elapsed=%.3fs attempt=%d", method, path, type(exc).__name__, elapsed, attempt
            )

    def _after_attempt(
        self,
        method: str,
        path: str,
        is_write: bool,
        attempt: int,
        started: float,
        response: httpx.Response | None,
        exc: httpx.TransportError | None,
        retries: int | None,
    ) -> float | None:
        """Log one attempt and judge it: None when ``response`` is the answer, else the seconds to wait before
        the next attempt; raises the typed error when there is none (shared by ``_send`` and ``_asend``)."""
        self._log(method, path, attempt, started, response, exc)
        retries = self.max_retries if retries is None else retries
        outcome = decide(method, path, is_write, attempt, response, exc, retries, self._retry_wait)
        if outcome.response is not None:
            return None
        assert outcome.error is not None
        if outcome.wait is None:
            raise outcome.error from exc
        logger.debug("%s %s: retrying in %.2fs after %s", method, path, outcome.wait, type(outcome.error).__name__)
        return outcome.wait

    def _send(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        access_token: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        retries: int | None = None,
    ) -> tuple[httpx.Response, int]:
        """Send with retries; returns (response, attempts) or raises a TrackstarError."""
        method = method.upper()
        path = _clean_path(path)
        headers = self._headers(access_token, idempotency_key)
        limiter = self._limiter(kind, access_token)
        is_write = kind == "write"
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:
                limiter.acquire()
            started = time.monotonic()
            response = exc = None
            try:
                response = self.http.request(method, path, params=params, json=json, headers=headers)
            except httpx.TransportError as e:
                exc = e
            wait = self._after_attempt(method, path, is_write, attempt, started, response, exc, retries)
            if wait is None:
                return response, attempt
            time.sleep(wait)

    async def _asend(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        access_token: str | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        retries: int | None = None,
    ) -> tuple[httpx.Response, int]:
        """Async twin of ``_send``."""
        method = method.upper()
        path = _clean_path(path)
        headers = self._headers(access_token, idempotency_key)
        limiter = self._limiter(kind, access_token)
        is_write = kind == "write"
        client = self._ahttp(access_token)
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:
                await limiter.aacquire()
            started = time.monotonic()
            response = exc = None
            try:
                response = await client.request(method, path, params=params, json=json, headers=headers)
            except httpx.TransportError as e:
                exc = e
            wait = self._after_attempt(method, path, is_write, attempt, started, response, exc, retries)
            if wait is None:
                return response, attempt
            await asyncio.sleep(wait)

    def _get(
        self,
        path: str,
        *,
        kind: str = "read",
        access_token: str | None = None,
        params: Any = None,
        retries: int | None = None,
    ) -> Any:
        response, _ = self._send(
            "GET", path, kind=kind, access_token=access_token, params=params, retries=retries
        )
        return _body(response, "GET", _clean_path(path))

    async def _aget(
        self,
        path: str,
        *,
        kind: str = "read",
        access_token: str | None = None,
        params: Any = None,
        retries: int | None = None,
    ) -> Any:
        response, _ = await self._asend(
            "GET", path, kind=kind, access_token=access_token, params=params, retries=retries
        )
        return _body(response, "GET", _clean_path(path))

    # -- catalog (1/min per API key: cached) -------------------------------------------------------

    def _catalog_key(self, path: str) -> tuple[str, str, str]:
        return (self.base_url, self._key_fp, path)

    def _catalog(self, path: str) -> list[dict[str, Any]]:
        key = self._catalog_key(path)
        hit, value = _CatalogCache.fresh(key, self.catalog_interval)
        if hit:
            return value
        with _CatalogCache.sync_lock(key):
            hit, value = _CatalogCache.fresh(key, self.catalog_interval)
            if hit:
                return value
            has_stale, stale = _CatalogCache.stale(key)
            try:
                # with an older copy at hand, one attempt only: waiting out a 1/min limit is worse than stale
                body = self._get(path, kind="catalog", retries=0 if has_stale else None)
            except (TrackstarRateLimitError, TrackstarServerError, TrackstarTransportError) as exc:
                if has_stale:
                    logger.warning(
                        "catalog %s: %s; answering from an older cached copy", path, type(exc).__name__
                    )
                    return stale
                raise
            data = _data_list(body)
            _CatalogCache.store(key, data)
            return copy.deepcopy(data)

    async def _acatalog(self, path: str) -> list[dict[str, Any]]:
        """The catalog from async code: the sync path in a worker thread (rare, cached calls; one cache)."""
        return await asyncio.to_thread(self._catalog, path)

    def _from_full_catalog(self, integration_type: str, name: str) -> list[dict[str, Any]] | None:
        """Answer ``get_integration`` from a fresh copy of the whole catalog, saving a 1/min call."""
        hit, value = _CatalogCache.fresh(
            self._catalog_key(_integrations_path(integration_type)), self.catalog_interval
        )
        if not hit:
            return None
        return [i for i in value if isinstance(i, dict) and i.get("integration_name") == name]

    def get_integrations(self, integration_type: str = "wms") -> list[dict[str, Any]]:
        """``GET /integrations/{type}``: every integration of a vertical (cached ``catalog_interval`` s)."""
        return self._catalog(_integrations_path(integration_type))

    async def aget_integrations(self, integration_type: str = "wms") -> list[dict[str, Any]]:
        return await self._acatalog(_integrations_path(integration_type))

    def get_integration(self, integration_type: str, name: str) -> list[dict[str, Any]]:
        """``GET /integrations/{type}/{name}`` (``data`` is still a list); cached like the catalog."""
        found = self._from_full_catalog(integration_type, name)
        if found:
            return found
        return self._catalog(_integrations_path(integration_type, name))

    async def aget_integration(self, integration_type: str, name: str) -> list[dict[str, Any]]:
        found = self._from_full_catalog(integration_type, name)
        if found:
            return found
        return await self._acatalog(_integrations_path(integration_type, name))

    # -- write-info and connections ----------------------------------------------------------------

    def get_write_info(
        self, integration_type: str, integration_name: str, access_token: str | None = None
    ) -> dict[str, Any]:
        """The OpenAPI 3.1 document of an integration's writes; with a token, that connection's enums."""
        return self._get(_write_info_path(integration_type, integration_name), access_token=access_token)

    async def aget_write_info(
        self, integration_type: str, integration_name: str, access_token: str | None = None
    ) -> dict[str, Any]:
        return await self._aget(
            _write_info_path(integration_type, integration_name), access_token=access_token
        )

    def list_connections(self, limit: int = 1000) -> list[dict[str, Any]]:
        """``GET /connections``, all pages."""
        return list(self._iter_pages("/connections", None, None, limit))

    async def alist_connections(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [c async for c in self._aiter_pages("/connections", None, None, limit)]

    def get_connection_by_id(self, connection_id: str) -> dict[str, Any]:
        """``GET /connections/{connection_id}`` (API key only): ``integration_name``, ``integration_type``, ...

        The way to learn a connection's integration without its token leaving the headers.
        """
        path = _connection_path(connection_id)
        return _one_connection(self._get(path), path)

    async def aget_connection_by_id(self, connection_id: str) -> dict[str, Any]:
        path = _connection_path(connection_id)
        return _one_connection(await self._aget(path), path)

    def lookup_connection_by_token(self, access_token: str) -> dict[str, Any]:
        """The connection an access token belongs to, with ``GET /connections?access_token=...``.

        Avoid it where you can: the token is in the URL there, and URLs end up in the access logs of
        proxies and of the server. Our own log lines are redacted (the filter installed on import), other
        machines' are not. Prefer ``get_connection_by_id`` or a configured ``integration_name``.
        """
        _register_secret(access_token)
        return _one_connection(self._get("/connections", params={"access_token": access_token}))

    async def alookup_connection_by_token(self, access_token: str) -> dict[str, Any]:
        _register_secret(access_token)
        return _one_connection(await self._aget("/connections", params={"access_token": access_token}))

    # -- records -------------------------------------------------------------------------------------

    def _iter_pages(
        self, path: str, access_token: str | None, filters: Mapping[str, Any] | None, limit: int
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            body = self._get(path, access_token=access_token, params=_page_params(filters, limit, token))
            yield from _data_list(body)
            token = _next_token(body)
            if not token:
                return
            if token in seen:
                logger.warning("GET %s: next_token repeated; stopping pagination", path)
                return
            seen.add(token)

    async def _aiter_pages(
        self, path: str, access_token: str | None, filters: Mapping[str, Any] | None, limit: int
    ) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            body = await self._aget(
                path, access_token=access_token, params=_page_params(filters, limit, token)
            )
            for item in _data_list(body):
                yield item
            token = _next_token(body)
            if not token:
                return
            if token in seen:
                logger.warning("GET %s: next_token repeated; stopping pagination", path)
                return
            seen.add(token)

    def iter_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Records of a list endpoint (``/wms/orders``), page after page, filters repeated on each page."""
        return self._iter_pages(_clean_path(resource_path), access_token, filters, limit)

    def aiter_records(
        self,
        resource_path: str,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[dict[str, Any]]:
        return self._aiter_pages(_clean_path(resource_path), access_token, filters, limit)

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
        return [r async for r in self.aiter_records(resource_path, access_token, filters, limit)]

    def get_record(self, resource_path: str, record_id: str, access_token: str) -> dict[str, Any]:
        """One record by Trackstar id (``GET /wms/orders/{id}``)."""
        body = self._get(_record_path(resource_path, record_id), access_token=access_token)
        return _data_dict(body)

    async def aget_record(self, resource_path: str, record_id: str, access_token: str) -> dict[str, Any]:
        body = await self._aget(_record_path(resource_path, record_id), access_token=access_token)
        return _data_dict(body)

    # -- writes ---------------------------------------------------------------------------------------

    def write(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        access_token: str,
        idempotency_key: str | None = None,
    ) -> WriteResponse:
        """One write (``POST /wms/orders``, ``PUT /wms/orders/{id}``, ...) with an ``Idempotency-Key``.

        Retried only on 429 and on a connection refused before sending. A timeout, 5xx or dropped
        connection raises with ``outcome_unknown=True``: reconcile before sending again.
        """
        method = _write_method(method)
        key = idempotency_key or str(uuid.uuid4())
        started = time.monotonic()
        response, attempts = self._send(
            method, path, kind="write", access_token=access_token, json=dict(body or {}), idempotency_key=key
        )
        return _write_response(response, attempts, time.monotonic() - started, key)

    async def awrite(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        access_token: str,
        idempotency_key: str | None = None,
    ) -> WriteResponse:
        method = _write_method(method)
        key = idempotency_key or str(uuid.uuid4())
        started = time.monotonic()
        response, attempts = await self._asend(
            method, path, kind="write", access_token=access_token, json=dict(body or {}), idempotency_key=key
        )
        return _write_response(response, attempts, time.monotonic() - started, key)

