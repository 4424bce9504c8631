"""A sync's frames by partition: the run's slices (what ``load_rows`` is asked for, one at a time), which
partition each source row belongs to, and the ``partition`` column on the payloads and rejects.

The ``partition`` column is added here, once, in the payloads step; every later step keeps it (the write step
carries it onto its results, ``write_step.carry_partition``), the IO manager stores each frame one file per
partition by it, and each partition gets the figures of its own rows (the steps' running tallies).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.io_manager import PARTITION_COLUMN


@dataclass(frozen=True)
class RowsRequest:
    """One slice of a run's rows: what the payloads step asks ``load_rows`` for, one slice at a time."""

    window: dg.TimeWindow | None  # the slice's time window (None: the sync is not time-partitioned)
    connections: tuple[str, ...] | None  # None: every connection; else only these (a connection dimension)
    partition_keys: tuple[str, ...]  # the run's partition keys (str form) this slice covers


def run_partition_keys(sync: Any, context: dg.AssetExecutionContext) -> list[str]:
    """The run's partition keys (none when the sync is not partitioned)."""
    return list(context.partition_keys) if sync.partitions_def is not None else []


#: time partitions a slice covers: few enough to bound what one load holds, enough that the fixed cost
#: of a build (~0.1-0.3 s) is spread over many rows (a two-year daily backfill: 25 slices)
PARTITIONS_PER_SLICE = 30


def rows_requests(sync: Any, context: dg.AssetExecutionContext) -> list[RowsRequest]:
    """The run's slices, in order: ``PARTITIONS_PER_SLICE`` time partitions at a time when rows can be told
    apart by ``date_column`` (a single-run backfill of two years never loads two years), else one slice."""
    keys = run_partition_keys(sync, context)
    pdef = sync.partitions_def
    if not isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return [RowsRequest(None, None, tuple(keys))]
    per = max(1, int(getattr(sync, "partitions_per_slice", PARTITIONS_PER_SLICE)))
    if sync.date_column is None or len(keys) <= 1:
        return [RowsRequest(context.partition_time_window, None, tuple(keys))]
    out = []
    for i in range(0, len(keys), per):
        part = keys[i : i + per]
        first, last = (
            pdef.time_window_for_partition_key(part[0]),
            pdef.time_window_for_partition_key(part[-1]),
        )
        out.append(RowsRequest(dg.TimeWindow(first.start, last.end), None, tuple(part)))
    return out


def load_slice(sync: Any, context: dg.AssetExecutionContext, request: RowsRequest) -> Iterator[pd.DataFrame]:
    """The slice's rows, as the chunks ``load_rows`` gives (one DataFrame, or an iterator of DataFrames).

    Rows a loader returns outside the slice (one that ignores its window) are kept only in the slice their
    date falls in (rows before the run's first day in its first, after its last in its last, as ever), so a
    row is never built twice."""
    loaded = sync.load_rows(context, request.window)
    chunks: Iterable[Any] = [loaded] if isinstance(loaded, pd.DataFrame) else loaded
    if loaded is None or not isinstance(chunks, Iterable):
        raise ConfigError(
            f"{sync.name}: load_rows must return a DataFrame or an iterator of DataFrames, "
            f"not {type(loaded).__name__}"
        )
    keys = run_partition_keys(sync, context)
    narrow = len(request.partition_keys) < len(keys) and sync.date_column is not None
    wanted = np.asarray(request.partition_keys, dtype=object)
    for chunk in chunks:
        if not isinstance(chunk, pd.DataFrame):
            raise ConfigError(f"{sync.name}: load_rows yielded a {type(chunk).__name__}, not a DataFrame")
        chunk = chunk.reset_index(drop=True)
        if narrow and len(chunk):
            parts = partition_of_rows(chunk, sync.date_column, sync.partitions_def, keys)
            if parts is not None and not (inside := np.isin(parts, wanted)).all():
                chunk = chunk[inside].reset_index(drop=True)
        yield chunk


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
