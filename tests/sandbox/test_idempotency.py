"""Idempotency-Key: replay, 409 in flight, 400 on reuse, release after a failure, scope per token."""

from __future__ import annotations

import asyncio

import httpx

from tests.sandbox.helpers import SANDBOX_ORDER, SHIPHERO, SHIPHERO_ORDER, WMS, body, client
from trackstar_dagster.sandbox.server import SandboxHandle


def test_replay_returns_first_response_without_second_record(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        first = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k1"})
        again = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(sandbox.records("orders")) == 1


def test_reuse_with_other_body_or_endpoint_is_400(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        assert c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k"}).status_code == 200
        r = c.post(
            "/wms/orders", json=body(SANDBOX_ORDER, order_number="other"), headers={"Idempotency-Key": "k"}
        )
        assert r.status_code == 400 and r.json()["origin"] == "trackstar"
        r = c.post("/wms/products", json={"sku": "s", "name": "n"}, headers={"Idempotency-Key": "k"})
        assert r.status_code == 400
        assert (
            c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "x" * 256}).status_code
            == 400
        )
    assert len(sandbox.records("orders")) == 1


def test_409_while_first_is_in_flight(sandbox: SandboxHandle) -> None:
    sandbox.configure(latency=0.6)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        headers = {
            "x-trackstar-api-key": sandbox.api_key,
            "x-trackstar-access-token": WMS,
            "Idempotency-Key": "slow",
        }
        async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers, timeout=10) as c:
            first = asyncio.create_task(c.post("/wms/orders", json=SANDBOX_ORDER))
            await asyncio.sleep(0.2)
            second = await c.post("/wms/orders", json=SANDBOX_ORDER)
            return await first, second

    first, second = asyncio.run(go())
    assert first.status_code == 200
    assert second.status_code == 409


def test_key_released_after_a_failed_first_attempt(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"error_5xx": 1.0})
    with client(sandbox) as c:
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k"})
        assert r.status_code in (500, 502, 503)
        assert sandbox.records("orders") == []
        sandbox.configure(faults={"error_5xx": 0.0})
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "k"})
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
        bad = body(SANDBOX_ORDER, bogus=1)  # a 422 also releases its key
        assert c.post("/wms/orders", json=bad, headers={"Idempotency-Key": "k2"}).status_code == 422
        r = c.post(
            "/wms/orders", json=body(SANDBOX_ORDER, order_number="SO-2"), headers={"Idempotency-Key": "k2"}
        )
        assert r.status_code == 200
    assert len(sandbox.records("orders")) == 2


def test_keys_are_scoped_per_token(sandbox: SandboxHandle) -> None:
    with client(sandbox) as c:
        assert (
            c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "same"}).status_code == 200
        )
    with client(sandbox, token=SHIPHERO) as c:
        r = c.post("/wms/orders", json=SHIPHERO_ORDER, headers={"Idempotency-Key": "same"})
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
