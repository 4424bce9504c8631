"""A sync's steps one chunk at a time: a single-run backfill of 60 days, loaded a day (and a part of a day) at a
time and written a few records at a time, gives what one whole-range frame gives; dry runs read the ledger."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources as ir
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.dagster.test_sync import MAPPING, make_sync, resources, rows, run  # noqa: F401 (a fixture)
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.checks import reject_share_result, rows_valid_result
from trackstar_dagster.io_manager import PARTITION_COLUMN, read_frames
from trackstar_dagster.mapping import Target, build_payloads
from trackstar_dagster.mapping.previews import preview_bodies, top_reject_reasons
from trackstar_dagster.metadata import frame_metadata
from trackstar_dagster.partitions import partition_of_rows, tag_frame
from trackstar_dagster.write_step import results_metadata

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")
DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range("2026-03-01", periods=60, freq="D")]
WRITE_FROM = "2026-04-15"  # days before it are dry (reported, not sent)


def sixty_days() -> pd.DataFrame:
    """1 to 4 orders a day (2 rows each), a bad quantity every 17th order, in date order."""
    frames, n = [], 0
    for i, day in enumerate(DAYS):
        count = 1 + i % 4
        bad = {j for j in range(count) if (n + j) % 17 == 5}
        frames.append(rows(count, bad=bad, day=day).assign(order_id=lambda f, d=day: f["order_id"] + "-" + d))
        n += count
    return pd.concat(frames, ignore_index=True)


def window_loader(frame: pd.DataFrame, pieces: int = 2):
    """A loader honouring its window, answering each day in ``pieces`` chunks split between orders, rows in
    their order (a generator): every day with two orders or more is split across chunks."""

    def load(context, window):
        dates = frame["order_date"]
        rows_in = frame[(dates >= window.start) & (dates < window.end)] if window is not None else frame
        for _, day in rows_in.groupby(rows_in["order_date"].dt.floor("D"), sort=True):
            orders = list(dict.fromkeys(day["order_id"]))
            size = -(-len(orders) // pieces)
            for i in range(pieces):
                yield day[day["order_id"].isin(set(orders[i * size : (i + 1) * size]))]

    return load


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def materializations(result, step: str) -> dict[tuple[dg.AssetKey, str], dict]:
    return {(m.asset_key, m.partition): m.metadata for m in result.asset_materializations_for_node(step)}


def values(metadata: dict) -> dict:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def test_sixty_days_in_chunks_give_what_the_whole_range_gives(sandbox, instance, resources):  # noqa: F811
    frame = sixty_days()
    sync = make_sync(frame, date_column="order_date", partitions_def=DAILY, write_from=WRITE_FROM)
    sync = dataclasses.replace(sync, load_rows=window_loader(frame, pieces=2))
    result = run(
        sync,
        instance,
        resources,
        selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
        tags=range_tags(DAYS[0], DAYS[-1]),
        run_config={"ops": {"s__write_results": {"config": {"group_rows": 7}}}},
    )
    assert result.success

    # the whole range as one frame, as the payloads step built it before (the same functions, one call)
    doc = json.loads(
        (ir.files("trackstar_dagster.sandbox") / "data" / "write-info" / "wms_sandbox.json").read_text()
    )
    target = Target(connection="acme", integration_type="wms", integration_name="wms_sandbox", doc=doc)
    batch = build_payloads(frame, sync.tagged_mapping, {"acme": target})
    parts = partition_of_rows(frame, "order_date", DAILY, DAYS)
    payloads = tag_frame(batch.payloads, frame, parts, "order_date", sync.write_from_ts)
    rejects = tag_frame(batch.rejects, frame, parts, dry_run_column=False)
    assert batch.rejected_records > 3 and payloads["dry_run"].any() and not payloads["dry_run"].all()

    io = resources["trackstar_io_manager"].base_dir
    stored_payloads = read_frames(sync.payloads_key, base_dir=io)
    stored_rejects = read_frames(sync.rejects_key, base_dir=io)
    by_key = ["connection", "key"]
    pd.testing.assert_frame_equal(
        stored_payloads.sort_values(by_key, ignore_index=True),
        payloads.sort_values(by_key, ignore_index=True),
    )
    by_row = ["key", "field", "reason"]
    pd.testing.assert_frame_equal(
        stored_rejects.sort_values(by_row, ignore_index=True), rejects.sort_values(by_row, ignore_index=True)
    )
    # a day loaded in two chunks is stored in two parts, read back as one
    sent_keys = set(payloads["key"])
    halves = [
        [
            any(k in sent_keys for k in half)
            for half in (orders[: -(-len(orders) // 2)], orders[-(-len(orders) // 2) :])
        ]
        for orders in (list(dict.fromkeys(g["order_id"])) for _, g in frame.groupby(parts, sort=False))
    ]
    two_parts = sum(all(h) for h in halves)
    assert two_parts > 30
    assert len(list(Path(io).joinpath(*sync.payloads_key.path).glob("*.more/1.pkl"))) == two_parts

    figures = materializations(result, "s_payloads")
    results_figures = materializations(result, "s__write_results")
    results = read_frames(sync.results_key, base_dir=io)
    assert len(results) == len(payloads)
    sent = ~results["key"].isin(payloads.loc[payloads["dry_run"], "key"])
    assert set(results.loc[sent, "status"]) == {"created"} and set(results.loc[~sent, "status"]) == {
        "dry_run"
    }
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == int(sent.sum())
    for day in DAYS:
        day_payloads = payloads[payloads[PARTITION_COLUMN] == day]
        day_rejects = rejects[rejects[PARTITION_COLUMN] == day]
        got = values(figures[(sync.payloads_key, day)])
        assert got["dagster/row_count"] == len(day_payloads)
        assert got["source_rows"] == int((parts == day).sum())
        assert got["dry_run_records"] == int(day_payloads["dry_run"].sum())
        assert got.get("records_acme", 0) == len(day_payloads)
        assert got["preview"] == preview_bodies(day_payloads)
        assert got["dagster/column_schema"] == frame_metadata(day_payloads)["dagster/column_schema"]
        got = values(figures[(sync.rejects_key, day)])
        assert got["rejected_records"] == day_rejects["key"].nunique()
        assert got["reject_rows"] == len(day_rejects)
        assert got["top_reasons"] == top_reject_reasons(day_rejects)
        got = values(results_figures[(sync.results_key, day)])
        want = values(results_metadata(results[results[PARTITION_COLUMN] == day]))
        assert {k: got[k] for k in want if k.startswith(("status_", "dry_run_", "dagster/row"))} == {
            k: v for k, v in want.items() if k.startswith(("status_", "dry_run_", "dagster/row"))
        }

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    whole_rows = rows_valid_result(
        sync.payloads_key,
        "rows_valid",
        batch.checks,
        n_rows=len(frame),
        n_records=batch.records,
        n_rejected=batch.rejected_records,
    )
    whole_share = reject_share_result(
        sync.payloads_key, "reject_share", batch.rejected_records, batch.records, sync.max_reject_share
    )
    for name, whole in (("rows_valid", whole_rows), ("reject_share", whole_share)):
        assert checks[name].passed == whole.passed and checks[name].severity == whole.severity
        got, want = values(checks[name].metadata), values(whole.metadata)
        # the sample rows are the first failures met: chunk by chunk, not the whole range's value order
        assert got.pop("sample_failure_cases", None) is not None or "sample_failure_cases" not in want
        want.pop("sample_failure_cases", None)
        assert got == want
        assert checks[name].description == whole.description


def test_an_unpartitioned_sync_with_a_chunk_iterator_gets_every_chunk(sandbox, instance, resources):  # noqa: F811
    frame = rows(12, bad={4})
    chunks = [frame.iloc[i : i + 6] for i in range(0, 24, 6)]  # 3 orders each
    sync = dataclasses.replace(make_sync(frame), load_rows=lambda context, window: iter(chunks))
    result = run(sync, instance, resources)
    assert result.success
    results = result.asset_value(sync.results_key)
    assert sorted(results["key"]) == sorted(f"SYNC-{i:04d}" for i in range(12) if i != 4)
    payloads = result.asset_value(sync.payloads_key)
    assert sorted(sum(payloads["source_rows"], [])) == [r for r in range(24) if r not in (8, 9)]
    figures = values(materializations(result, "s_payloads")[(sync.payloads_key, None)])
    assert figures["dagster/row_count"] == 11 and figures["source_rows"] == 24
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["reject_share"]
    assert check.metadata["records"].value == 12 and check.metadata["rejected_records"].value == 1


def test_a_record_split_across_chunks_is_refused_by_name(sandbox, instance, resources):  # noqa: F811
    frame = rows(3)
    sync = dataclasses.replace(
        make_sync(frame), load_rows=lambda context, window: iter([frame.iloc[:3], frame.iloc[3:]])
    )
    with pytest.raises(ConfigError, match="SYNC-0001.*in two chunks"):
        run(sync, instance, resources)
    assert sandbox.records("orders", token="sandbox-token-wms") == []


def test_a_users_asset_reads_the_payloads_as_a_frame(sandbox, instance, resources):  # noqa: F811
    frame = sixty_days()
    sync = make_sync(frame, date_column="order_date", partitions_def=DAILY)

    @dg.asset(
        partitions_def=DAILY,
        ins={"payloads": dg.AssetIn(sync.payloads_key, input_manager_key="trackstar_io_manager")},
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def payload_sizes(payloads: pd.DataFrame) -> None:
        assert isinstance(payloads, pd.DataFrame)
        stored = read_frames(sync.payloads_key, DAYS[:3], base_dir=resources["trackstar_io_manager"].base_dir)
        assert set(payloads[PARTITION_COLUMN]) == set(DAYS[:3]) and len(payloads) == len(stored) >= 4

    from trackstar_dagster import build_trackstar_schema_assets, build_trackstar_sync_assets

    assets = [*build_trackstar_schema_assets(), *build_trackstar_sync_assets(sync), payload_sizes]
    result = dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, payload_sizes.key),
        tags=range_tags(DAYS[0], DAYS[2]),
    )
    assert result.success


THREE = ["2026-03-01", "2026-03-02", "2026-03-03"]


def three_days_of(n: int) -> pd.DataFrame:
    return pd.concat(
        [rows(n, day=d).assign(order_id=lambda f, d=d: f["order_id"] + "-" + d) for d in THREE],
        ignore_index=True,
    )


def test_a_dry_run_classifies_each_record_against_the_ledger_and_writes_nothing(sandbox, instance, resources):  # noqa: F811
    first = three_days_of(4)
    sync = make_sync(first, date_column="order_date", partitions_def=DAILY)
    selection = dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key)
    assert run(sync, instance, resources, selection=selection, tags=range_tags(THREE[0], THREE[-1])).success
    held = sandbox.records("orders", token="sandbox-token-wms")
    ledger_before = sync.ledger_entries(resources["trackstar"])
    assert len(held) == 12 and len(ledger_before) == 12

    # 3 records changed (a new city), 5 new ones on the last day, 9 as they were
    changed = {f"SYNC-0000-{THREE[0]}", f"SYNC-0001-{THREE[1]}", f"SYNC-0002-{THREE[2]}"}
    later = pd.concat(
        [
            first.assign(city=first["city"].where(~first["order_id"].isin(changed), "Elko")),
            rows(5, day=THREE[2]).assign(order_id=lambda f: f["order_id"] + "-new"),
        ],
        ignore_index=True,
    )
    dry = make_sync(later, date_column="order_date", partitions_def=DAILY)
    result = run(
        dry,
        instance,
        resources,
        selection=selection,
        tags=range_tags(THREE[0], THREE[-1]),
        run_config={"ops": {"s__write_results": {"config": {"dry_run": True, "group_rows": 4}}}},
    )
    assert result.success
    results = read_frames(dry.results_key, base_dir=resources["trackstar_io_manager"].base_dir)
    assert set(results["status"]) == {"dry_run"}
    would = dict(zip(results["key"], results["would"], strict=True))
    assert {k for k, w in would.items() if w == "changed"} == changed
    assert {k for k, w in would.items() if w == "new"} == {f"SYNC-{i:04d}-new" for i in range(5)}
    assert sum(w == "unchanged" for w in would.values()) == 9
    # nothing written: Trackstar and the ledger as the real run left them
    assert sandbox.records("orders", token="sandbox-token-wms") == held
    pd.testing.assert_frame_equal(sync.ledger_entries(resources["trackstar"]), ledger_before)
    figures = {p: values(md) for (k, p), md in materializations(result, "s__write_results").items()}
    assert figures[THREE[2]]["status_dry_run"] == 4 + 5
    assert (figures[THREE[2]]["dry_run_new"], figures[THREE[2]]["dry_run_changed"]) == (5, 1)
    assert sum(f["dry_run_unchanged"] for f in figures.values()) == 9


def test_a_write_step_failing_midway_keeps_every_finished_groups_results(sandbox, instance, resources):  # noqa: F811
    sunk: list[pd.DataFrame] = []

    def sink(context, name, frame):
        if name == "write_results":
            sunk.append(frame)
            if len(sunk) == 1:  # Trackstar fails from the first run's second group on
                sandbox.configure(faults={"error_5xx": 1.0})

    sync = dataclasses.replace(
        make_sync(three_days_of(3), date_column="order_date", partitions_def=DAILY), results_sink=sink
    )
    selection = dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key)
    config = {"ops": {"s__write_results": {"config": {"group_rows": 3}}}}  # one day a group
    tags = range_tags(THREE[0], THREE[-1])
    result = run(
        sync, instance, resources, selection=selection, tags=tags, run_config=config, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "s__write_results"
    assert (
        failure.event_specific_data.user_failure_data.metadata["status_failed"].value == 6
    )  # the run's totals

    stored = sync.read_results(base_dir=resources["trackstar_io_manager"].base_dir)
    by_day = stored.groupby(PARTITION_COLUMN)["status"].agg(lambda s: sorted(set(s))).to_dict()
    assert by_day == {THREE[0]: ["created"], THREE[1]: ["failed"], THREE[2]: ["failed"]}
    assert [sorted(set(f[PARTITION_COLUMN])) for f in sunk] == [[d] for d in THREE]
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 3

    sandbox.configure(faults={"error_5xx": 0.0})
    again = run(sync, instance, resources, selection=selection, tags=tags, run_config=config)
    assert again.success
    stored = sync.read_results(base_dir=resources["trackstar_io_manager"].base_dir)
    assert stored["status"].value_counts().to_dict() == {"created": 6, "unchanged": 3}
    assert len(sandbox.records("orders", token="sandbox-token-wms")) == 9  # each order once
