"""The async calls on aiohttp's pool (client/transport.py): every failure typed as the writer's retry logic
expects, timeouts on every call, writes sent once, reads retried, secrets kept out, against real servers."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest

from tests.client.test_client import WMS, Attempts, attempts, free_closed_port, make_client, order
from trackstar_dagster.base.errors import (
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
    TrackstarValidationError,
)
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.client.ratelimit import RateLimiters
from trackstar_dagster.client.transport import errors_of

__all__ = ["attempts"]  # the fixture, shared with test_client


@pytest.fixture(autouse=True)
def _fresh_limiters() -> Iterator[None]:
    RateLimiters.clear()
    yield
    RateLimiters.clear()


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request whole (headers and body), counts it, then does
    what it is told: ``drop`` closes the connection without a byte of answer, ``hang`` never answers."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        with conn:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + body)
            if self.behaviour == "hang":
                self.stop.wait(5)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def raw_client(url: str, **kwargs: Any) -> TrackstarClient:
    kwargs.setdefault("timeout", 1.0)
    return TrackstarClient(
        "key-raw", url, write_rate=None, read_rate=None, backoff_base=0.01, backoff_max=0.02, **kwargs
    )


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_connection_dropped_after_the_body_was_read_is_an_unknown_outcome_sent_once(
    method: str, attempts: Attempts
) -> None:
    """The server got the whole write, then closed without answering: it may have stored it. The error must
    say so (sent, outcome unknown: the writer looks it up before sending again), and the write must not be
    resent quietly (aiohttp resends a PUT on a dropped kept-alive connection unless told not to)."""
    with RawServer("drop") as server:
        client = raw_client(server.url)
        path = "/wms/orders" if method == "POST" else "/wms/orders/ord-1"

        async def main() -> TrackstarTransportError:
            async with client:
                with pytest.raises(TrackstarTransportError) as exc:
                    await client.awrite(method, path, order(1), "tok-raw")
                return exc.value

        err = asyncio.run(main())
    assert err.sent is True and err.outcome_unknown is True
    assert "RemoteProtocolError" in str(err) or "ReadError" in str(err)
    assert len(server.requests) == 1
    assert b"SO-1" in server.requests[0]  # the body did arrive
    assert attempts.count(f"{method} {path} ->") == 1


def test_a_write_that_gets_no_answer_times_out_as_an_unknown_outcome(attempts: Attempts) -> None:
    with RawServer("hang") as server:
        client = raw_client(server.url, timeout=0.3)

        async def main() -> TrackstarTransportError:
            async with client:
                with pytest.raises(TrackstarTransportError) as exc:
                    await client.awrite("POST", "/wms/orders", order(1), "tok-raw")
                return exc.value

        err = asyncio.run(main())
    assert err.sent and err.outcome_unknown and "timeout" in str(err)
    assert "ReadTimeout" in str(err)
    assert len(server.requests) == 1


def test_a_read_that_gets_no_answer_is_retried_then_raised(attempts: Attempts) -> None:
    with RawServer("hang") as server:
        client = raw_client(server.url, timeout=0.2, max_retries=2)

        async def main() -> None:
            async with client:
                with pytest.raises(TrackstarTransportError):
                    await client.alist_records("/wms/orders", "tok-raw")

        asyncio.run(main())
    assert len(server.requests) == 3
    assert attempts.count("GET /wms/orders -> ReadTimeout") == 3


def test_a_refused_connection_is_not_sent() -> None:
    client = raw_client(f"http://127.0.0.1:{free_closed_port()}")

    async def main() -> TrackstarTransportError:
        async with client:
            with pytest.raises(TrackstarTransportError) as exc:
                await client.awrite("POST", "/wms/orders", order(1), "tok-raw")
            return exc.value

    err = asyncio.run(main())
    assert err.sent is False and err.outcome_unknown is False


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), httpx.ReadError),
        (aiohttp.ClientPayloadError("cut off"), httpx.ReadError),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (
            aiohttp.ClientConnectorError(
                SimpleNamespace(ssl=True, host="127.0.0.1", port=1),  # type: ignore[arg-type]
                OSError(111, "refused"),
            ),
            httpx.ConnectError,
        ),
        (
            aiohttp.ClientResponseError(SimpleNamespace(real_url="http://h/"), (), status=400, message="bad"),
            httpx.RemoteProtocolError,
        ),  # type: ignore[arg-type]
    ],
)
def test_every_aiohttp_failure_maps_to_the_httpx_error_that_says_whether_it_was_sent(
    raised: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(httpx.TransportError) as exc, errors_of("POST", "http://127.0.0.1/wms/orders"):
        raise raised
    assert type(exc.value) is expected
    assert exc.value.__cause__ is raised


# -- against the sandbox, on the async calls -------------------------------------------------------------


def test_async_write_and_read_back_on_both_transports(sandbox: Any) -> None:
    async def main(client: TrackstarClient, n: str) -> None:
        async with client:
            body = json.dumps(order(n), separators=(",", ":")).encode()
            created = await client.awrite("POST", "/wms/orders", body, WMS)
            assert created.id and created.status_code in (200, 201)
            found = await client.alist_records("/wms/orders", WMS, {"order_number": f"SO-{n}"})
            assert [r["id"] for r in found] == [created.id]
            assert found[0]["reference_id"] == f"ref-{n}"

    for transport in ("aiohttp", "httpcore"):
        asyncio.run(main(make_client(sandbox, async_transport=transport), f"9-{transport}"))


def test_unknown_transport_is_refused(sandbox: Any) -> None:
    with pytest.raises(ValueError, match="async_transport"):
        make_client(sandbox, async_transport="curl")


def test_async_errors_typed_and_not_retried_for_writes(sandbox: Any, attempts: Attempts) -> None:
    client = make_client(sandbox, max_retries=5)

    async def main() -> None:
        async with client:
            with pytest.raises(TrackstarValidationError) as exc:
                await client.awrite("POST", "/wms/orders", {"order_number": "SO-x"}, WMS)
            assert exc.value.status == 422 and exc.value.field_errors
            sandbox.configure(faults={"commit_then_fail": 1.0})
            with pytest.raises(TrackstarServerError) as server:
                await client.awrite("POST", "/wms/orders", order(2), WMS)
            assert server.value.outcome_unknown
            sandbox.configure(faults={"burst_429": 1, "retry_after_s": 1})
            with pytest.raises(TrackstarRateLimitError) as limited:
                await client.awrite("POST", "/wms/orders", order(3), WMS)
            assert limited.value.retry_after is not None and limited.value.retry_after >= 1.0

    asyncio.run(main())
    assert attempts.count("POST /wms/orders ->") == 3  # one each: writes are the writer's to retry


def test_async_read_waits_out_retry_after(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"burst_429": 1, "retry_after_s": 1, "applies_to": "reads"})
    client = make_client(sandbox, max_retries=2)

    async def main() -> float:
        async with client:
            started = asyncio.get_running_loop().time()
            await client.alist_records("/wms/orders", WMS)
            return asyncio.get_running_loop().time() - started

    waited = asyncio.run(main())
    assert waited >= 1.0
    assert attempts.count("GET /wms/orders -> 429") == 1 and attempts.count("GET /wms/orders -> 200") == 1


def test_async_dropped_connection_on_the_sandbox(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"drop": 1.0, "applies_to": "all"})
    client = make_client(sandbox, max_retries=2)

    async def main() -> None:
        async with client:
            with pytest.raises(TrackstarTransportError) as exc:
                await client.awrite("POST", "/wms/orders", order(1), WMS)
            assert exc.value.outcome_unknown and exc.value.sent
            with pytest.raises(TrackstarTransportError):
                await client.alist_records("/wms/orders", WMS)

    asyncio.run(main())
    assert attempts.count("POST /wms/orders ->") == 1
    assert attempts.count("GET /wms/orders ->") == 3  # reads are retried


def test_tokens_stay_out_of_async_errors_and_logs(sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_closed_port()
    client = TrackstarClient(
        sandbox.api_key, f"http://127.0.0.1:{port}", write_rate=None, read_rate=None, max_retries=0
    )
    token = "tok-very-private-123456"

    async def main() -> str:
        async with client:
            with pytest.raises(TrackstarTransportError) as exc:
                await client.awrite("POST", "/wms/orders", order(1), token)
            return f"{exc.value} {exc.value!r}"

    text = asyncio.run(main())
    for secret in (token, sandbox.api_key):
        assert secret not in text
        assert secret not in caplog.text
