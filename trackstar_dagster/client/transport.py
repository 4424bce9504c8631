"""The async clients' HTTP transport: httpx's API on aiohttp's connection pool.

Why: httpcore's async pool does work per request that grows with its open connections (every request event
walks every connection) and, without ``sniffio`` installed, retries a failed import on every lock it makes;
at 8 tokens x 25 writes in flight that was ~5 ms of CPU per write, so one process could not keep 8 tokens at
their limit. aiohttp's pool does the same job in a fraction of that. httpx stays the API (requests, headers,
timeouts, ``httpx.Response``), only the bytes travel through aiohttp.

Why our own and not the ``httpx-aiohttp`` package: its error mapping turns a dropped connection
(``ServerDisconnectedError``, after the request was sent) into ``httpx.ConnectTimeout``, which reads as
"nothing was sent"; a write whose outcome is unknown would then be retried as if it surely left nothing.
Here every aiohttp failure maps to the httpx error that says what happened to the request (``errors_of``):
only a failure while connecting is "not sent".

Timeouts: every request has a connect timeout (waiting for a pool slot plus opening the socket, httpx's
``pool``/``connect``) and a total timeout (httpx's ``read``: the whole exchange may take no longer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

__all__ = ["AiohttpTransport", "errors_of"]

#: the keep-alive time of idle connections: httpx's default, below common servers' (uvicorn's 5 s, nginx's 75 s),
#: so that we close an idle connection before the server does (a request on a connection the server is closing
#: is a dropped connection, an unknown outcome for a write)
KEEPALIVE_S = 4.0


@contextlib.contextmanager
def errors_of(method: str, url: str) -> Iterator[None]:
    """aiohttp's failures as the httpx errors the retry policy judges (``retry.decide``).

    Not sent (safe to retry): ``ConnectTimeout`` (no pool slot or no socket in time), ``ConnectError``
    (refused, DNS, TLS handshake). Everything after the socket was open may have reached the server: a
    timeout is ``ReadTimeout``; a dropped or reset connection ``RemoteProtocolError`` / ``ReadError``."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as e:  # before a byte left: waiting for a slot or the socket
        raise httpx.ConnectTimeout(str(e) or "connect timeout", request=httpx.Request(method, url)) from e
    except aiohttp.ClientConnectorError as e:  # refused, unreachable, DNS, TLS: nothing sent
        raise httpx.ConnectError(_said(e), request=httpx.Request(method, url)) from e
    except (aiohttp.ServerTimeoutError, TimeoutError) as e:  # the answer did not come in time
        raise httpx.ReadTimeout(str(e) or "timed out", request=httpx.Request(method, url)) from e
    except aiohttp.ServerDisconnectedError as e:  # closed without (a whole) answer
        raise httpx.RemoteProtocolError(_said(e), request=httpx.Request(method, url)) from e
    except (aiohttp.ClientOSError, aiohttp.ClientPayloadError) as e:  # reset, broken pipe, cut-off body
        raise httpx.ReadError(_said(e), request=httpx.Request(method, url)) from e
    except aiohttp.InvalidURL as e:
        raise httpx.UnsupportedProtocol(_said(e), request=httpx.Request(method, url)) from e
    except aiohttp.ClientError as e:  # a malformed answer, anything else: it may have been sent
        raise httpx.RemoteProtocolError(_said(e), request=httpx.Request(method, url)) from e


def _said(e: Exception) -> str:
    return str(e) or type(e).__name__


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport over one ``aiohttp.ClientSession`` (made on first use, on the
    running loop). Responses are read whole (Trackstar's answers are small JSON documents)."""

    def __init__(self, *, max_connections: int, verify: ssl.SSLContext | bool = True) -> None:
        self.max_connections = max(1, int(max_connections))
        self._ssl: ssl.SSLContext | bool = default_ssl_context() if verify is True else verify
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str | None, int | None], tuple[URL | None, Any]] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, keepalive_timeout=KEEPALIVE_S, ssl=self._ssl
        )
        # no cookies kept (httpx's client has its own); proxies from the environment, as httpx finds them, but
        # looked up once per origin (aiohttp's trust_env reads the environment and ~/.netrc on every request)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx decodes per content-encoding, as with its own transport
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )
        # aiohttp resends a PUT/GET once when a kept-alive connection drops; a write is sent once (the writer
        # decides every retry: it holds the ledger), so that quiet resend is switched off (no public knob)
        self._session._retry_connection = False
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport interface (an ``httpx.AsyncClient(transport=...)``)."""
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = await request.aread()
        return await self.exchange(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            content or None,
            total=timeouts.get("read"),
            connect=_sum(timeouts.get("pool"), timeouts.get("connect")),
            sock_connect=timeouts.get("connect"),
        )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        *,
        total: float | None,
        connect: float | None,
        sock_connect: float | None = None,
    ) -> httpx.Response:
        """One request, its answer read whole. ``url`` is already encoded (httpx's form); ``total`` bounds
        the whole exchange, ``connect`` the wait for a pool slot and a socket, ``sock_connect`` the socket.
        The Sender calls this directly: an ``httpx.AsyncClient`` around it costs more CPU than the request
        (building the request twice, a cookie jar walk per answer)."""
        session = self._session if self._session is not None else self._open()
        target = URL(url, encoded=True)
        proxy, proxy_auth = self._proxy_for(target)
        timeout = aiohttp.ClientTimeout(total=total, connect=connect, sock_connect=sock_connect)
        with errors_of(method, url):
            async with session.request(
                method,
                target,
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as answer:
                body = await answer.read()
                status, raw, reason = answer.status, answer.raw_headers, answer.reason
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("ascii", "replace")
        return httpx.Response(status, headers=list(raw), content=body, extensions=extensions)

    def _proxy_for(self, url: URL) -> tuple[URL | None, Any]:
        """The environment's proxy for this origin (``HTTPS_PROXY``, ``NO_PROXY``, ...), looked up once."""
        origin = (url.scheme, url.host, url.port)
        found = self._proxies.get(origin)
        if found is None:
            try:
                found = get_env_proxy_for_url(url)
            except LookupError:
                found = (None, None)
            self._proxies[origin] = found
        return found

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            await asyncio.sleep(0)  # let the connector's transports close on this loop


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (its CA bundle), made once: ~20 ms of CPU each, and a writer opens a pool
    per token, hundreds of them for hundreds of connections."""
    return httpx.create_ssl_context()


def _sum(*parts: float | None) -> float | None:
    """Two timeouts one after the other; None (no limit) if either is."""
    if any(p is None for p in parts):
        return None
    return float(sum(p for p in parts if p is not None))
