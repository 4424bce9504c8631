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
from trackstar_dagster.writer.ledger import ENCODING, LEGACY_TABLE, Ledger
from trackstar_dagster.writer.writer import write_payloads

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "upgrade_v0"
MAPPING = ROOT / "example_project" / "src" / "trackstar_example" / "mapping.yaml"
TOKENS = {"acme_wms": "sandbox-token-wms", "globex_shiphero": "sandbox-token-shiphero",
          "initech_shipbob": "sandbox-token-shipbob"}
INTEGRATIONS = {"acme_wms": "wms_sandbox", "globex_shiphero": "shiphero", "initech_shipbob": "shipbob"}
WRITTEN = 149  # what the first release created (make_fixture.py)


@pytest.fixture
def upgraded(tmp_path):
    for name in ("ledger.sqlite", "sandbox.sqlite"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    with run_sandbox(state_file=str(tmp_path / "sandbox.sqlite"), write_rate=1000.0, read_rate=1000.0,
                     faults={"ignore_idempotency_key": True}) as sb:
        yield sb, tmp_path


def test_upgrade_over_a_first_release_ledger_sends_nothing(upgraded):
    sb, tmp_path = upgraded
    held = {c: len(sb.records("orders", token=t)) for c, t in TOKENS.items()}
    assert sum(held.values()) == WRITTEN
    rows = pd.read_json(FIXTURE / "rows.json", orient="table")
    mapping = MappingConfig.from_yaml(MAPPING).model_copy(update={"tag_namespace": "orders_sync"})
    client = TrackstarClient(sb.api_key, sb.base_url, write_rate=1000.0, read_rate=1000.0)
    targets = {c: Target(c, "wms", i, client.get_write_info("wms", i, access_token=TOKENS[c]))
               for c, i in INTEGRATIONS.items()}
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
