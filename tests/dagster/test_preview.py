"""A dry run in upsert mode previews, per changed record, the fields a real run would change in Trackstar."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import duckdb
import pandas as pd
import yaml
from dagster_duckdb import DuckDBResource

from tests.dagster import test_sync
from tests.dagster.test_example_project import ROOT, example_env, load_example_defs  # noqa: F401 (a fixture)
from tests.dagster.test_sync import ORDER_FIELDS, order_line, run
from trackstar_dagster import MappingConfig, TrackstarSync
from trackstar_dagster.sql import sql_results_sink

resources = test_sync.resources  # the fixture: the sandbox's acme connection, the IO manager

TOKEN = "sandbox-token-wms"
MAPPING = MappingConfig.model_validate(
    {
        "action": "create_order",
        "key": "order_id",
        "connection": "acme",
        "fields": {**ORDER_FIELDS, "line_items.sku": "product"},
    }
)


def orders(n: int, *, lines: int = 2) -> pd.DataFrame:
    return pd.DataFrame([order_line(f"P-{i:04d}", line) for i in range(n) for line in range(lines)])


def sync_of(frame: pd.DataFrame) -> TrackstarSync:
    return TrackstarSync(name="s", mapping=MAPPING, load_rows=lambda context, window: frame, mode="upsert")


def dry(preview_limit: int | None = None, **more) -> dict:
    config = {"dry_run": True, **more}
    if preview_limit is not None:
        config["preview_limit"] = preview_limit
    return {"ops": {"s__write_results": {"config": config}}}


def results_of(result) -> pd.DataFrame:
    return result.asset_value(dg.AssetKey(["s", "write_results"]))


def metadata_of(result) -> dict:
    (mat,) = [m for m in result.asset_materializations_for_node("s__write_results")]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def changes_by_key(results: pd.DataFrame) -> dict[str, dict[str, tuple]]:
    out = {}
    for key, text in zip(results["key"], results["changes"], strict=True):
        if isinstance(text, str):
            out[key] = {c["field"]: (c["held"], c["new"]) for c in json.loads(text)}
    return out


def edit_held(sandbox, order_number: str, edit) -> None:
    """Change (or, with edit returning None, delete) a record in Trackstar, as someone else would."""

    def change() -> None:
        for bucket in sandbox.sandbox.store.records.values():
            for rid, record in list(bucket.items()):
                if record.get("order_number") == order_number:
                    new = edit(json.loads(json.dumps(record)))
                    if new is None:
                        del bucket[rid]
                    else:
                        bucket[rid] = new

    sandbox._call(change)


def test_a_dry_run_shows_exactly_the_fields_that_would_change_and_writes_nothing(
    sandbox, instance, resources
):
    first = orders(6)
    assert run(sync_of(first), instance, resources).success
    held = sandbox.records("orders", token=TOKEN)
    assert len(held) == 6
    ledger_before = sync_of(first).ledger_entries(resources["trackstar"])

    # Trackstar's own forms of what was sent: numbers as floats; not a change
    def as_floats(record):
        for item in record["line_items"]:
            item["quantity"] = float(item["quantity"])
        return record

    for i in range(6):
        edit_held(sandbox, f"P-{i:04d}", as_floats)
    edit_held(sandbox, "P-0004", lambda record: None)  # deleted in Trackstar
    held = sandbox.records("orders", token=TOKEN)

    later = first.copy()
    later.loc[later["order_id"] == "P-0000", "city"] = "Elko"
    later.loc[later["order_id"] == "P-0000", "name"] = "Grace Hopper"
    later.loc[(later["order_id"] == "P-0001") & (later["product"] == "prod-1"), "qty"] = 9
    added = later[later["order_id"] == "P-0002"].head(1).assign(product="prod-7", qty=4)
    later.loc[later["order_id"] == "P-0004", "city"] = "Elko"
    later = pd.concat([later, added], ignore_index=True)

    reads_before = len(sandbox.arrivals(TOKEN, "read"))
    result = run(sync_of(later), instance, resources, run_config=dry())
    assert result.success
    results = results_of(result).set_index("key")
    assert set(results["status"]) == {"dry_run"}
    assert results["would"].to_dict() == {
        "P-0000": "changed",
        "P-0001": "changed",
        "P-0002": "changed",
        "P-0003": "unchanged",
        "P-0004": "changed",
        "P-0005": "unchanged",
    }
    changes = changes_by_key(results.reset_index())
    assert changes["P-0000"] == {
        "ship_to_address.city": ("Reno", "Elko"),
        "ship_to_address.full_name": ("Ada Lovelace", "Grace Hopper"),  # the warehouse's table holds values
    }
    assert changes["P-0001"] == {"line_items[sku=prod-1].quantity": (2.0, 9)}
    assert changes["P-0002"] == {
        "line_items[sku=prod-7]": (None, {"product_id": "prod-7", "sku": "prod-7", "quantity": 4})
    }
    assert "P-0003" not in changes and "P-0005" not in changes  # unchanged records show no fields
    assert results["preview"].astype(object).where(results["preview"].notna(), None).to_dict() == {
        "P-0000": "previewed",
        "P-0001": "previewed",
        "P-0002": "previewed",
        "P-0003": None,
        "P-0004": "missing",
        "P-0005": None,
    }
    # 4 reads, one per changed record; nothing written: Trackstar and the ledger as they were
    assert len(sandbox.arrivals(TOKEN, "read")) - reads_before == 4
    assert sandbox.records("orders", token=TOKEN) == held
    pd.testing.assert_frame_equal(sync_of(first).ledger_entries(resources["trackstar"]), ledger_before)

    md = metadata_of(result)
    assert md["preview_records_read"] == 4
    assert md["preview_records_previewed"] == 3
    assert md["preview_records_missing"] == 1
    assert md["preview_records_not_previewed"] == 0
    assert md["preview_fields_changed"] == {
        "ship_to_address.city": 1,
        "ship_to_address.full_name": 1,
        "line_items[].quantity": 1,
        "line_items[]": 1,
    }
    table = md["preview_changes"]
    assert "ship_to_address.city" in table and "Elko" in table and "P-0004" in table
    assert "Grace Hopper" not in table and "Ada Lovelace" not in table  # personal data masked in metadata


def test_preview_limit_caps_the_reads_and_counts_the_rest_within_the_read_budget(
    sandbox, instance, resources
):
    first = orders(25, lines=1)
    assert run(sync_of(first), instance, resources).success
    later = first.assign(city="Elko")
    reads_before = len(sandbox.arrivals(TOKEN, "read"))
    result = run(sync_of(later), instance, resources, run_config=dry(preview_limit=18, group_rows=10))
    assert result.success
    results = results_of(result)
    assert (results["would"] == "changed").all()
    assert results["preview"].value_counts().to_dict() == {"previewed": 18, "not_previewed": 7}
    assert set(results.loc[results["preview"] == "not_previewed", "changes"].isna()) == {True}
    md = metadata_of(result)
    assert (md["preview_records_read"], md["preview_records_not_previewed"]) == (18, 7)
    assert "7 changed records not previewed" in md["preview_note"] and "preview_limit" in md["preview_note"]
    assert md["preview_fields_changed"] == {"ship_to_address.city": 18}
    reads = sandbox.arrivals(TOKEN, "read")[reads_before:]
    assert len(reads) == 18 and all(admitted for _, admitted in reads)  # no read was refused (429)
    times = [t for t, _ in reads]
    per_second = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert per_second <= 10


def test_a_create_only_dry_run_reads_nothing(sandbox, instance, resources):
    first = orders(3)
    assert run(sync_of(first), instance, resources).success
    later = first.assign(city="Elko")
    reads_before = len(sandbox.arrivals(TOKEN, "read"))
    result = run(sync_of(later), instance, resources, run_config=dry(mode="create_only"))
    assert result.success
    results = results_of(result)
    assert (results["would"] == "changed").all()
    assert "changes" not in results.columns or results["changes"].isna().all()
    assert len(sandbox.arrivals(TOKEN, "read")) == reads_before
    assert "preview_records_read" not in metadata_of(result)


def test_preview_limit_zero_reads_nothing_and_says_so(sandbox, instance, resources):
    first = orders(2)
    assert run(sync_of(first), instance, resources).success
    reads_before = len(sandbox.arrivals(TOKEN, "read"))
    result = run(sync_of(first.assign(city="Elko")), instance, resources, run_config=dry(preview_limit=0))
    assert set(results_of(result)["preview"]) == {"not_previewed"}
    assert len(sandbox.arrivals(TOKEN, "read")) == reads_before
    assert metadata_of(result)["preview_records_not_previewed"] == 2


def test_the_changes_reach_a_warehouse_table_a_real_run_created(sandbox, instance, resources, tmp_path):
    warehouse = str(tmp_path / "warehouse.duckdb")
    with_db = {**resources, "duckdb": DuckDBResource(database=warehouse)}

    def sync_with_sink(frame: pd.DataFrame) -> TrackstarSync:
        return dataclasses.replace(
            sync_of(frame),
            results_sink=sql_results_sink("t", "duckdb"),
            extra_resource_keys=frozenset({"duckdb"}),
        )

    first = orders(3)
    assert run(
        sync_with_sink(first), instance, with_db
    ).success  # creates t_write_results: no preview columns
    later = first.assign(city=first["city"].where(first["order_id"] != "P-0001", "Elko"))
    assert run(sync_with_sink(later), instance, with_db, run_config=dry()).success
    con = duckdb.connect(warehouse, read_only=True)
    try:
        rows = con.execute("SELECT key, preview, changes FROM t_write_results ORDER BY key").fetchall()
    finally:
        con.close()
    assert [(k, p) for k, p, _ in rows] == [("P-0000", None), ("P-0001", "previewed"), ("P-0002", None)]
    assert json.loads(rows[1][2]) == [
        {"field": "ship_to_address.city", "held": "Reno", "new": "Elko", "change": "changed"}
    ]


def test_the_example_project_s_preview_run_config_fits_its_job(example_env):  # noqa: F811
    config = yaml.safe_load((ROOT / "example_project" / "preview_changes.yaml").read_text())
    job = load_example_defs().resolve_job_def("orders_sync_job")
    got = dg.validate_run_config(job, config)["ops"]["orders_sync__write_results"]["config"]
    assert (got["dry_run"], got["mode"], got["preview_limit"]) == (True, "upsert", 200)


def test_records_dated_before_write_from_are_not_previewed(sandbox, instance, resources):
    first = orders(4).assign(order_date=pd.Timestamp("2026-11-20", tz="UTC"))
    old = first["order_id"].isin(["P-0000", "P-0001"])
    first.loc[old, "order_date"] = pd.Timestamp("2026-01-05", tz="UTC")

    def dated(frame: pd.DataFrame, write_from: str | None) -> TrackstarSync:
        return dataclasses.replace(sync_of(frame), date_column="order_date", write_from=write_from)

    assert run(dated(first, None), instance, resources).success  # all four written once
    reads_before = len(sandbox.arrivals(TOKEN, "read"))
    result = run(dated(first.assign(city="Elko"), "2026-06-01"), instance, resources, run_config=dry())
    results = results_of(result).set_index("key")
    assert (results["would"] == "changed").all()
    # a real run would not send the two old ones (before write_from): nothing to preview there
    assert results["preview"].isna().to_dict() == {
        "P-0000": True,
        "P-0001": True,
        "P-0002": False,
        "P-0003": False,
    }
    assert len(sandbox.arrivals(TOKEN, "read")) - reads_before == 2
