"""A sync's frames by partition: which partition each source row belongs to, the ``partition`` column on the
payloads and rejects, and each partition's own metadata; the slices a run asks ``load_rows`` for.

The ``partition`` column is added here, once, in the payloads step; every later step keeps it (the write step
carries it onto its results, ``write_step.carry_partition``), the IO manager stores each frame one file per
partition by it, and ``stamp_partitions`` gives each partition the figures of its own rows.

A sync partitioned by time x connection (``MultiPartitionsDefinition`` with a time dimension and one named
``connection``) keys each row by its date's time key and the connection the mapping routes it to; rows the
mapping routes nowhere go to the pseudo-connection ``UNROUTED`` (their rejects have a partition too).
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
from trackstar_dagster.mapping.records import row_connections


class SyncRows(Protocol):
    """What the slices need of a sync (``TrackstarSync``, which sits a layer above this module)."""

    @property
    def partitions_def(self) -> dg.PartitionsDefinition | None: ...
    @property
    def mapping(self) -> MappingConfig: ...
    @property
    def load_rows(self) -> Callable[..., Any]: ...


#: the dimension names of a time x connection sync (Dagster orders dimensions by name: keys read
#: ``<connection>|<date>``)
TIME_DIMENSION = "date"
CONNECTION_DIMENSION = "connection"
#: the connection key of rows the mapping routes to no connection (their routing rejects)
UNROUTED = "_unrouted"
#: a slice of a time x connection run spans consecutive time partitions of the same connections, up to this
#: many partition keys (a one-customer backfill of two years: 12 queries, not 730)
MAX_KEYS_PER_SLICE = 64


@dataclass(frozen=True)
class RowsRequest:
    """One slice of a run's rows: what the payloads step asks ``load_rows`` for, one slice at a time."""

    window: dg.TimeWindow | None  # the slice's time window (None: the sync is not time-partitioned)
    connections: tuple[str, ...] | None  # None: every connection; else only these (a connection dimension)
    partition_keys: tuple[str, ...]  # the run's partition keys (str form) this slice covers


# -- the dimensions of a partitions definition ----------------------------------------------------------


def time_partitions_def(
    partitions_def: dg.PartitionsDefinition | None,
) -> dg.TimeWindowPartitionsDefinition | None:
    """The time dimension's definition (the definition itself when it is time-window partitioned)."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def
    if isinstance(partitions_def, dg.MultiPartitionsDefinition) and partitions_def.has_time_window_dimension:
        return partitions_def.time_window_partitions_def
    return None


def is_by_connection(partitions_def: dg.PartitionsDefinition | None) -> bool:
    """True for a time x connection definition."""
    return isinstance(partitions_def, dg.MultiPartitionsDefinition) and (
        CONNECTION_DIMENSION in partitions_def.partition_dimension_names
    )


def check_partitions_def(partitions_def: dg.PartitionsDefinition | None) -> None:
    """A sync's rows are placed by date and connection only: a two-dimension definition must be one time
    dimension (named ``date``) and one ``connection`` dimension."""
    if not isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return
    names = sorted(partitions_def.partition_dimension_names)
    time_def = time_partitions_def(partitions_def)
    if names != sorted([CONNECTION_DIMENSION, TIME_DIMENSION]) or time_def is None:
        raise ConfigError(
            f"a sync's MultiPartitionsDefinition needs a time dimension {TIME_DIMENSION!r} and a "
            f"{CONNECTION_DIMENSION!r} dimension (its rows are placed by date and connection); got {names}"
        )


def split_key(partitions_def: dg.PartitionsDefinition, key: str) -> tuple[str, str | None]:
    """(time key, connection key or None) of one partition key of the sync."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        by_dim = partitions_def.get_partition_key_from_str(str(key)).keys_by_dimension
        return by_dim[TIME_DIMENSION], by_dim[CONNECTION_DIMENSION]
    return str(key), None


def multi_key(time_key: str, connection: str) -> str:
    """The str form of a time x connection key (what ``context.partition_keys`` and files carry)."""
    return str(dg.MultiPartitionKey({TIME_DIMENSION: time_key, CONNECTION_DIMENSION: connection}))


# -- a run's slices -------------------------------------------------------------------------------------


def rows_requests(sync: SyncRows, context: dg.AssetExecutionContext) -> list[RowsRequest]:
    """The run's slices, in order: unpartitioned, one slice of every row; time-partitioned, the run's window;
    time x connection, consecutive time partitions with the run's connections of those time keys, up to
    ``MAX_KEYS_PER_SLICE`` keys a slice (a one-customer backfill of two years: 12 slices of one connection;
    an all-customers day: one slice)."""
    pdef = sync.partitions_def
    if pdef is None:
        return [RowsRequest(None, None, ())]
    keys = tuple(str(k) for k in context.partition_keys)
    time_def = time_partitions_def(pdef)
    if not is_by_connection(pdef):
        window = context.partition_time_window if time_def is not None else None
        return [RowsRequest(window, None, keys)]
    assert time_def is not None  # check_partitions_def
    by_time: dict[str, list[str]] = {}
    for key in keys:
        time_key, _ = split_key(pdef, key)
        by_time.setdefault(time_key, []).append(key)
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
            and len(last.partition_keys) + len(slice_keys) <= MAX_KEYS_PER_SLICE
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


def mapping_for(mapping: MappingConfig, connections: Sequence[str] | None) -> MappingConfig:
    """The mapping narrowed to a run's connections: only their targets are resolved and checked (a customer
    whose write-info cannot be had fails its own runs, not everyone's). Rows of other connections were left
    out by ``load_slice``; rows routed nowhere stay routing rejects."""
    if connections is None or mapping.connection_column is None:
        return mapping
    keep = set(connections)
    values = {v: c for v, c in mapping.connection_values.items() if c in keep}
    if not values:  # only _unrouted rows: one connection kept, so the mapping stays valid
        first = next(iter(mapping.connection_values))
        values = {first: mapping.connection_values[first]}
    kept = set(values.values())
    constants = {c: v for c, v in mapping.connection_constants.items() if c in kept}
    return mapping.model_copy(update={"connection_values": values, "connection_constants": constants})


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


def connection_mask(frame: pd.DataFrame, mapping: MappingConfig, connections: Iterable[str]) -> np.ndarray:
    """Which rows the mapping routes to one of ``connections`` (``UNROUTED``: rows it routes nowhere)."""
    routed = row_connections(frame, mapping)
    names = np.where(pd.isna(routed), UNROUTED, routed) if len(routed) else routed
    return np.isin(names.astype(object), np.asarray(list(connections), dtype=object))


def load_slice(
    sync: SyncRows, context: dg.AssetExecutionContext, request: RowsRequest
) -> Iterator[pd.DataFrame]:
    """Calls the user's ``load_rows`` for one slice (old 2-argument loaders get ``request.window``); a loader
    may return one DataFrame or an iterator of DataFrames (chunks); yields chunks. With ``request.connections``
    the rows the mapping routes to other connections are left out, counted and logged (never sent)."""
    loaded = sync.load_rows(context, request if takes_rows_request(sync.load_rows) else request.window)
    chunks: Iterable[pd.DataFrame] = [loaded] if isinstance(loaded, pd.DataFrame) else loaded
    for chunk in chunks:
        chunk = chunk.reset_index(drop=True)
        if request.connections is not None and len(chunk):
            keep = connection_mask(chunk, sync.mapping, request.connections)
            if not keep.all():
                context.log.warning(
                    f"{int((~keep).sum())} rows of connections outside this run's partitions "
                    f"({', '.join(request.connections)}) left out: load_rows returned them; they are not sent"
                )
                chunk = chunk[keep].reset_index(drop=True)
        yield chunk


# -- rows to partition keys -----------------------------------------------------------------------------


def _time_positions(
    frame: pd.DataFrame,
    date_column: str,
    time_def: dg.TimeWindowPartitionsDefinition,
    time_keys: Sequence[str],
) -> np.ndarray:
    """Index into ``time_keys`` (sorted by start) of every row's date (dates outside are clipped)."""
    windows = [time_def.time_window_for_partition_key(k) for k in time_keys]
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
    return np.clip(pos, 0, len(time_keys) - 1)


def partition_of_rows(
    frame: pd.DataFrame,
    date_column: str | None,
    partitions_def: dg.PartitionsDefinition | None,
    keys: Sequence[str],
    mapping: MappingConfig | None = None,
) -> np.ndarray | None:
    """The partition key of every source row: by its date (time-window partitions), and by the connection
    ``mapping`` routes it to (time x connection; ``UNROUTED`` when it routes nowhere)."""
    if partitions_def is None or not keys:
        return None
    if is_by_connection(partitions_def):
        return _multi_partition_of_rows(frame, date_column, partitions_def, keys, mapping)
    if date_column is None or not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return np.array([keys[0]] * len(frame), dtype=object)
    time_keys = sorted(keys, key=lambda k: partitions_def.time_window_for_partition_key(k).start)
    return np.asarray(time_keys, dtype=object)[_time_positions(frame, date_column, partitions_def, time_keys)]


def _multi_partition_of_rows(
    frame: pd.DataFrame,
    date_column: str | None,
    partitions_def: dg.PartitionsDefinition,
    keys: Sequence[str],
    mapping: MappingConfig | None,
) -> np.ndarray:
    if mapping is None:
        raise ConfigError("rows of a time x connection sync need its mapping to be placed by connection")
    time_def = time_partitions_def(partitions_def)
    assert time_def is not None  # check_partitions_def
    split = [split_key(partitions_def, k) for k in keys]
    time_keys = sorted({t for t, _ in split}, key=lambda k: time_def.time_window_for_partition_key(k).start)
    if date_column is None:
        times = np.array([time_keys[0]] * len(frame), dtype=object)
    else:
        times = np.asarray(time_keys, dtype=object)[_time_positions(frame, date_column, time_def, time_keys)]
    routed = row_connections(frame, mapping)
    conns = np.where(pd.isna(routed), UNROUTED, routed) if len(routed) else routed
    wanted = {(t, c): str(k) for (t, c), k in zip(split, keys, strict=True)}
    pairs = pd.Series(times, dtype=object).astype(str) + "\x1f" + pd.Series(conns, dtype=object).astype(str)
    codes, uniques = pd.factorize(pairs)
    found = [wanted.get(tuple(u.split("\x1f", 1))) for u in uniques]
    missing = [u.split("\x1f", 1)[1] for u, k in zip(uniques, found, strict=True) if k is None]
    if missing:
        raise ConfigError(
            f"rows of connections {sorted(set(missing))} are not in this run's partitions: load only the run's "
            "connections (load_slice leaves the others out)"
        )
    return np.asarray(found, dtype=object)[codes] if len(frame) else np.empty(0, dtype=object)


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
    _add_partition_metadata(
        context, asset_key, {key: figures(groups.get(key, frame.iloc[0:0])) for key in keys}
    )
    return True


def _add_partition_metadata(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, by_key: dict[str, dict[str, Any]]
) -> None:
    """``add_asset_metadata`` for many partitions of the run. Dagster 1.13 checks each call's key against
    the run's whole key list, rebuilt every call (730 days x 3 assets: 70 s of a two-year backfill, O(n^2));
    the keys are checked here once and given to the step's metadata accumulator, else (another Dagster)
    through the public call."""
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
