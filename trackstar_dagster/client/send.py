"""One request to Trackstar, attempt after attempt: the send loop, written once.

Why a module of its own: sending is plumbing (httpx clients, rate limiters, headers, logging) that the public
calls should not see. The loop itself is ``_attempts``, a generator that holds the whole policy (limit, send,
judge with ``retry.decide``, wait) without doing I/O; ``send`` and ``asend`` only perform what it asks, the
first blocking and the second on the running event loop. So sync reads and the writer's async calls follow
exactly the same rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from trackstar_dagster.base.errors import TrackstarError
from trackstar_dagster.base.redaction import fingerprint, redacted_logger, register_secret
from trackstar_dagster.client.endpoints import clean_path
from trackstar_dagster.client.ratelimit import RateLimiter, RateLimiters
from trackstar_dagster.client.retry import decide, full_jitter_backoff, retry_wait
from trackstar_dagster.client.shared_budget import SharedLimiter, SharedLimiters, SlotSource
from trackstar_dagster.version import __version__

if TYPE_CHECKING:
    from trackstar_dagster.client.transport import AiohttpTransport

__all__ = ["ASYNC_TRANSPORTS", "LIMIT_WINDOW_S", "USER_AGENT", "Request", "Sender"]

logger = redacted_logger("trackstar_dagster.client")

USER_AGENT = f"trackstar-dagster/{__version__}"

# Our 1-second budget window, padded a little so that network jitter does not push a request into the
# server's previous window (Trackstar counts arrivals; we can only count departures). A rare 429 that
# slips through is waited out after its retry-after, so the padding stays small to keep ~99% of the budget.
LIMIT_WINDOW_S = 1.01

# The window of a budget shared by processes. Their slots interleave, so one request that leaves late (up to the
# limiter's ``grace``, 20 ms) or arrives late (a busy host, the network) crowds the next process's slots into
# the server's second: the 60 ms margin absorbs that (measured on a 2-core host at load 16: departures up to
# 10 ms late at p90, arrivals bunched by tens of ms). 94% of the budget stays usable.
SHARED_WINDOW_S = 1.06
#: what carries the async clients' requests: aiohttp's pool (``transport.py``, the default: a fraction of the
#: CPU per request) or httpx's own (httpcore)
ASYNC_TRANSPORTS = ("aiohttp", "httpcore")


@dataclass(frozen=True, slots=True)
class Request:
    """One call as the loop sees it. ``kind`` picks the budget: ``read``, ``write`` or ``catalog`` (none).
    ``content`` is a body already encoded (the mapping's JSON text, sent as it was hashed); ``json`` one to
    encode."""

    method: str
    path: str
    kind: str = "read"
    access_token: str | None = None
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    idempotency_key: str | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class _Send:
    """A step of the loop: take the budget, then send."""

    limiter: RateLimiter | SharedLimiter | None


@dataclass(frozen=True, slots=True)
class _Wait:
    """A step of the loop: wait before the next attempt."""

    seconds: float


_Step = _Send | _Wait
_Answer = httpx.Response | httpx.TransportError | None


class Sender:
    """The httpx clients, budgets and retry settings of one API key, and the loop that uses them.

    Sync sends use one ``httpx.Client``; async sends an ``httpx.AsyncClient`` per (event loop, access token):
    an AsyncClient is bound to the loop it first ran on. Its transport is aiohttp's pool by default
    (``async_transport``), whose cost per request does not grow with open connections as httpcore's does.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
        read_rate: float | None,
        write_rate: float | None,
        max_connections: int,
        max_wait: float,
        slot_source: SlotSource | None = None,
        async_transport: str = "aiohttp",
    ) -> None:
        if async_transport not in ASYNC_TRANSPORTS:
            raise ValueError(f"async_transport must be one of {ASYNC_TRANSPORTS}, not {async_transport!r}")
        self.async_transport = async_transport
        self._api_key = api_key
        self.slot_source = slot_source
        register_secret(api_key)
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.read_rate = read_rate
        self.write_rate = write_rate
        self.max_connections = max_connections
        self.max_wait = max_wait
        self._sync: httpx.Client | None = None
        self._sync_lock = threading.Lock()
        # what httpx would add to every request (its client's headers and content negotiation)
        self._async_headers = [*self._headers.items(), ("Accept-Encoding", "gzip, deflate")]
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AiohttpTransport]] = (
            weakref.WeakKeyDictionary()
        )
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )

    # -- the httpx clients ------------------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        """Every request's headers (the API key among them)."""
        return {"x-trackstar-api-key": self._api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "headers": self._headers,
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
            "limits": httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=self.max_connections
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

    def ahttp(self, access_token: str | None = None) -> httpx.AsyncClient:
        """This event loop's async httpx client for ``access_token``."""
        pools = self._async.setdefault(asyncio.get_running_loop(), {})
        pool_key = fingerprint(access_token) if access_token else ""
        client = pools.get(pool_key)
        if client is None or client.is_closed:
            kwargs = self._client_kwargs()
            if self.async_transport == "aiohttp":
                kwargs["transport"] = self.atransport(access_token)
            client = httpx.AsyncClient(**kwargs)
            pools[pool_key] = client
        return client

    def atransport(self, access_token: str | None = None) -> AiohttpTransport:
        """This event loop's aiohttp pool for ``access_token`` (also the transport of its ``ahttp`` client)."""
        pools = self._aio.setdefault(asyncio.get_running_loop(), {})
        pool_key = fingerprint(access_token) if access_token else ""
        transport = pools.get(pool_key)
        if transport is None:
            from trackstar_dagster.client.transport import AiohttpTransport  # aiohttp: only where async runs

            transport = pools[pool_key] = AiohttpTransport(max_connections=self.max_connections)
        return transport

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close this loop's async clients and the sync one."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for client in (self._async.pop(loop, None) or {}).values():
                await client.aclose()
            for transport in (self._aio.pop(loop, None) or {}).values():
                await transport.aclose()
        self.close()

    # -- the loop ---------------------------------------------------------------------------------------

    def send(self, request: Request) -> tuple[httpx.Response, int]:
        """Send, blocking; returns (response, attempts) or raises a ``TrackstarError``."""
        steps = self._attempts(request)
        client = self.http  # made before the budget is taken: making it can take longer than a slot lasts
        answer: _Answer = None
        try:
            while True:
                step = steps.send(answer)
                answer = None
                if isinstance(step, _Wait):
                    time.sleep(step.seconds)
                    continue
                if step.limiter is not None:
                    step.limiter.acquire()
                try:
                    answer = client.request(
                        request.method.upper(), clean_path(request.path), **self._request_kwargs(request)
                    )
                except httpx.TransportError as e:
                    answer = e
        except StopIteration as done:
            return done.value

    async def asend(self, request: Request) -> tuple[httpx.Response, int]:
        """``send`` on the running event loop."""
        steps = self._attempts(request)
        exchange = self._exchange(request) if self.async_transport == "aiohttp" else self._ahttpx(request)
        answer: _Answer = None
        try:
            while True:
                step = steps.send(answer)
                answer = None
                if isinstance(step, _Wait):
                    await asyncio.sleep(step.seconds)
                    continue
                if step.limiter is not None:
                    await step.limiter.aacquire()
                try:
                    answer = await exchange()
                except httpx.TransportError as e:
                    answer = e
        except StopIteration as done:
            return done.value

    def _exchange(self, request: Request) -> Callable[[], Awaitable[httpx.Response]]:
        """One attempt of ``request`` straight on this loop's aiohttp pool for its token (no httpx client
        around it: see ``AiohttpTransport.exchange``), the request built once for all its attempts."""
        transport = self.atransport(request.access_token)
        url = self.base_url + clean_path(request.path)
        if request.params:
            url = f"{url}?{httpx.QueryParams(request.params)}"
        content = request.content
        headers = [*self._async_headers, *self._request_headers(request).items()]
        if content is None and request.json is not None:
            content = _json_bytes(request.json)
            headers.append(("Content-Type", "application/json"))
        method = request.method.upper()

        def attempt() -> Awaitable[httpx.Response]:
            return transport.exchange(
                method,
                url,
                headers,
                content,
                total=self.timeout,
                connect=self.timeout,
                sock_connect=self.connect_timeout,
            )

        return attempt

    def _ahttpx(self, request: Request) -> Callable[[], Awaitable[httpx.Response]]:
        """One attempt of ``request`` on this loop's httpx client for its token (httpcore's pool)."""
        client = self.ahttp(request.access_token)
        method, path, kwargs = request.method.upper(), clean_path(request.path), self._request_kwargs(request)
        return lambda: client.request(method, path, **kwargs)

    def _attempts(self, request: Request) -> Generator[_Step, _Answer, tuple[httpx.Response, int]]:
        """The policy of one call, without I/O: yields a ``_Send`` (and receives the answer or the transport
        error) or a ``_Wait``; returns (response, attempts) or raises the typed error."""
        method, path = request.method.upper(), clean_path(request.path)
        limiter = self._limiter(request.kind, request.access_token)
        retries = self.max_retries if request.retries is None else request.retries
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            answer = yield _Send(limiter)
            response = answer if isinstance(answer, httpx.Response) else None
            exc = answer if isinstance(answer, httpx.TransportError) else None
            self._log(method, path, attempt, started, response, exc)
            outcome = decide(
                method, path, request.kind == "write", attempt, response, exc, retries, self._wait_for
            )
            if outcome.response is not None:
                return outcome.response, attempt
            error: TrackstarError | None = outcome.error
            assert error is not None
            if outcome.wait is None:
                raise error from exc
            logger.debug(
                "%s %s: retrying in %.2fs after %s", method, path, outcome.wait, type(error).__name__
            )
            yield _Wait(outcome.wait)

    # -- per attempt ------------------------------------------------------------------------------------

    def _request_headers(self, request: Request) -> dict[str, str]:
        headers: dict[str, str] = {}
        if request.access_token:
            register_secret(request.access_token)
            headers["x-trackstar-access-token"] = request.access_token
        if request.idempotency_key:
            headers["Idempotency-Key"] = request.idempotency_key
        if request.content is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def _request_kwargs(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"params": request.params, "headers": self._request_headers(request)}
        if request.content is not None:
            kwargs["content"] = request.content
        elif request.json is not None:
            kwargs["json"] = request.json
        return kwargs

    def _limiter(self, kind: str, access_token: str | None) -> RateLimiter | SharedLimiter | None:
        """The process's limiter of the token; with a ``slot_source``, the budget shared across processes
        (the process's limiter then only caps it)."""
        if kind == "catalog":
            return None
        rate = self.write_rate if kind == "write" else self.read_rate
        token = fingerprint(access_token or self._api_key)
        local = RateLimiters.get(token, kind, rate, window=LIMIT_WINDOW_S)
        if self.slot_source is None:
            return local
        scope = f"{token}@{fingerprint(self.base_url)[:8]}"  # a token's budget is one API's (a sandbox is not production)
        return SharedLimiters.get(self.slot_source, scope, kind, rate, window=SHARED_WINDOW_S, local=local)

    def _wait_for(self, attempt: int, asked: float | None) -> float:
        """The server's wait wins over our backoff (full jitter), capped at ``max_wait``."""
        backoff = lambda n: full_jitter_backoff(n, self.backoff_base, self.backoff_max)  # noqa: E731
        return retry_wait(attempt, asked, backoff, self.max_wait)

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


def _json_bytes(value: Any) -> bytes:
    """A body to encode, as httpx encodes ``json=`` (compact, UTF-8, no NaN)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
