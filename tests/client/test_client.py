"""TrackstarClient against the local sandbox over real HTTP: errors, retries, writes, pages, limits, secrets."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.client.test_ratelimit import max_in_window
from trackstar_dagster.base.errors import (
    TrackstarAuthError,
    TrackstarBadRequestError,
    TrackstarConflictError,
    TrackstarError,
    TrackstarNotFoundError,
    TrackstarNotImplementedError,
    TrackstarRateLimitError,
    TrackstarServerError,
    TrackstarTransportError,
    TrackstarValidationError,
)
from trackstar_dagster.base.redaction import redact
from trackstar_dagster.client import PRODUCTION_URL, TrackstarClient, WriteResponse, clear_catalog_cache
from trackstar_dagster.client.ratelimit import RateLimiter, RateLimiters
from trackstar_dagster.client.retry import full_jitter_backoff

WMS = "sandbox-token-wms"
ORDER: dict[str, Any] = {
    "order_number": "SO-1",
    "reference_id": "ref-1",
    "ship_to_address": {
        "address1": "1 Main St",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78701",
        "country": "US",
    },
    "line_items": [{"product_id": "prod-1", "quantity": 2}],
}


def order(n: int | str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ORDER)
    body.update(order_number=f"SO-{n}", reference_id=f"ref-{n}", **changes)
    return body


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    RateLimiters.clear()
    clear_catalog_cache()
    yield
    RateLimiters.clear()
    clear_catalog_cache()


def make_client(sb: Any, **kwargs: Any) -> TrackstarClient:
    """Fast defaults for tests: short timeouts and backoff, client-side limits off unless asked."""
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("connect_timeout", 1.0)
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    kwargs.setdefault("read_rate", None)
    kwargs.setdefault("write_rate", None)
    return TrackstarClient(kwargs.pop("api_key", sb.api_key), sb.base_url, **kwargs)


def free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Attempts(logging.Handler):
    """Counts the client's per-attempt DEBUG lines (``GET /path -> status``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "->" in record.getMessage():
            self.lines.append(record.getMessage())

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)


@pytest.fixture
def attempts() -> Iterator[Attempts]:
    handler = Attempts()
    log = logging.getLogger("trackstar_dagster.client")
    old = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old)


# -- basics ------------------------------------------------------------------------------------------------


def test_catalog_write_info_connections(sandbox: Any) -> None:
    with make_client(sandbox) as client:
        catalog = client.get_integrations("wms")
        assert len(catalog) == 20
        names = {i["integration_name"] for i in catalog}
        assert {"shipbob", "shiphero", "wms_sandbox"} <= names
        assert client.get_integration("wms", "shipbob")[0]["integration_name"] == "shipbob"
        doc = client.get_write_info("wms", "wms_sandbox")
        assert "/wms/orders" in doc["paths"]
        conns = client.list_connections()
        assert {c["integration_name"] for c in conns} == {"wms_sandbox", "shiphero", "shipbob"}
        conn = client.lookup_connection_by_token("sandbox-token-shipbob")
        assert conn["integration_name"] == "shipbob" and conn["integration_type"] == "wms"
        assert conn["connection_id"]
        by_id = client.get_connection_by_id(conn["connection_id"])
        assert by_id["integration_name"] == "shipbob" and by_id["connection_id"] == conn["connection_id"]
        with pytest.raises(TrackstarNotFoundError):
            client.get_connection_by_id("conn_does_not_exist")


def test_write_then_read_back(sandbox: Any) -> None:
    with make_client(sandbox) as client:
        res = client.write("POST", "/wms/orders", order(1), WMS)
        assert isinstance(res, WriteResponse)
        assert res.id and res.status_code == 200 and res.attempts == 1 and not res.replayed
        assert res.data is not None and res.data["order_number"] == "SO-1"
        assert res.unused_fields == [] and res.request_id and res.idempotency_key
        uuid.UUID(res.idempotency_key)  # a uuid4 when the caller gave none
        got = client.get_record("/wms/orders", res.id, WMS)
        assert got["id"] == res.id
        upd = client.write("PUT", f"/wms/orders/{res.id}", {"order_number": "SO-1b"}, WMS)
        assert upd.id == res.id
    with pytest.raises(ValueError):
        make_client(sandbox).write("GET", "/wms/orders", {}, WMS)


def test_async_calls_the_writer_uses(sandbox: Any) -> None:
    async def main() -> None:
        async with make_client(sandbox) as client:
            results = await asyncio.gather(
                *(client.awrite("POST", "/wms/orders", order(i), WMS) for i in range(5))
            )
            assert len({r.id for r in results}) == 5
            records = await client.alist_records("/wms/orders", WMS, limit=2)
            assert {r.id for r in results} <= {r["id"] for r in records}

    asyncio.run(main())
    asyncio.run(main())  # a second event loop gets its own AsyncClient


# -- every error class -------------------------------------------------------------------------------------


def test_401_bad_key_and_bad_token(sandbox: Any) -> None:
    with make_client(sandbox, api_key="wrong-key-123") as client, pytest.raises(TrackstarAuthError) as exc:
        client.get_integrations("wms")
    assert exc.value.status == 401 and exc.value.origin == "trackstar" and exc.value.request_id
    assert exc.value.method == "GET" and exc.value.path == "/integrations/wms"
    with make_client(sandbox) as client, pytest.raises(TrackstarAuthError) as exc:
        client.list_records("/wms/orders", "not-a-token")
    assert exc.value.status == 401


def test_403_disabled_action(sandbox_factory: Any) -> None:
    sb = sandbox_factory(
        connections={
            "tok-disabled": {"integration_name": "wms_sandbox", "disabled_actions": ["create_order"]}
        }
    )
    with make_client(sb) as client, pytest.raises(TrackstarAuthError) as exc:
        client.write("POST", "/wms/orders", order(1), "tok-disabled")
    assert exc.value.status == 403 and "disabled" in (exc.value.error or "")
    assert not exc.value.outcome_unknown


def test_404_not_found(sandbox: Any) -> None:
    with make_client(sandbox) as client:
        with pytest.raises(TrackstarNotFoundError) as exc:
            client.get_record("/wms/orders", "no-such-order", WMS)
        assert exc.value.status == 404 and exc.value.path == "/wms/orders/no-such-order"
        with pytest.raises(TrackstarNotFoundError):
            client.get_write_info("wms", "no_such_integration")


def test_422_keeps_field_messages_and_is_not_retried(sandbox: Any, attempts: Attempts) -> None:
    bad = order(1)
    del bad["line_items"][0]["quantity"]
    bad["reference_id"] = "null"
    with make_client(sandbox, max_retries=3) as client, pytest.raises(TrackstarValidationError) as exc:
        client.write("POST", "/wms/orders", bad, WMS)
    err = exc.value
    assert err.status == 422 and not err.outcome_unknown
    assert "line_items.0.quantity" in err.field_errors
    assert "reference_id" in err.field_errors
    assert "line_items.0.quantity" in str(err)
    assert attempts.count("POST /wms/orders ->") == 1


def test_409_in_flight_and_400_other_body(sandbox: Any) -> None:
    sandbox.configure(latency=0.6)
    key = "idem-409"
    with make_client(sandbox) as client:
        first: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: first.update(r=client.write("POST", "/wms/orders", order(1), WMS, key))
        )
        t.start()
        time.sleep(0.2)
        with pytest.raises(TrackstarConflictError) as exc:
            client.write("POST", "/wms/orders", order(1), WMS, key)
        assert exc.value.status == 409 and not exc.value.outcome_unknown
        t.join()
        assert first["r"].id
        with pytest.raises(TrackstarBadRequestError) as bad:
            client.write("POST", "/wms/orders", order(2), WMS, key)
        assert bad.value.status == 400


def test_501_not_implemented_not_retried(sandbox: Any, attempts: Attempts) -> None:
    with make_client(sandbox, max_retries=3) as client, pytest.raises(TrackstarNotImplementedError) as exc:
        client.list_records("/wms/warehouses", WMS)
    assert exc.value.status == 501 and "not implemented" in str(exc.value)
    assert attempts.count("GET /wms/warehouses ->") == 1


def test_5xx_read_retried_then_raised(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"error_5xx": 1.0, "applies_to": "reads"})
    with make_client(sandbox, max_retries=2) as client, pytest.raises(TrackstarServerError) as exc:
        client.list_records("/wms/orders", WMS)
    assert exc.value.status in (500, 502, 503)
    assert attempts.count("GET /wms/orders ->") == 3


def test_429_read_retry_after_honoured(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"burst_429": 1, "retry_after_s": 1, "applies_to": "reads"})
    with make_client(sandbox, backoff_max=0.01) as client:
        t0 = time.monotonic()
        assert client.list_records("/wms/orders", WMS) == []
        waited = time.monotonic() - t0
    assert waited >= 1.0, waited  # the server's retry-after wins over the (tiny) backoff
    assert waited < 3.0
    assert attempts.count("GET /wms/orders -> 429") == 1 and attempts.count("GET /wms/orders -> 200") == 1


def test_429_raised_when_retries_exhausted(sandbox: Any) -> None:
    sandbox.configure(faults={"burst_429": 5, "retry_after_s": 0, "applies_to": "reads"})
    with make_client(sandbox, max_retries=1) as client, pytest.raises(TrackstarRateLimitError) as exc:
        client.list_records("/wms/orders", WMS)
    assert exc.value.status == 429 and exc.value.retry_after is not None


def test_max_wait_caps_server_wait(sandbox: Any) -> None:
    sandbox.configure(faults={"burst_429": 1, "retry_after_s": 30, "applies_to": "reads"})
    with make_client(sandbox, max_wait=0.2) as client:
        t0 = time.monotonic()
        client.list_records("/wms/orders", WMS)
        assert time.monotonic() - t0 < 2.0


def test_backoff_is_capped(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"error_5xx": 1.0, "applies_to": "reads"})
    # base 10 s would mean 10 + 20 + 40 s of waiting uncapped; the cap keeps each wait under 0.05 s
    with make_client(sandbox, max_retries=3, backoff_base=10.0, backoff_max=0.05) as client:
        t0 = time.monotonic()
        with pytest.raises(TrackstarServerError):
            client.get_record("/wms/orders", "x", WMS)
        assert time.monotonic() - t0 < 2.0
    assert attempts.count("GET /wms/orders/x ->") == 4


def test_backoff_full_jitter_bounds() -> None:
    client_base, client_max = 0.5, 4.0
    for attempt in range(1, 12):
        waits = [full_jitter_backoff(attempt, client_base, client_max) for _ in range(50)]
        assert all(0 <= w <= min(4.0, 0.5 * 2 ** (attempt - 1)) for w in waits)


def test_retry_after_http_date_and_reset_headers() -> None:
    from email.utils import formatdate

    from trackstar_dagster.client.retry import server_wait

    def resp(status: int, headers: dict[str, str]) -> httpx.Response:
        return httpx.Response(status, headers=headers)

    assert server_wait(resp(429, {"retry-after": "2"})) == 2.0
    date_wait = server_wait(resp(429, {"retry-after": formatdate(time.time() + 5, usegmt=True)}))
    assert date_wait is not None and 3.0 <= date_wait <= 5.0
    reset = str(int(time.time()) + 3)
    for name in ("x-ratelimit-reset", "x-rate-limit-reset"):
        w = server_wait(resp(429, {name: reset}))
        assert w is not None and 1.5 <= w <= 3.0
    assert server_wait(resp(429, {"x-rate-limit-retry-after": "4"})) == 4.0
    assert server_wait(resp(200, {"x-ratelimit-remaining": "5", "x-ratelimit-reset": reset})) is None
    assert server_wait(resp(503, {})) is None


# -- transport failures --------------------------------------------------------------------------------


def test_read_timeout_is_transport_error_sent(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"hang": 1.0, "hang_s": 5, "applies_to": "reads"})
    with (
        make_client(sandbox, timeout=0.3, max_retries=1) as client,
        pytest.raises(TrackstarTransportError) as exc,
    ):
        client.list_records("/wms/orders", WMS)
    assert exc.value.sent is True and "timeout" in str(exc.value)
    assert attempts.count("GET /wms/orders -> ReadTimeout") == 2


def test_write_timeout_is_unknown_outcome_not_retried(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"hang": 1.0, "hang_s": 5})
    with (
        make_client(sandbox, timeout=0.3, max_retries=3) as client,
        pytest.raises(TrackstarTransportError) as exc,
    ):
        client.write("POST", "/wms/orders", order(1), WMS)
    assert exc.value.outcome_unknown and exc.value.sent
    assert attempts.count("POST /wms/orders ->") == 1


def test_dropped_connection(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"drop": 1.0, "applies_to": "all"})
    with make_client(sandbox, max_retries=3) as client:
        with pytest.raises(TrackstarTransportError) as exc:
            client.write("POST", "/wms/orders", order(1), WMS)
        assert exc.value.outcome_unknown and exc.value.sent
        assert attempts.count("POST /wms/orders ->") == 1
        with pytest.raises(TrackstarTransportError):
            client.list_records("/wms/orders", WMS)
        assert attempts.count("GET /wms/orders ->") == 4  # reads are retried


def test_connection_refused_on_closed_port(attempts: Attempts) -> None:
    port = free_closed_port()
    client = TrackstarClient(
        "key-refused",
        f"http://127.0.0.1:{port}",
        max_retries=2,
        backoff_base=0.01,
        backoff_max=0.02,
        write_rate=None,
        read_rate=None,
        connect_timeout=1.0,
    )
    with client, pytest.raises(TrackstarTransportError) as exc:
        client.write("POST", "/wms/orders", order(1), "tok-refused")
    assert exc.value.sent is False and exc.value.outcome_unknown is False
    assert attempts.count("POST /wms/orders -> ConnectError") == 1  # safe to retry: the writer decides
    with pytest.raises(TrackstarTransportError):
        client.list_records("/wms/orders", "tok-refused")
    assert attempts.count("GET /wms/orders -> ConnectError") == 3  # reads are retried here

    async def main() -> None:
        async with client:
            with pytest.raises(TrackstarTransportError) as aexc:
                await client.alist_records("/wms/orders", "tok-refused")
            assert aexc.value.sent is False

    asyncio.run(main())


# -- writes: unknown outcomes, idempotency -----------------------------------------------------------------


def test_5xx_on_write_is_unknown_outcome_and_not_retried(sandbox: Any, attempts: Attempts) -> None:
    sandbox.configure(faults={"commit_then_fail": 1.0})
    with make_client(sandbox, max_retries=5) as client, pytest.raises(TrackstarServerError) as exc:
        client.write("POST", "/wms/orders", order(1), WMS)
    assert exc.value.status == 502 and exc.value.outcome_unknown
    assert attempts.count("POST /wms/orders ->") == 1
    assert len(sandbox.records("orders", WMS)) == 1  # stored once: no second attempt


def test_429_on_write_is_raised_with_its_wait_for_the_writer_to_decide(
    sandbox: Any, attempts: Attempts
) -> None:
    sandbox.configure(faults={"burst_429": 1, "retry_after_s": 1})
    with make_client(sandbox) as client:
        with pytest.raises(TrackstarRateLimitError) as exc:
            client.write("POST", "/wms/orders", order(1), WMS)
        assert exc.value.retry_after is not None and exc.value.retry_after >= 1.0
        assert not exc.value.outcome_unknown
        assert attempts.count("POST /wms/orders ->") == 1  # waited out by the writer, never twice
        assert client.write("POST", "/wms/orders", order(1), WMS).attempts == 1
    assert len(sandbox.records("orders", WMS)) == 1


def test_a_body_given_as_bytes_goes_on_the_wire_as_it_is(sandbox: Any) -> None:
    sent: list[bytes] = []
    text = json.dumps(order(7), separators=(",", ":"), ensure_ascii=False)

    def hook(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append(request.content)

    with make_client(sandbox) as client:
        client.http.event_hooks["request"].append(hook)
        res = client.write("POST", "/wms/orders", text.encode(), WMS)
    assert sent == [text.encode()] and res.id
    assert sandbox.records("orders", WMS)[0]["order_number"] == order(7)["order_number"]


def test_idempotent_replay_and_key_release(sandbox: Any) -> None:
    with make_client(sandbox) as client:
        first = client.write("POST", "/wms/orders", order(1), WMS, idempotency_key="key-A")
        again = client.write("POST", "/wms/orders", order(1), WMS, idempotency_key="key-A")
        assert again.replayed and not first.replayed
        assert again.id == first.id and again.idempotency_key == "key-A"
        assert len(sandbox.records("orders", WMS)) == 1
        # a failed first attempt releases the key: the same key writes again
        sandbox.configure(faults={"error_5xx": 1.0})
        with pytest.raises(TrackstarServerError) as exc:
            client.write("POST", "/wms/orders", order(2), WMS, idempotency_key="key-B")
        assert exc.value.outcome_unknown
        sandbox.configure(faults={"error_5xx": 0.0})
        retry = client.write("POST", "/wms/orders", order(2), WMS, idempotency_key="key-B")
        assert not retry.replayed and retry.id
        assert len(sandbox.records("orders", WMS)) == 2


# -- pagination ----------------------------------------------------------------------------------------


def test_pagination_three_pages_filters_repeated(sandbox: Any, attempts: Attempts) -> None:
    seen_params: list[dict[str, str]] = []

    def hook(request: httpx.Request) -> None:
        if request.url.path == "/wms/orders" and request.method == "GET":
            seen_params.append(dict(request.url.params))

    with make_client(sandbox) as client:
        for i in range(7):
            tags = ["batch-x"] if i % 2 == 0 else ["other"]
            client.write("POST", "/wms/orders", order(i, trackstar_tags=tags), WMS)
        client.http.event_hooks["request"].append(hook)
        filters = {"trackstar_tags[contains]": "batch-x", "created_date[gte]": datetime(2020, 1, 1)}
        got = client.list_records("/wms/orders", WMS, filters=filters, limit=1)
        assert [r["order_number"] for r in got] == ["SO-0", "SO-2", "SO-4", "SO-6"]
        assert len(seen_params) == 4  # 4 pages of one (the last one says next_token null)
        for i, params in enumerate(seen_params):
            assert params["trackstar_tags[contains]"] == "batch-x"
            assert params["created_date[gte]"] == "2020-01-01T00:00:00Z"
            assert params["limit"] == "1"
            assert ("page_token" in params) == (i > 0)
        assert [r["id"] for r in client.iter_records("/wms/orders", WMS, {"reference_id": "ref-3"})] == [
            got_id["id"] for got_id in client.list_records("/wms/orders", WMS, {"order_number": "SO-3"})
        ]


# -- client-side rate limiting -------------------------------------------------------------------------


def test_write_rate_never_more_than_50_in_any_second(
    sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = sandbox_factory(write_rate=None)  # the server does not limit: only our limiter does
    starts: list[float] = []
    original = RateLimiter.aacquire

    async def recording(self: RateLimiter) -> None:
        await original(self)
        starts.append(time.monotonic())

    monkeypatch.setattr(RateLimiter, "aacquire", recording)

    async def main() -> list[WriteResponse]:
        async with make_client(sb, write_rate=50.0, timeout=10.0) as client:
            return await asyncio.gather(
                *(client.awrite("POST", "/wms/orders", order(i), WMS) for i in range(130))
            )

    t0 = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - t0
    assert len(results) == 130 and all(r.id for r in results)
    assert len(starts) == 130
    assert max_in_window(starts) <= 50
    assert elapsed >= 2.0  # 130 writes at <= 50/s cannot finish faster
    # the server saw them arrive at the same pace (its clock, stored creation times)
    created = sorted(
        datetime.fromisoformat(r["created_date"].replace("Z", "+00:00")).timestamp()
        for r in sb.records("orders", WMS)
    )
    assert len(created) == 130
    assert max_in_window(created) <= 52  # arrival jitter on a busy machine; the bound above is the strict one


def test_read_rate_limit_shared_between_clients(sandbox: Any) -> None:
    a = make_client(sandbox, read_rate=5.0)
    b = make_client(sandbox, read_rate=5.0)
    t0 = time.monotonic()
    for i in range(8):
        (a if i % 2 else b).list_records("/wms/orders", WMS)
    assert time.monotonic() - t0 >= 1.0  # 8 reads at 5/s across both clients (one budget per token)
    a.close()
    b.close()


# -- catalog cache ---------------------------------------------------------------------------------------


def test_catalog_called_at_most_once_per_interval(sandbox_factory: Any, attempts: Attempts) -> None:
    sb = sandbox_factory(catalog_limit=True)  # the sandbox answers 429 to a second call within a minute
    one = make_client(sb)
    two = make_client(sb)
    for _ in range(3):
        assert len(one.get_integrations("wms")) == 20
        assert len(two.get_integrations("wms")) == 20  # another client, same key: same cache
    assert attempts.count("GET /integrations/wms ->") == 1
    # the one-integration call is answered from the fresh full catalog
    assert one.get_integration("wms", "shipbob")[0]["integration_name"] == "shipbob"
    assert attempts.count("GET /integrations/wms/shipbob") == 0
    # callers get copies: mutating one does not change the cache
    one.get_integrations("wms")[0]["integration_name"] = "changed"
    assert one.get_integrations("wms")[0]["integration_name"] != "changed"
    # after the interval a new call is made; the sandbox's 1/min limit says 429 -> the older copy is served
    short = make_client(sb, catalog_interval=0.05)
    time.sleep(0.1)
    assert len(short.get_integrations("wms")) == 20
    assert attempts.count("GET /integrations/wms -> 429") == 1
    # write-info is not a catalog call: never cached
    short.get_write_info("wms", "shipbob")
    short.get_write_info("wms", "shipbob")
    assert attempts.count("write-info -> 200") == 2
    for c in (one, two, short):
        c.close()


def test_catalog_cache_is_per_api_key(sandbox: Any) -> None:
    with make_client(sandbox) as good:
        good.get_integrations("wms")
    with make_client(sandbox, api_key="someone-else") as bad, pytest.raises(TrackstarAuthError):
        bad.get_integrations("wms")  # not answered from the other key's cache
    from trackstar_dagster.client.catalog_cache import CatalogCache

    assert all(sandbox.api_key not in str(k) for k in CatalogCache.entries)


# -- secrets ---------------------------------------------------------------------------------------------


def test_secrets_never_in_logs_reprs_or_errors(sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret_token = "sandbox-token-shipbob"
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "trackstar_dagster"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    client = make_client(sandbox, max_retries=1)
    texts: list[str] = [repr(client), str(client)]
    client.get_integrations("wms")
    client.lookup_connection_by_token(secret_token)  # the token travels in the query string here
    client.list_records("/wms/orders", secret_token, {"reference_id": "r"})
    res = client.write("POST", "/wms/orders", order(1), WMS)
    texts += [repr(res), res.model_dump_json()]
    errors: list[TrackstarError] = []
    for call in (
        lambda: client.write("POST", "/wms/orders", {"order_number": ""}, secret_token),
        lambda: client.list_records("/wms/orders", "bad-token-xyz"),
        lambda: make_client(sandbox, api_key="wrong-api-key-xyz").get_integrations("wms"),
        lambda: client.get_record("/wms/orders", "nope", secret_token),
    ):
        with pytest.raises(TrackstarError) as exc:
            call()
        errors.append(exc.value)
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [str(e.to_dict()) for e in errors]
    client.lookup_connection_by_token(secret_token)
    client.close()
    # client-side loggers only: the in-process sandbox server (uvicorn.*, trackstar_dagster.sandbox) is not ours
    texts += [
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("uvicorn", "trackstar_dagster.sandbox"))
    ]
    blob = "\n".join(texts)
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx logged (redacted) URLs
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    for secret in (sandbox.api_key, secret_token, WMS, "bad-token-xyz", "wrong-api-key-xyz"):
        assert secret not in blob, secret
    assert repr(client) == f"TrackstarClient(base_url={sandbox.base_url!r})"


def test_redact_helper() -> None:
    TrackstarClient("very-secret-key-1", PRODUCTION_URL)
    assert "very-secret-key-1" not in redact("key very-secret-key-1 here")
    assert redact("GET /connections?access_token=abc&limit=5") == "GET /connections?access_token=***&limit=5"
    assert redact("page_token=abc") == "page_token=abc"
    # a DSN's password, wherever it is in a line of text
    assert (
        redact("ledger at postgresql+psycopg://ledger:pw-Xy9@db.example:5432/trackstar, retrying")
        == "ledger at postgresql+psycopg://ledger:***@db.example:5432/trackstar, retrying"
    )
    assert redact("sqlite:////tmp/ledger.sqlite") == "sqlite:////tmp/ledger.sqlite"
    assert (
        redact("https://production.trackstarhq.com/wms/orders")
        == "https://production.trackstarhq.com/wms/orders"
    )


def test_mask_url_password() -> None:
    from trackstar_dagster.base.redaction import mask_url_password

    assert (
        mask_url_password("postgresql+psycopg://user:secret@host/db")
        == "postgresql+psycopg://user:***@host/db"
    )
    # an unencoded '@' or '/' in the password is still hidden whole
    assert mask_url_password("postgresql://u:p@ss/w0rd@host:5432/db?sslmode=require") == (
        "postgresql://u:***@host:5432/db?sslmode=require"
    )
    for plain in ("postgresql://user@host/db", "sqlite:////abs/ledger.sqlite", "sqlite://", None, ""):
        assert mask_url_password(plain) == plain


def test_connection_lookup_by_id_keeps_the_token_out_of_urls(
    sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """GET /connections/{connection_id}: API key only, no access token anywhere in the request."""
    seen: list[httpx.Request] = []
    caplog.set_level(logging.INFO, logger="httpx")
    with make_client(sandbox) as client:
        conn_id = next(
            c["connection_id"] for c in client.list_connections() if c["integration_name"] == "shipbob"
        )
        client.http.event_hooks["request"].append(seen.append)
        assert client.get_connection_by_id(conn_id)["integration_name"] == "shipbob"
    assert [str(r.url.path) for r in seen] == [f"/connections/{conn_id}"]
    assert not seen[0].url.query and "x-trackstar-access-token" not in seen[0].headers
