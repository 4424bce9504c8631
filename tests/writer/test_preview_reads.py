"""ChangePreview against the sandbox: reads by id per connection, the run's limit across groups, and reads
that fail marking their records (deleted: missing; refused or down: read_failed) without failing anything."""

from __future__ import annotations

import json

import pytest

from tests.writer import CLEAR, WMS, WMS_TOKEN, frame, make_client, order_body
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import Ledger, write_payloads
from trackstar_dagster.writer.preview import MISSING, NOT_PREVIEWED, PREVIEWED, READ_FAILED, ChangePreview

OTHER, OTHER_TOKEN = "other", "sandbox-token-other"
TOKENS = {WMS: WMS_TOKEN, OTHER: OTHER_TOKEN}
NS = "orders_sync"


@pytest.fixture(scope="module")
def server():  # two connections; the package's ``sb`` fixture resets it for each test
    connections = {WMS_TOKEN: "wms_sandbox", OTHER_TOKEN: "wms_sandbox"}
    with run_sandbox(connections=connections, write_rate=1000.0, read_rate=1000.0) as sb:
        yield sb


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as led:
        yield led


def body(conn: str, key: str, city: str) -> dict:
    out = order_body(conn, key)
    out["ship_to_address"]["city"] = city
    return out


def bodies(city: str):
    return frame(
        [
            (f"o{i}", conn, "create_order", body(conn, f"o{i}", city))
            for conn in (WMS, OTHER)
            for i in range(3)
        ]
    )


def written(sb, ledger):
    client = make_client(sb)
    report = write_payloads(bodies("London"), client, TOKENS, ledger, namespace=NS)
    assert report.counts["created"] == 6
    return client


def test_reads_by_id_per_connection_and_the_limit_spans_the_run(sb, ledger):
    client = written(sb, ledger)
    before = {t: len(sb.arrivals(t, "read")) for t in (WMS_TOKEN, OTHER_TOKEN)}  # the first run's listings
    changed = bodies("Leeds")
    preview = ChangePreview(client, TOKENS.__getitem__, limit=4, namespace=NS)
    first = preview.preview(changed.iloc[:3].reset_index(drop=True), [0, 1, 2], ledger)  # one group
    later = preview.preview(changed.iloc[3:].reset_index(drop=True), [0, 1, 2], ledger)  # the next
    assert [p.status for p in first.values()] == [PREVIEWED] * 3
    assert sorted((i, p.status) for i, p in later.items()) == [
        (0, PREVIEWED),
        (1, NOT_PREVIEWED),
        (2, NOT_PREVIEWED),
    ]
    assert json.loads(first[0].changes_json()) == [
        {"field": "ship_to_address.city", "held": "London", "new": "Leeds", "change": "changed"}
    ]
    reads = {t: len(sb.arrivals(t, "read")) - before[t] for t in before}
    assert reads == {WMS_TOKEN: 3, OTHER_TOKEN: 1}


def test_a_deleted_record_is_missing_and_failed_reads_fail_nothing(sb, ledger):
    client = written(sb, ledger)

    def delete_first() -> None:
        for bucket in sb.sandbox.store.records.values():
            bucket.pop(next(iter(bucket)))

    sb._call(delete_first)  # each connection's first order, deleted in Trackstar
    sb.configure(faults={"error_5xx": 1.0, "applies_to": "reads"})
    down = ChangePreview(client, TOKENS.__getitem__, limit=10, namespace=NS)
    got = down.preview(bodies("Leeds"), range(6), ledger)
    assert {p.status for p in got.values()} == {READ_FAILED}  # retried, then given up: not an error

    sb.configure(faults={**CLEAR, "applies_to": "writes"})

    def token_for(conn: str) -> str:
        if conn == OTHER:
            raise KeyError("no such connection")
        return TOKENS[conn]

    got = ChangePreview(client, token_for, limit=10, namespace=NS).preview(bodies("Leeds"), range(6), ledger)
    assert [got[i].status for i in range(6)] == [MISSING, PREVIEWED, PREVIEWED] + [READ_FAILED] * 3
