"""Which partition a sync's row belongs to: its date's time key, and (time x connection) the connection the
mapping routes it to; rows it routes nowhere go to the pseudo-connection ``UNROUTED`` (their rejects keep a
partition). Also the dimensions of a sync's partitions definition and the mapping narrowed to a run's
connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.mapping.records import row_connections

#: the dimension names of a time x connection sync (Dagster orders dimensions by name: keys read
#: ``<connection>|<date>``)
TIME_DIMENSION = "date"
CONNECTION_DIMENSION = "connection"
#: the connection key of rows the mapping routes to no connection (their routing rejects)
UNROUTED = "_unrouted"


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


def mapping_for(mapping: MappingConfig, connections: Sequence[str] | None) -> MappingConfig:
    """The mapping narrowed to a run's connections: only their targets are resolved and checked (a customer
    whose write-info cannot be had fails its own runs, not everyone's). Rows of other connections were left
    out by ``load_slice``; rows routed nowhere stay routing rejects."""
    if connections is None or mapping.connection_column is None or mapping.open_routing:
        return mapping  # open routing: the targets are those the run's rows name (sync.assets.TargetResolver)
    keep = set(connections)
    values = {v: c for v, c in mapping.connection_values.items() if c in keep}
    if not values:  # only _unrouted rows: one connection kept, so the mapping stays valid
        first = next(iter(mapping.connection_values))
        values = {first: mapping.connection_values[first]}
    kept = set(values.values())
    constants = {c: v for c, v in mapping.connection_constants.items() if c in kept}
    return mapping.model_copy(update={"connection_values": values, "connection_constants": constants})


def connection_mask(frame: pd.DataFrame, mapping: MappingConfig, connections: Iterable[str]) -> np.ndarray:
    """Which rows the mapping routes to one of ``connections`` (``UNROUTED``: rows it routes nowhere)."""
    connections = list(connections)
    routed = row_connections(frame, mapping, connections)
    names = np.where(pd.isna(routed), UNROUTED, routed) if len(routed) else routed
    return np.isin(names.astype(object), np.asarray(list(connections), dtype=object))


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
    routed = row_connections(frame, mapping, [c for _, c in split if c is not None])
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
