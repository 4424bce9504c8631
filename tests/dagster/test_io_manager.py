"""The frames IO manager: one file per partition, so a single-run backfill over many days is stored and read back
per day; a range reads back concatenated; a missing partition is an error that says what to do."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from trackstar_dagster.io_manager import PARTITION_COLUMN, TrackstarFrameIOManager, read_frames

KEY = dg.AssetKey(["s", "write_results"])
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01")


def results(days: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"key": f"{day}-{i}", "status": "created", PARTITION_COLUMN: day}
            for day, n in days.items()
            for i in range(n)
        ]
    )


def write(manager: TrackstarFrameIOManager, frame: pd.DataFrame, partitions: list[str] | None) -> None:
    context = dg.build_output_context(
        asset_key=KEY,
        partition_key=partitions[0] if partitions and len(partitions) == 1 else None,
        asset_partitions_def=DAILY if partitions else None,
    )
    if partitions and len(partitions) > 1:
        context = dg.build_output_context(
            asset_key=KEY,
            asset_partitions_def=DAILY,
            asset_partition_key_range=dg.PartitionKeyRange(partitions[0], partitions[-1]),
        )
    manager.handle_output(context, frame)


def read(manager: TrackstarFrameIOManager, first: str, last: str | None = None) -> pd.DataFrame:
    context = dg.build_input_context(
        asset_key=KEY,
        asset_partitions_def=DAILY,
        asset_partition_key_range=dg.PartitionKeyRange(first, last or first),
    )
    return manager.load_input(context)


def test_a_range_is_written_one_file_per_partition_and_read_back(tmp_path):
    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    days = {"2026-11-18": 3, "2026-11-19": 0, "2026-11-20": 2}
    write(manager, results(days), list(days))
    assert sorted(p.name for p in (tmp_path / "s" / "write_results").iterdir()) == [f"{d}.pkl" for d in days]
    assert list(read(manager, "2026-11-18")["key"]) == ["2026-11-18-0", "2026-11-18-1", "2026-11-18-2"]
    assert read(manager, "2026-11-19").empty  # a day without rows is stored empty, not missing
    both = read(manager, "2026-11-18", "2026-11-20")
    assert both[PARTITION_COLUMN].value_counts().to_dict() == {"2026-11-18": 3, "2026-11-20": 2}
    assert read_frames(KEY, ["2026-11-20"], base_dir=str(tmp_path))["key"].tolist() == [
        "2026-11-20-0",
        "2026-11-20-1",
    ]
    assert len(read_frames(KEY, base_dir=str(tmp_path))) == 5  # every stored partition


def test_rewriting_a_partition_replaces_only_that_one(tmp_path):
    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    write(manager, results({"2026-11-18": 3, "2026-11-19": 1}), ["2026-11-18", "2026-11-19"])
    write(manager, results({"2026-11-19": 4}), ["2026-11-19"])
    assert len(read(manager, "2026-11-18")) == 3 and len(read(manager, "2026-11-19")) == 4


def test_a_missing_partition_says_to_materialize_it(tmp_path):
    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    write(manager, results({"2026-11-18": 1}), ["2026-11-18"])
    with pytest.raises(dg.DagsterInvariantViolationError, match="no stored frame for partition 2026-11-19"):
        read(manager, "2026-11-18", "2026-11-19")
    assert read_frames(KEY, ["2026-11-19"], base_dir=str(tmp_path)).empty  # reading back: nothing, no error
    assert read_frames(dg.AssetKey(["never", "written"]), base_dir=str(tmp_path)).empty


def test_a_range_without_the_partition_column_cannot_be_split(tmp_path):
    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    with pytest.raises(dg.DagsterInvariantViolationError, match="needs a 'partition' column"):
        write(
            manager, results({"2026-11-18": 1}).drop(columns=[PARTITION_COLUMN]), ["2026-11-18", "2026-11-19"]
        )
    write(
        manager, results({"2026-11-18": 2}).drop(columns=[PARTITION_COLUMN]), ["2026-11-18"]
    )  # one key: fine
    assert len(read(manager, "2026-11-18")) == 2


def test_unpartitioned_frames_round_trip(tmp_path):
    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    frame = results({"all": 2}).drop(columns=[PARTITION_COLUMN])
    manager.handle_output(dg.build_output_context(asset_key=KEY), frame)
    back = manager.load_input(dg.build_input_context(asset_key=KEY))
    pd.testing.assert_frame_equal(back, frame)


def test_a_partition_stored_in_chunks_reads_back_whole_and_a_rerun_replaces_every_part(tmp_path):
    from trackstar_dagster.io_manager import StoredFrames

    manager = TrackstarFrameIOManager(base_dir=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    days = ["2026-11-18", "2026-11-19", "2026-11-20"]
    store = manager.store_for(instance, KEY, days)
    for chunk in (results({"2026-11-18": 2, "2026-11-20": 1}), results({"2026-11-18": 3})):
        store.split(chunk)
    handle = store.finish()
    assert isinstance(handle, StoredFrames) and handle.rows == 6
    assert [(k, len(f)) for k, f in handle.parts()] == [
        ("2026-11-18", 2),
        ("2026-11-18", 3),
        ("2026-11-19", 0),
        ("2026-11-20", 1),
    ]
    assert len(read(manager, "2026-11-18")) == 5 and read(manager, "2026-11-19").empty  # parts concatenated
    assert len(read_frames(KEY, base_dir=str(tmp_path))) == 6

    again = manager.store_for(instance, KEY, ["2026-11-18"])
    again.split(results({"2026-11-18": 1}))
    again.finish()
    assert len(read(manager, "2026-11-18")) == 1  # the earlier run's second part is gone
    assert len(read_frames(KEY, base_dir=str(tmp_path))) == 2
