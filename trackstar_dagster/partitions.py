"""A sync's frames by partition: the slices a run asks ``load_rows`` for, the ``partition`` column on the
payloads and rejects, and each partition's own metadata.

The ``partition`` column is added once, in the payloads step, by ``partition_of_rows``
(``partition_keys``: a row's date, and its connection for a time x connection sync); every later step keeps it
(the write step carries it onto its results), the IO manager stores each frame one file per partition by it,
and each partition gets the figures of its own rows (the steps' running tallies, through
``add_partition_metadata``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.io_manager import PARTITION_COLUMN
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.partition_keys import (
    CONNECTION_DIMENSION,
    TIME_DIMENSION,
    UNROUTED,
    check_partitions_def,
    connection_mask,
    is_by_connection,
    mapping_for,
    multi_key,
    partition_of_rows,
    split_key,
    time_partitions_def,
)

__all__ = [
    "CONNECTION_DIMENSION",
    "PARTITIONS_PER_SLICE",
    "TIME_DIMENSION",
    "UNROUTED",
    "RowsRequest",
    "add_partition_metadata",
    "check_partitions_def",
    "load_slice",
    "mapping_for",
    "multi_key",
    "partition_of_rows",
    "rows_requests",
    "run_connections",
    "run_partition_keys",
    "tag_frame",
    "time_partitions_def",
]

#: time partitions a slice covers: few enough to bound what one load holds, enough that the fixed cost
#: of a build (~0.1-0.3 s) is spread over many rows (a two-year daily backfill: 25 slices). A time x
#: connection slice holds up to this many partition keys (days x the run's connections), one day at least.
PARTITIONS_PER_SLICE = 30


class SyncRows(Protocol):
    """What the slices need of a sync (``TrackstarSync``, which sits a layer above this module)."""

    @property
    def name(self) -> str: ...
    @property
    def partitions_def(self) -> dg.PartitionsDefinition | None: ...
    @property
    def date_column(self) -> str | None: ...
    @property
    def mapping(self) -> MappingConfig: ...
    @property
    def load_rows(self) -> Callable[..., Any]: ...


@dataclass(frozen=True)
class RowsRequest:
    """One slice of a run's rows: what the payloads step asks ``load_rows`` for, one slice at a time."""

    window: dg.TimeWindow | None  # the slice's time window (None: the sync is not time-partitioned)
    connections: tuple[str, ...] | None  # None: every connection; else only these (a connection dimension)
    partition_keys: tuple[str, ...]  # the run's partition keys (str form) this slice covers


# -- a run's slices -------------------------------------------------------------------------------------


def run_partition_keys(sync: SyncRows, context: dg.AssetExecutionContext) -> list[str]:
    """The run's partition keys (none when the sync is not partitioned)."""
    return list(context.partition_keys) if sync.partitions_def is not None else []


def rows_requests(sync: SyncRows, context: dg.AssetExecutionContext) -> list[RowsRequest]:
    """The run's slices, in order. Time-partitioned: ``PARTITIONS_PER_SLICE`` time partitions at a time when
    rows can be told apart by ``date_column`` (a single-run backfill of two years never loads two years),
    else one slice. Time x connection: consecutive days of the run's connections, up to that many keys a
    slice (a one-customer backfill of two years: 25 slices of one connection; an all-customers day: one).
    Otherwise one slice of the whole run."""
    keys = run_partition_keys(sync, context)
    pdef = sync.partitions_def
    per = max(1, int(getattr(sync, "partitions_per_slice", PARTITIONS_PER_SLICE)))
    if is_by_connection(pdef):
        return _connection_slices(pdef, keys, per)  # type: ignore[arg-type]
    if not isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return [RowsRequest(None, None, tuple(keys))]
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


def _connection_slices(pdef: dg.MultiPartitionsDefinition, keys: list[str], per: int) -> list[RowsRequest]:
    time_def = time_partitions_def(pdef)
    assert time_def is not None  # check_partitions_def
    by_time: dict[str, list[str]] = {}
    for key in keys:
        by_time.setdefault(split_key(pdef, key)[0], []).append(str(key))
    requests: list[RowsRequest] = []
    for time_key, slice_keys in sorted(
        by_time.items(), key=lambda kv: time_def.time_window_for_partition_key(kv[0]).start
    ):
        conns = tuple(dict.fromkeys(split_key(pdef, k)[1] or "" for k in slice_keys))
        window = time_def.time_window_for_partition_key(time_key)
        last = requests[-1] if requests else None
        if (
            last is not None
            and last.window is not None
            and last.connections == conns
            and last.window.end == window.start
            and len(last.partition_keys) + len(slice_keys) <= per
        ):  # the next time partition of the same connections: one query, not one per day
            requests[-1] = RowsRequest(
                dg.TimeWindow(last.window.start, window.end), conns, (*last.partition_keys, *slice_keys)
            )
        else:
            requests.append(RowsRequest(window, conns, tuple(slice_keys)))
    return requests


def run_connections(requests: Sequence[RowsRequest]) -> tuple[str, ...] | None:
    """The connections a run's slices cover (None: every connection)."""
    if any(r.connections is None for r in requests):
        return None
    return tuple(dict.fromkeys(c for r in requests for c in r.connections or ()))


def takes_rows_request(load_rows: Callable[..., Any]) -> bool:
    """A loader that takes the ``RowsRequest`` (and can filter by connection itself), not only the window:
    its second parameter is annotated ``RowsRequest``, or it says so with ``takes_rows_request = True``."""
    if getattr(load_rows, "takes_rows_request", False):
        return True
    try:
        params = list(inspect.signature(load_rows).parameters.values())
    except (TypeError, ValueError):
        return False
    if len(params) < 2:
        return False
    ann = params[1].annotation
    return ann is RowsRequest or ann == "RowsRequest"


def load_slice(
    sync: SyncRows, context: dg.AssetExecutionContext, request: RowsRequest
) -> Iterator[pd.DataFrame]:
    """The slice's rows, as the chunks ``load_rows`` gives (one DataFrame, or an iterator of DataFrames); old
    2-argument loaders get ``request.window``, loaders taking a ``RowsRequest`` the request.

    With ``request.connections``, rows the mapping routes to other connections are left out, counted and
    logged (never sent). Rows a loader returns outside the slice (one that ignores its window) are kept only
    in the slice their date falls in (rows before the run's first day in its first, after its last in its
    last, as ever), so a row is never built twice."""
    loaded = sync.load_rows(context, request if takes_rows_request(sync.load_rows) else request.window)
    chunks: Iterable[Any] = [loaded] if isinstance(loaded, pd.DataFrame) else loaded
    if loaded is None or not isinstance(chunks, Iterable):
        raise ConfigError(
            f"{sync.name}: load_rows must return a DataFrame or an iterator of DataFrames, "
            f"not {type(loaded).__name__}"
        )
    keys = run_partition_keys(sync, context)
    narrow = len(request.partition_keys) < len(keys) and sync.date_column is not None
    inside_keys = np.asarray(request.partition_keys, dtype=object)
    for chunk in chunks:
        if not isinstance(chunk, pd.DataFrame):
            raise ConfigError(f"{sync.name}: load_rows yielded a {type(chunk).__name__}, not a DataFrame")
        chunk = chunk.reset_index(drop=True)
        if request.connections is not None and len(chunk):
            keep = connection_mask(chunk, sync.mapping, request.connections)
            if not keep.all():
                context.log.warning(
                    f"{int((~keep).sum())} rows of connections outside this run's partitions "
                    f"({', '.join(request.connections)}) left out: load_rows returned them; they are not sent"
                )
                chunk = chunk[keep].reset_index(drop=True)
        if narrow and len(chunk):
            parts = partition_of_rows(chunk, sync.date_column, sync.partitions_def, keys, sync.mapping)
            if parts is not None and not (inside := np.isin(parts, inside_keys)).all():
                chunk = chunk[inside].reset_index(drop=True)
        yield chunk


# -- per-partition frames and metadata ------------------------------------------------------------------


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


def add_partition_metadata(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, by_key: dict[str, dict[str, Any]]
) -> None:
    """``add_asset_metadata`` for many partitions of the run. Dagster 1.13 checks each call's key against
    the run's whole key list, rebuilt every call (730 days x 3 assets: 70 s of a two-year backfill, O(n^2));
    the keys are checked here once and given to the step's metadata accumulator, else (another Dagster)
    through the public call."""
    if not by_key:
        return
    step = getattr(context.op_execution_context, "_step_execution_context", None)
    acc = getattr(step, "_metadata_accumulator", None)
    if acc is None or not hasattr(acc, "with_additional_asset_metadata"):
        for key, metadata in by_key.items():
            context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=key)
        return
    targeted = {str(k) for k in context.partition_keys}
    stray = [k for k in by_key if str(k) not in targeted]
    if stray:
        raise dg.DagsterInvariantViolationError(f"metadata for partitions {stray[:5]} not in this run")
    for key, metadata in by_key.items():
        acc = acc.with_additional_asset_metadata(asset_key=asset_key, partition_key=key, metadata=metadata)
    step._metadata_accumulator = acc  # type: ignore[union-attr]
