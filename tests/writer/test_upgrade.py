"""An upgrade never re-sends what was written: rerun the first release's rows over its ledger and sandbox
state (``tests/fixtures/upgrade_v0``, made by that release's code) with today's code: new tag format (a
namespace), new ledger table, new idempotency keys, and a server that does not replay keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.writer import CountingClient
from trackstar_dagster.client import TrackstarClient
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.sandbox.server import run_sandbox
from trackstar_dagster.writer import write_payloads
from trackstar_dagster.writer.ledger import ENCODING, LEGACY_TABLE, Ledger

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "upgrade_v0"
MAPPING = ROOT / "example_project" / "src" / "trackstar_example" / "mapping.yaml"
TOKENS = {
    "acme_wms": "sandbox-token-wms",
    "globex_shiphero": "sandbox-token-shiphero",
    "initech_shipbob": "sandbox-token-shipbob",
}
INTEGRATIONS = {"acme_wms": "wms_sandbox", "globex_shiphero": "shiphero", "initech_shipbob": "shipbob"}
WRITTEN = 149  # what the first release created (make_fixture.py)


@pytest.fixture
def upgraded(tmp_path):
    for name in ("ledger.sqlite", "sandbox.sqlite"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    with run_sandbox(
        state_file=str(tmp_path / "sandbox.sqlite"),
        write_rate=1000.0,
        read_rate=1000.0,
        faults={"ignore_idempotency_key": True},
    ) as sb:
        yield sb, tmp_path


def test_upgrade_over_a_first_release_ledger_sends_nothing(upgraded):
    sb, tmp_path = upgraded
    held = {c: len(sb.records("orders", token=t)) for c, t in TOKENS.items()}
    assert sum(held.values()) == WRITTEN
    rows = pd.read_json(FIXTURE / "rows.json", orient="table")
    mapping = MappingConfig.from_yaml(MAPPING).model_copy(update={"tag_namespace": "orders_sync"})
    client = TrackstarClient(sb.api_key, sb.base_url, write_rate=1000.0, read_rate=1000.0)
    targets = {
        c: Target(c, "wms", i, client.get_write_info("wms", i, access_token=TOKENS[c]))
        for c, i in INTEGRATIONS.items()
    }
    batch = build_payloads(rows, mapping, targets)
    assert batch.payloads["tag"].str.startswith("tsd:orders_sync:create_order:").all()

    ledger = Ledger(tmp_path / "ledger.sqlite")  # opening it migrates the first release's table
    import sqlalchemy as sa

    assert LEGACY_TABLE not in sa.inspect(ledger.engine).get_table_names()
    for mode in ("create_only", "upsert", "upsert"):
        counting = CountingClient(client)
        report = write_payloads(batch.payloads, counting, TOKENS, ledger, namespace="orders_sync", mode=mode)
        assert counting.writes == 0, report.results[report.results["status"] != "unchanged"].head()
        assert report.counts["unchanged"] == WRITTEN and report.total == WRITTEN
        assert report.body_changed == 0
    assert {c: len(sb.records("orders", token=t)) for c, t in TOKENS.items()} == held
    entries = ledger.entries(namespace="orders_sync")
    assert len(entries) == WRITTEN and set(entries["encoding"]) == {ENCODING}
    assert len(ledger.entries(namespace="")) == 0  # every row moved into the sync's namespace


def test_a_first_release_body_with_batch_chosen_microseconds_is_recognised(sb, tmp_path):
    """The first release wrote a whole-second date-time as ``.000000Z`` when another row of the build had a
    fraction; this one writes ``Z``. Such a record is ``unchanged`` (and re-hashed), not updated."""
    import hashlib
    import json

    import sqlalchemy as sa

    from tests.writer import NS, WMS, WMS_TOKEN, frame, order_body
    from trackstar_dagster.base.keys import key_tag, legacy_key_tag

    body = order_body(WMS, "k1", required_ship_date="2024-03-01T04:30:00Z")
    new = frame([("k1", WMS, "create_order", body)])
    old_text = json.dumps(
        {
            **body,
            "required_ship_date": "2024-03-01T04:30:00.000000Z",
            "trackstar_tags": [legacy_key_tag("create_order", "k1")],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert body["trackstar_tags"] == [key_tag("create_order", "k1", NS)]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'l.sqlite'}")
    with engine.begin() as conn:  # the first release's table, as it wrote it
        conn.exec_driver_sql(
            f"CREATE TABLE {LEGACY_TABLE} (connection VARCHAR(255), action VARCHAR(64), key VARCHAR(512), "
            "body_hash VARCHAR(128), written_hash VARCHAR(128), trackstar_id VARCHAR(255), status VARCHAR(16) NOT NULL, "
            "operation VARCHAR(16), idempotency_key VARCHAR(255), outcome_unknown BOOLEAN NOT NULL, attempts INTEGER "
            "NOT NULL, http_status INTEGER, request_id VARCHAR(255), last_error TEXT, last_attempt_at DATETIME, "
            "updated_at DATETIME, PRIMARY KEY (connection, action, key))"
        )
        h = hashlib.sha256(old_text.encode()).hexdigest()
        conn.exec_driver_sql(
            f"INSERT INTO {LEGACY_TABLE} VALUES ('{WMS}', 'create_order', 'k1', '{h}', '{h}', "
            "'ord_1', 'created', 'create', 'x', 0, 1, 200, NULL, NULL, NULL, NULL)"
        )
    engine.dispose()
    ledger = Ledger(tmp_path / "l.sqlite")
    client = CountingClient(TrackstarClient(sb.api_key, sb.base_url, write_rate=1000.0, read_rate=1000.0))
    for mode in ("upsert", "upsert"):
        report = write_payloads(new, client, {WMS: WMS_TOKEN}, ledger, namespace=NS, mode=mode)
        assert report.counts["unchanged"] == 1 and client.writes == 0 and report.body_changed == 0
    entry = ledger.get(WMS, "create_order", "k1", NS)
    assert entry.encoding == ENCODING and entry.written_hash == new.iloc[0]["body_hash"]
    assert sb.records("orders", token=WMS_TOKEN) == []
