"""A sync's frames by partition: which partition each source row belongs to, the ``partition`` column on the
payloads and rejects, and each partition's own metadata.

The ``partition`` column is added here, once, in the payloads step; every later step keeps it (the write step
carries it onto its results, ``write_step.carry_partition``), the IO manager stores each frame one file per
partition by it, and ``stamp_partitions`` gives each partition the figures of its own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.io_manager import PARTITION_COLUMN


def partition_of_rows(
    frame: pd.DataFrame,
    date_column: str | None,
    partitions_def: dg.PartitionsDefinition | None,
    keys: Sequence[str],
) -> np.ndarray | None:
    """The partition key of every source row (by its date), for a time-window partitioned sync."""
    if partitions_def is None or not keys:
        return None
    if date_column is None or not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return np.array([keys[0]] * len(frame), dtype=object)
    windows = [partitions_def.time_window_for_partition_key(k) for k in keys]
    starts = pd.DatetimeIndex([pd.Timestamp(w.start).tz_convert("UTC") for w in windows])
    dates = (
        pd.to_datetime(frame[date_column], utc=True, errors="coerce").dt.tz_convert("UTC").dt.as_unit("ns")
    )
    pos = (
        np.searchsorted(
            starts.as_unit("ns").asi8, dates.dt.tz_localize(None).to_numpy().astype(np.int64), side="right"
        )
        - 1
    )
    pos = np.clip(pos, 0, len(keys) - 1)
    return np.asarray(keys, dtype=object)[pos]


def _first_row(source_rows: Any) -> int:
    if isinstance(source_rows, list | tuple | np.ndarray) and len(source_rows):
        return int(source_rows[0])
    return int(source_rows) if isinstance(source_rows, int | np.integer) else 0


def tag_frame(
    out: pd.DataFrame,
    source: pd.DataFrame,
    row_partitions: np.ndarray | None,
    date_column: str | None = None,
    write_from: pd.Timestamp | None = None,
    *,
    dry_run_column: bool = True,
) -> pd.DataFrame:
    """Add ``partition`` (and, with ``dry_run_column``, ``dry_run``: rows dated before ``write_from``) to a
    payloads or rejects frame, by each record's first source row."""
    out = out.copy()
    first = (
        out["source_rows"].map(_first_row).to_numpy(dtype=np.int64)
        if len(out)
        else np.array([], dtype=np.int64)
    )
    if row_partitions is not None:
        out[PARTITION_COLUMN] = pd.array(row_partitions[first] if len(first) else [], dtype="string")
    if not dry_run_column:
        return out
    if write_from is not None and date_column is not None and len(out):
        before = (pd.to_datetime(source[date_column], utc=True, errors="coerce") < write_from).to_numpy(
            dtype=bool
        )
        out["dry_run"] = before[first]
    else:
        out["dry_run"] = False
    return out


def stamp_partitions(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    frame: pd.DataFrame,
    figures: Callable[[pd.DataFrame], dict[str, Any]],
) -> bool:
    """Each partition of the run gets the figures of its own rows (Dagster copies ``Output`` metadata onto
    every partition of a range: a 30-day backfill would show the range's totals on each day). False when
    the asset is not partitioned (then the caller puts the figures on the ``Output``)."""
    if not context.has_partition_key_range and not context.has_partition_key:
        return False
    keys = list(context.partition_keys)
    groups = (
        dict(tuple(frame.groupby(PARTITION_COLUMN, sort=False)))
        if (PARTITION_COLUMN in frame.columns and len(frame))
        else {}
    )
    if PARTITION_COLUMN not in frame.columns and len(keys) == 1:
        groups = {keys[0]: frame}
    for key in keys:
        context.add_asset_metadata(
            figures(groups.get(key, frame.iloc[0:0])), asset_key=asset_key, partition_key=key
        )
    return True
