"""The writer against the real sandbox (no faults): results, re-runs, modes, rejections, stopped connections."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.writer import (
    NS,
    WMS,
    WMS_TOKEN,
    CountingClient,
    assert_exactly_once,
    frame,
    make_client,
    order_body,
    orders,
    tag_counts,
)
from trackstar_dagster.base.keys import create_idempotency_key, key_tag, update_idempotency_key
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.sandbox.state import ConnectionSpec
from trackstar_dagster.writer import (
    BODY_CHANGED_MESSAGE,
    RESULT_COLUMNS,
    FailurePolicy,
    awrite_payloads,
    write_payloads,
)
from trackstar_dagster.writer.ledger import Intent, Ledger

FAST = {"write_rate": 1000.0, "read_rate": 1000.0}
TOKENS = {WMS: WMS_TOKEN, "shipbob": "sandbox-token-shipbob", "locked": "token-locked"}


@pytest.fixture(scope="module")
def server():
    connections = {
        WMS_TOKEN: "wms_sandbox",
        "sandbox-token-shipbob": "shipbob",
        "token-locked": ConnectionSpec("wms_sandbox", disabled_actions=("create_order",)),
    }
    with run_sandbox(connections=connections, **FAST) as sb:
        yield sb


@pytest.fixture
def sb(server):
    server.reset()
    server.configure(latency=0.0, jitter=0.0)
    return server


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def test_writes_each_record_once_and_rerun_sends_nothing(sb, ledger):
    payloads = orders(60)
    client = CountingClient(make_client(sb))
    report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert list(report.results.columns) == RESULT_COLUMNS
    assert report.counts["created"] == 60 and report.total == 60
    assert client.writes == 60
    # one result row per payload, in the payloads' order (the Dagster layer relies on it)
    assert report.results["key"].tolist() == payloads["key"].tolist()
    row = report.results.iloc[0]
    assert row.trackstar_id and row.http_status == 200 and row.request_id and row.attempts == 1
    assert row.latency_s > 0 and row.finished_at >= row.started_at
    assert report.p50_latency_s is not None and report.writes_per_s > 0
    assert_exactly_once(sb, payloads)
    stored = {r["order_number"]: r["id"] for r in sb.records("orders", token=WMS_TOKEN)}
    assert dict(zip("SO-" + report.results["key"], report.results["trackstar_id"], strict=True)) == stored
    led = ledger.entries(WMS)
    assert set(led["status"]) == {"created"} and len(led) == 60

    client.writes = client.reads = 0
    again = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert again.counts["unchanged"] == 60
    assert client.writes == 0 and client.reads == 0
    assert len(sb.records("orders", token=WMS_TOKEN)) == 60
    assert (again.results["trackstar_id"] == report.results["trackstar_id"]).all()
    assert FailurePolicy().evaluate(again).ok


def test_idempotency_keys_are_stable_and_short():
    """A create's key is the same for every body of a record (two runs' bodies collide at the server), and
    moves on only with the generation (after a rejection); an update's key is per body."""
    a = create_idempotency_key(NS, "c", "create_order", "k" * 500, 0)
    assert a == create_idempotency_key(NS, "c", "create_order", "k" * 500, 0) and len(a) <= 255
    assert a != create_idempotency_key(NS, "c", "create_order", "k" * 500, 1)
    assert a != create_idempotency_key("other_sync", "c", "create_order", "k" * 500, 0)
    u = update_idempotency_key(NS, "c", "create_order", "k" * 500, "h")
    assert u != a and len(u) <= 255 and u != update_idempotency_key(NS, "c", "create_order", "k" * 500, "h2")


def test_422_is_rejected_with_field_messages_and_does_not_stop_the_rest(sb, ledger):
    good = order_body(WMS, "good")
    bad = order_body(WMS, "bad")
    del bad["order_number"]
    bad["line_items"] = [{"product_id": "p", "quantity": "two"}]
    payloads = frame([("good", WMS, "create_order", good), ("bad", WMS, "create_order", bad)])
    report = write_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS)
    rows = report.results.set_index("key")
    assert rows.loc["good", "status"] == "created"
    assert rows.loc["bad", "status"] == "rejected" and rows.loc["bad", "http_status"] == 422
    assert "order_number" in rows.loc["bad", "error"] and "line_items.0.quantity" in rows.loc["bad", "error"]
    assert rows.loc["bad", "attempts"] == 1 and not report.stopped_connections
    assert list(report.failures["key"]) == ["bad"]
    assert ledger.get(WMS, "create_order", "bad", NS).status == "rejected"
    outcome = FailurePolicy().evaluate(report)
    assert outcome.ok and "rejected" in outcome.message  # rejects are counted apart
    strict = FailurePolicy(max_rejected_share=0.0).evaluate(report)
    assert not strict.ok and strict.rejected_share == 0.5 and strict.metadata["failures"][0]["key"] == "bad"


@pytest.mark.parametrize(
    ("connection", "status", "words"),
    [
        ("bad-token", 401, "access token is wrong"),
        ("locked", 403, "disabled"),
        ("shipbob", 501, "does not support"),
    ],
)
def test_auth_and_capability_errors_stop_the_connection_with_one_message(
    sb, ledger, connection, status, words
):
    tokens = {**TOKENS, "bad-token": "not-a-token"}
    action = "create_product" if connection == "shipbob" else "create_order"
    bodies = [
        {"sku": f"sku-{i}", "name": "Widget", "trackstar_tags": [key_tag(action, f"k{i}", NS)]}
        if action == "create_product"
        else order_body(connection, f"k{i}")
        for i in range(40)
    ]
    payloads = frame(
        [(f"k{i}", connection, action, b) for i, b in enumerate(bodies)]
        + [(f"w{i}", WMS, "create_order", order_body(WMS, f"w{i}")) for i in range(10)]
    )
    client = CountingClient(make_client(sb))
    report = write_payloads(payloads, client, tokens, ledger, namespace=NS, concurrency=4)
    assert set(report.stopped_connections) == {connection}
    reason = report.stopped_connections[connection]
    assert words in reason
    stopped = report.results[report.results["connection"] == connection]
    assert set(stopped["status"]) == {"failed"} and set(stopped["error"]) == {reason}
    assert (stopped["http_status"] == status).sum() <= 4  # only the requests already in flight
    assert client.writes <= 4 + 10
    assert report.counts["created"] == 10  # the other connection is not affected
    outcome = FailurePolicy().evaluate(report)
    assert not outcome.ok and not outcome.retryable and reason in outcome.message
    # failed records are picked up again next run (here: still refused, so failed again)
    again = write_payloads(payloads, make_client(sb), tokens, ledger, namespace=NS, concurrency=4)
    assert again.counts["unchanged"] == 10 and again.counts["failed"] == 40


def test_create_only_reports_a_changed_body_and_upsert_updates_it(sb, ledger):
    payloads = orders(5)
    first = write_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS)
    changed = orders(5, service_level="Express")
    client = CountingClient(make_client(sb))
    report = write_payloads(changed, client, {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert client.writes == 0
    assert report.counts["unchanged"] == 5 and report.body_changed == 5
    assert set(report.results["error"]) == {BODY_CHANGED_MESSAGE}
    assert FailurePolicy().evaluate(report).ok
    assert all("service_level" not in r for r in sb.records("orders", token=WMS_TOKEN))

    report = write_payloads(changed, client, {WMS: WMS_TOKEN}, ledger, namespace=NS, mode="upsert")
    assert report.counts["updated"] == 5 and client.writes == 5
    assert (report.results["trackstar_id"] == first.results["trackstar_id"]).all()
    stored = sb.records("orders", token=WMS_TOKEN)
    assert len(stored) == 5 and all(r["service_level"] == "Express" for r in stored)
    again = write_payloads(changed, client, {WMS: WMS_TOKEN}, ledger, namespace=NS, mode="upsert")
    assert again.counts["unchanged"] == 5 and client.writes == 5


def test_another_action_end_to_end(sb, ledger):
    products = frame(
        [
            (
                f"p{i}",
                WMS,
                "create_product",
                {
                    "sku": f"SKU-{i}",
                    "name": f"Widget {i}",
                    "trackstar_tags": [key_tag("create_product", f"p{i}", NS)],
                },
            )
            for i in range(8)
        ]
    )
    shipments = frame(
        [
            (
                f"s{i}",
                WMS,
                "create_inbound_shipment",
                {
                    "supplier": "Acme",
                    "purchase_order_number": f"PO-{i}",
                    "expected_arrival_date": "2026-01-02T00:00:00Z",
                    "warehouse_id": "wms_sandbox-wh-1",
                    "tracking_number": f"TN{i}",
                    "line_items": [{"sku": "SKU-1", "expected_quantity": 3}],
                    "trackstar_tags": [key_tag("create_inbound_shipment", f"s{i}", NS)],
                },
            )
            for i in range(4)
        ]
    )
    import pandas as pd

    payloads = pd.concat([products, shipments], ignore_index=True)
    report = write_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert report.counts["created"] == 12, report.failures
    assert_exactly_once(sb, products, resource="products")
    assert_exactly_once(sb, shipments, resource="inbound-shipments")


def test_left_over_intents_are_reconciled_not_resent(sb, ledger):
    """A crash between send and outcome leaves intents: found records are adopted, missing ones sent."""
    payloads = orders(20)
    client = make_client(sb)
    # the "crashed run": 10 of the 20 reached Trackstar, all 20 have an intent row
    for row in payloads.head(10).itertuples():
        client.write("POST", "/wms/orders", json.loads(row.body), WMS_TOKEN)
    ledger.record_intents(
        [
            Intent(
                WMS,
                "create_order",
                r.key,
                r.body_hash,
                create_idempotency_key(NS, WMS, "create_order", r.key, 0),
            )
            for r in payloads.itertuples()
        ],
        namespace=NS,
    )
    counting = CountingClient(client)
    report = write_payloads(payloads, counting, {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert report.counts["created"] == 20
    assert report.results["reconciled"].sum() == 10
    assert counting.writes == 10 and counting.reads == 20
    assert_exactly_once(sb, payloads)
    assert set(ledger.entries(WMS)["status"]) == {"created"}


def test_lookup_by_tag_when_there_is_no_reference_id(sb, ledger):
    payloads = orders(6, reference=False)
    client = make_client(sb)
    for row in payloads.head(3).itertuples():
        client.write("POST", "/wms/orders", json.loads(row.body), WMS_TOKEN)
    ledger.record_intents(
        [Intent(WMS, "create_order", r.key, r.body_hash, "x") for r in payloads.itertuples()]
    )
    report = write_payloads(payloads, client, {WMS: WMS_TOKEN}, ledger, namespace=NS)
    assert report.counts["created"] == 6 and report.results["reconciled"].sum() == 3
    assert_exactly_once(sb, payloads)


def test_sync_wrapper_inside_a_running_loop_and_progress_log(sb, ledger, caplog):
    payloads = orders(30)
    sb.configure(latency=0.02)

    async def inside() -> object:
        return write_payloads(
            payloads,
            make_client(sb),
            {WMS: WMS_TOKEN},
            ledger,
            namespace=NS,
            progress_every_s=0.05,
            concurrency=2,
        )

    with caplog.at_level(logging.INFO, logger="trackstar_dagster.writer"):
        report = asyncio.run(inside())
    assert report.counts["created"] == 30
    assert any("records done" in r.getMessage() and "ETA" in r.getMessage() for r in caplog.records)
    assert tag_counts(sb, payloads).most_common(1)[0][1] == 1


def test_async_core_and_bad_input(sb, ledger):
    payloads = orders(3)
    report = asyncio.run(awrite_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS))
    assert report.counts["created"] == 3
    with pytest.raises(ValueError, match="duplicate"):
        write_payloads(orders(2).iloc[[0, 0]], make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS)
    with pytest.raises(ValueError, match="mode"):
        write_payloads(payloads, make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS, mode="yolo")
    missing = write_payloads(
        orders(2, connection="nowhere"), make_client(sb), {WMS: WMS_TOKEN}, ledger, namespace=NS
    )
    assert missing.counts["failed"] == 2 and "nowhere" in missing.stopped_connections
