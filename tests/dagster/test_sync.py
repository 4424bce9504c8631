"""A sync's assets and the write_orders op, run in a real Dagster instance against the sandbox."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import pytest

from trackstar_dagster import (
    MappingConfig,
    TrackstarConnection,
    TrackstarResource,
    TrackstarSync,
    build_trackstar_schema_assets,
    build_trackstar_sync_assets,
    write_orders,
)
from trackstar_dagster.sync import trackstar_io_manager_resources

#: the example rows' columns, as the tests' mappings read them
ORDER_FIELDS = {
    "order_number": "order_id",
    "ship_to_address.full_name": "name",
    "ship_to_address.address1": "street",
    "ship_to_address.city": "city",
    "ship_to_address.state": "state",
    "ship_to_address.postal_code": "zip",
    "ship_to_address.country": "country",
    "line_items.product_id": "product",
    "line_items.quantity": "qty",
}

MAPPING = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection": "acme",
        "fields": ORDER_FIELDS,
    }
)


#: a warehouse row's address columns (ORDER_FIELDS' names)
ADDRESS = {"name": "Ada Lovelace", "street": "1 Main St", "city": "Reno", "state": "NV", "zip": "89501"}


def order_line(order_id: str, line: int, **columns: Any) -> dict[str, Any]:
    """One warehouse row in ORDER_FIELDS' columns: line ``line`` of the order is product ``prod-<line>``,
    quantity ``line + 1``, shipped to ``ADDRESS`` in the US; ``columns`` add columns (after ``order_id``) or
    replace these."""
    defaults = {**ADDRESS, "country": "US", "product": f"prod-{line}", "qty": line + 1}
    row = {"order_id": order_id, **{k: v for k, v in columns.items() if k not in defaults}}
    row.update({k: columns.get(k, v) for k, v in defaults.items()})
    return row


def rows(n_orders: int, *, bad: set[int] = frozenset(), day: str = "2026-11-20") -> pd.DataFrame:
    out = []
    for i in range(n_orders):
        for line in range(2):
            out.append(
                order_line(
                    f"SYNC-{i:04d}",
                    line,
                    order_date=pd.Timestamp(day, tz="UTC") + pd.Timedelta(minutes=i),
                    country="NA" if i % 5 == 0 else "US",
                    qty=0 if i in bad else line + 1,
                )
            )
    return pd.DataFrame(out)


@pytest.fixture
def resources(sandbox, tmp_path):
    return {
        "trackstar": TrackstarResource(
            api_key=sandbox.api_key,
            base_url=sandbox.base_url,
            state_dir=str(tmp_path / "state"),
            connections=[
                TrackstarConnection(
                    name="acme", access_token="sandbox-token-wms", integration_name="wms_sandbox"
                )
            ],
        ),
        **trackstar_io_manager_resources(str(tmp_path / "io")),
    }


def make_sync(frame: pd.DataFrame, **kwargs) -> TrackstarSync:
    return TrackstarSync(name="s", mapping=MAPPING, load_rows=lambda context, window: frame, **kwargs)


def run(sync, instance, resources, **kwargs):
    assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync)]
    return dg.materialize(assets, instance=instance, resources=resources, **kwargs)


def test_sync_writes_valid_records_keeps_rejects_and_warns(sandbox, instance, resources):
    result = run(make_sync(rows(20, bad={7})), instance, resources)
    assert result.success
    results = result.asset_value(dg.AssetKey(["s", "write_results"]))
    rejects = result.asset_value(dg.AssetKey(["s", "rejects"]))
    assert sorted(results["status"].unique()) == ["created"]
    assert len(results) == 19
    assert set(rejects["key"]) == {"SYNC-0007"}
    assert rejects["reason"].str.contains("quantity").all()
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 19
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["reject_share"].passed
    assert checks["reject_share"].severity == dg.AssetCheckSeverity.WARN  # 1/20 <= 10%
    assert checks["reject_share"].metadata["reject_share"].value == pytest.approx(0.05)
    assert not checks["rows_valid"].passed
    assert checks["rows_valid"].metadata["pass_rate"].value == pytest.approx(0.95)
    assert "quantity" in checks["rows_valid"].metadata["failures_by_check_and_column"].value


def test_too_many_rejects_block_the_write(sandbox, instance, resources):
    result = run(make_sync(rows(10, bad={1, 3, 7})), instance, resources, raise_on_error=False)
    assert not result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["reject_share"].severity == dg.AssetCheckSeverity.ERROR
    assert sandbox.records("orders", token="sandbox-token-wms") == []


def test_rerun_sends_nothing_and_reports_unchanged(sandbox, instance, resources):
    sync = make_sync(rows(6))
    assert run(sync, instance, resources).success
    second = run(sync, instance, resources)
    results = second.asset_value(dg.AssetKey(["s", "write_results"]))
    assert set(results["status"]) == {"unchanged"}
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 6
    # read back without building paths: the stored results and this sync's ledger rows
    stored = sync.read_results(base_dir=resources["trackstar_io_manager"].base_dir)
    assert sorted(stored["key"]) == sorted(results["key"]) and set(stored["status"]) == {"unchanged"}
    ledger = sync.ledger_entries(resources["trackstar"])
    assert len(ledger) == 6 and set(ledger["status"]) == {"created"} and set(ledger["namespace"]) == {"s"}


def test_dry_run_and_write_from_send_nothing_before_the_date(sandbox, instance, resources):
    frame = pd.concat(
        [
            rows(3, day="2026-01-01"),
            rows(3, day="2026-11-20").assign(order_id=lambda f: f["order_id"] + "-new"),
        ],
        ignore_index=True,
    )
    sync = make_sync(frame, date_column="order_date", write_from="2026-06-01")
    result = run(sync, instance, resources)
    results = result.asset_value(dg.AssetKey(["s", "write_results"]))
    assert results["status"].value_counts().to_dict() == {"created": 3, "dry_run": 3}
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 3


def test_write_failures_fail_the_run_with_the_error_bodies(sandbox, instance, resources):
    sandbox.configure(faults={"error_5xx": 1.0})
    result = run(make_sync(rows(3)), instance, resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        failure.step_key == "s__write_results"
    )  # the records were written and recorded, then the run failed
    data = failure.event_specific_data.user_failure_data
    assert data is not None and "3" in data.description
    assert data.metadata["status_failed"].value == 3
    assert "failures" in data.metadata  # the error bodies


def test_write_orders_op_in_a_plain_job(sandbox, instance, resources):
    import json
    from importlib import resources as ir

    from trackstar_dagster.mapping import Target, build_payloads

    doc = json.loads(
        (ir.files("trackstar_dagster.sandbox") / "data" / "write-info" / "wms_sandbox.json").read_text()
    )
    batch = build_payloads(
        rows(4),
        MAPPING,
        {"acme": Target(connection="acme", integration_type="wms", integration_name="wms_sandbox", doc=doc)},
    )

    @dg.op
    def payloads() -> pd.DataFrame:
        return batch.payloads

    @dg.job(resource_defs=resources)
    def push():
        write_orders(payloads())

    result = push.execute_in_process(instance=instance)
    assert result.success
    out = result.output_for_node("write_orders")
    assert set(out["status"]) == {"created"} and len(out) == 4


def three_days() -> pd.DataFrame:
    return pd.concat(
        [
            rows(3, day="2026-11-18"),
            rows(5, day="2026-11-19").assign(order_id=lambda f: f["order_id"] + "-b"),
            rows(7, day="2026-11-20").assign(order_id=lambda f: f["order_id"] + "-c"),
        ],
        ignore_index=True,
    )


RANGE = {
    "dagster/asset_partition_range_start": "2026-11-18",
    "dagster/asset_partition_range_end": "2026-11-20",
}


def test_each_partition_of_a_single_run_backfill_carries_its_own_figures(sandbox, instance, resources):
    """3 days with 3, 5 and 7 orders in one run: each day's materializations say 3, 5 and 7 (not 15 each)."""
    sync = make_sync(
        three_days(),
        date_column="order_date",
        partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"),
    )
    result = run(
        sync,
        instance,
        resources,
        selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
        tags=RANGE,
    )
    assert result.success
    expected = {"2026-11-18": 3, "2026-11-19": 5, "2026-11-20": 7}
    figures = {
        (m.asset_key, m.partition): m.metadata
        for n in ("s__write_results", "s_payloads")
        for m in result.asset_materializations_for_node(n)
    }

    def of(key, name):
        return {p: md[name].value for (k, p), md in figures.items() if k == key}

    assert of(sync.results_key, "dagster/row_count") == expected
    assert of(sync.results_key, "status_created") == expected
    assert of(sync.payloads_key, "dagster/row_count") == expected
    assert of(sync.payloads_key, "records_acme") == expected
    assert of(sync.payloads_key, "source_rows") == {p: 2 * n for p, n in expected.items()}
    assert of(sync.rejects_key, "dagster/row_count") == dict.fromkeys(expected, 0)


def test_a_failed_write_step_still_sends_its_results_to_the_sink(sandbox, instance, resources):
    sunk: list[pd.DataFrame] = []
    sandbox.configure(faults={"error_5xx": 1.0})
    sync = make_sync(
        rows(3),
        results_sink=lambda context, name, frame: sunk.append(frame) if name == "write_results" else None,
    )
    result = run(sync, instance, resources, raise_on_error=False)
    assert not result.success
    assert len(sunk) == 1 and set(sunk[0]["status"]) == {"failed"} and len(sunk[0]) == 3
