"""Every fault mode: latency, 5xx, 429 bursts, hangs, dropped connections, commit-then-fail; determinism."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sandbox.helpers import SANDBOX_ORDER, body, client
from trackstar_dagster.sandbox.faults import FaultConfig, FaultInjector
from trackstar_dagster.sandbox.server import SandboxHandle


def test_latency_and_jitter(sandbox: SandboxHandle) -> None:
    sandbox.configure(latency=0.2, jitter=0.1)
    with client(sandbox) as c:
        started = time.perf_counter()
        assert c.get("/wms/orders").status_code == 200
        assert 0.2 <= time.perf_counter() - started < 2.0
        started = time.perf_counter()
        assert c.get("/integrations/wms").status_code == 200  # management endpoints are not slowed
        assert time.perf_counter() - started < 0.2


def test_5xx_stores_nothing(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults=FaultConfig(error_5xx=1.0, seed=1))
    with client(sandbox) as c:
        codes = {
            c.post("/wms/orders", json=body(SANDBOX_ORDER, order_number=f"n{i}")).status_code
            for i in range(10)
        }
        assert codes <= {500, 502, 503} and len(codes) > 1
        assert c.get("/wms/orders").status_code == 200  # reads are not hit by default
    assert sandbox.records("orders") == []


def test_faults_can_apply_to_reads(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"error_5xx": 1.0, "applies_to": "reads"})
    with client(sandbox) as c:
        assert c.get("/wms/orders").status_code >= 500
        assert c.post("/wms/orders", json=SANDBOX_ORDER).status_code == 200


def test_429_burst_then_normal(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"burst_429": 2, "retry_after_s": 3})
    with client(sandbox) as c:
        answers = [c.post("/wms/orders", json=body(SANDBOX_ORDER, order_number=f"n{i}")) for i in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert answers[0].json()["error"] == "429 Too Many Requests"
    assert len(sandbox.records("orders")) == 1


def test_hang_past_the_client_timeout_then_504(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"hang": 1.0, "hang_s": 0.6})
    with client(sandbox, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/wms/orders", json=SANDBOX_ORDER)
    with client(sandbox, timeout=5) as c:
        r = c.post("/wms/orders", json=SANDBOX_ORDER)
        assert r.status_code == 504
    assert sandbox.records("orders") == []


def test_drop_closes_the_connection_without_an_answer(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"drop": 1.0})
    with client(sandbox) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "d"})
        sandbox.configure(faults={"drop": 0.0})
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "d"})  # key was released
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert len(sandbox.records("orders")) == 1


def test_commit_then_fail_stores_then_502_and_key_replays(sandbox: SandboxHandle) -> None:
    sandbox.configure(faults={"commit_then_fail": 1.0})
    with client(sandbox) as c:
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "c"})
        assert r.status_code == 502
        stored = sandbox.records("orders")
        assert len(stored) == 1 and stored[0]["order_number"] == "SO-1"
        assert c.get("/wms/orders", params={"order_number": "SO-1"}).json()["total_count"] == 1
        r = c.post("/wms/orders", json=SANDBOX_ORDER, headers={"Idempotency-Key": "c"})
        assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
        assert r.json()["id"] == stored[0]["id"]
        assert (
            c.post("/wms/orders", json=body(SANDBOX_ORDER, bogus=1)).status_code == 422
        )  # invalid: not stored
    assert len(sandbox.records("orders")) == 1


def test_faults_are_deterministic_with_a_seed() -> None:
    cfg = FaultConfig(error_5xx=0.3, drop=0.2, hang=0.1, commit_then_fail=0.2, seed=42)
    a, b = FaultInjector(cfg), FaultInjector(cfg)
    seq_a = [a.decide(True).kind for _ in range(200)]
    seq_b = [b.decide(True).kind for _ in range(200)]
    assert seq_a == seq_b
    other = FaultInjector(cfg.model_copy(update={"seed": 43}))
    assert [other.decide(True).kind for _ in range(200)] != seq_a  # the seed is what fixes the sequence
    assert {"5xx", "drop", "hang", "commit_then_fail", None} == set(seq_a)
    assert 0.15 < seq_a.count("5xx") / 200 < 0.45
