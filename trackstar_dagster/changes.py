"""Late and changed rows: what a partition's source rows looked like (a ``Fingerprint``: row count and the max
of an ``updated_at``-style column), taken cheaply from the source (a probe) and by the payloads step from the
rows it loaded.

The payloads step records the fingerprint of the rows it *loaded* on each partition's payloads; the write
step carries it onto the partition's ``write_results`` (a dry run carries the last write's forward instead).
A row changed after the load makes the source differ from what is stored, so the changes sensor
(``sync.changes_sensor``) asks for the partition again; a change between the probe and the load is simply sent
by that run. A change is never missed; at worst a partition is run once more than needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.mapping import MappingConfig
from trackstar_dagster.mapping.records import row_connections
from trackstar_dagster.partition_keys import UNROUTED, is_by_connection, multi_key, time_partitions_def

#: the payloads step's metadata entry holding a partition's fingerprint
FINGERPRINT_KEY = "source_fingerprint"


def _missing(value: Any) -> bool:
    """None, NaN or NaT (a text is never missing here)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _norm(value: Any) -> str | None:
    """One text for a max value, whatever read it (DuckDB, pandas, a user's probe): timestamps in UTC ISO
    (naive ones taken as UTC, as the row loaders take them), other values as text."""
    if _missing(value):
        return None
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass(frozen=True)
class Fingerprint:
    """A partition's source rows, cheaply: how many, and the largest ``updated_at`` (normalised text).

    ``incomplete``: stored by a write that passed with some of the partition's records not written
    (``max_failed_share``); no probe ever equals it, so the sensor asks for the partition again."""

    rows: int
    updated: str | None = None
    incomplete: bool = False

    @classmethod
    def of(cls, rows: int, updated: Any) -> Fingerprint:
        return cls(int(rows), _norm(updated))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "updated": self.updated}
        if self.incomplete:
            out["incomplete"] = True
        return out

    @classmethod
    def from_json(cls, data: Any) -> Fingerprint | None:
        if not isinstance(data, Mapping) or "rows" not in data:
            return None
        return cls(int(data["rows"]), data.get("updated"), bool(data.get("incomplete", False)))


EMPTY = Fingerprint(0, None)


@dataclass(frozen=True)
class ProbeRequest:
    """What a probe is asked: fingerprints of the partitions in ``window`` (the written ones' span)."""

    window: dg.TimeWindow
    partitions_def: dg.PartitionsDefinition
    mapping: MappingConfig
    date_column: str | None
    updated_column: str
    #: the connections a column may name (open routing): the resource's
    connections: tuple[str, ...] = ()


class ChangesProbe(Protocol):
    """``probe(context, request) -> {partition key: Fingerprint}`` for every partition in ``request.window``
    that has rows (a partition left out has none). Counts and maxima must be of the rows ``load_rows`` gives
    the partition, or the sensor asks for it on every change of the difference."""

    def __call__(
        self, context: dg.SensorEvaluationContext, request: ProbeRequest
    ) -> Mapping[str, Fingerprint]: ...


@dataclass(frozen=True)
class ChangesSensor:
    """``TrackstarSync(changes_sensor=ChangesSensor("updated_at"))``: a sensor ``<sync>_changes_sensor`` asks
    for runs of the written partitions whose rows changed since their last write.

    ``probe``: default, for ``sql_row_loader``, a ``GROUP BY`` of the same table (``sql_changes_probe``); give
    one for any other loader. ``lookback_days``: only partitions of the last that many days are probed
    (default: every written one). ``minimum_interval_seconds``: between ticks. ``running``: on by default."""

    updated_column: str
    probe: ChangesProbe | None = None
    minimum_interval_seconds: int = 300
    lookback_days: int | None = None
    running: bool = True

    def __post_init__(self) -> None:
        if not self.updated_column:
            raise ConfigError("changes_sensor: name the `updated_column` (an updated_at-style column)")
        if self.minimum_interval_seconds < 1:
            raise ConfigError("changes_sensor: minimum_interval_seconds must be at least 1")


class ChangesSensorModel(dg.Model, dg.Resolvable):
    """Late and changed rows: ``<name>_changes_sensor`` runs the written partitions whose rows changed since
    their last write (row count or max ``updated_column``, by one GROUP BY of the source table)."""

    updated_column: str = Field(description="The source's updated_at-style column.")
    minimum_interval_seconds: int = Field(default=300, description="Seconds between the sensor's ticks.")
    lookback_days: int | None = Field(
        default=None, description="Only partitions of the last that many days (default: every written one)."
    )
    running: bool = Field(default=True, description="On when the code loads (else turn it on in the UI).")

    def spec(self) -> ChangesSensor:
        return ChangesSensor(
            updated_column=self.updated_column,
            minimum_interval_seconds=self.minimum_interval_seconds,
            lookback_days=self.lookback_days,
            running=self.running,
        )


# -- fingerprints of grouped rows (a probe's GROUP BY answer) -------------------------------------------


def fingerprints_of_groups(
    groups: pd.DataFrame, request: ProbeRequest, *, bucket: str = "bucket", route: str | None = "route"
) -> dict[str, Fingerprint]:
    """Fingerprints per partition from a grouped answer: a row per (``bucket``: the start of a span of time
    inside one partition, ``route``: the routing column's value) with ``rows`` and ``updated`` (its max).
    Buckets go to their time partition, routing values to their connection by the mapping's own rule (as the
    payloads step places rows); buckets outside ``request.window`` are left out."""
    time_def = time_partitions_def(request.partitions_def)
    if time_def is None:
        raise ConfigError("a changes probe needs a time-partitioned sync")
    if not len(groups):
        return {}
    starts = pd.to_datetime(groups[bucket], utc=True)
    keys = list(time_def.get_partition_keys_in_time_window(request.window))
    if not keys:
        return {}
    edges = [pd.Timestamp(time_def.time_window_for_partition_key(k).start).tz_convert("UTC") for k in keys]
    end = pd.Timestamp(time_def.time_window_for_partition_key(keys[-1]).end).tz_convert("UTC")
    at = starts.dt.tz_localize(None).dt.as_unit("ns").to_numpy().astype(np.int64)
    pos = np.searchsorted(pd.DatetimeIndex(edges).tz_localize(None).as_unit("ns").asi8, at, side="right") - 1
    inside = (pos >= 0) & (starts < end).to_numpy()
    times: list[str | None] = [
        str(t) if ok else None
        for t, ok in zip(np.asarray(keys, dtype=object)[np.clip(pos, 0, len(keys) - 1)], inside, strict=True)
    ]
    if is_by_connection(request.partitions_def):
        conns = _connections(groups, request, route)
        # Dagster's str of a time x connection key (dimensions by name, "|"-joined), made without building
        # a MultiPartitionKey per group when multi_key agrees
        fast = multi_key("t", "c") == "c|t"
        part = [
            None if t is None else (f"{c}|{t}" if fast else multi_key(t, c))
            for t, c in zip(times, conns, strict=True)
        ]
    else:
        part = times
    frame = pd.DataFrame(
        {"part": part, "rows": groups["rows"].to_numpy(), "updated": groups["updated"].to_numpy()}
    )
    summed = (
        frame[frame["part"].notna()]
        .groupby("part", sort=False)
        .agg(rows=("rows", "sum"), updated=("updated", "max"))
    )
    return {
        str(key): Fingerprint.of(int(n), top)
        for key, n, top in zip(
            summed.index, summed["rows"].to_numpy(), summed["updated"].tolist(), strict=True
        )
    }


def _connections(groups: pd.DataFrame, request: ProbeRequest, route: str | None) -> np.ndarray:
    mapping = request.mapping
    if mapping.connection_column is None or route is None:
        names = mapping.connections() or list(request.connections)
        if len(names) != 1:
            raise ConfigError("a changes probe of a sync routed by no column needs its one connection")
        return np.asarray([names[0]] * len(groups), dtype=object)
    values = pd.DataFrame({mapping.connection_column: groups[route].to_numpy()})
    routed = row_connections(values, mapping, request.connections)
    return np.where(pd.isna(routed), UNROUTED, routed).astype(object)


# -- the payloads step's fingerprints of the rows it loaded ---------------------------------------------


class FingerprintTally:
    """Per partition, the rows the payloads step loaded: their count and the max of ``updated_column``."""

    def __init__(self, updated_column: str) -> None:
        self.updated_column = updated_column
        self.rows: dict[str, int] = {}
        self.updated: dict[str, Any] = {}

    def add(self, chunk: pd.DataFrame, row_parts: np.ndarray | Sequence[str] | None) -> None:
        if row_parts is None or not len(chunk):
            return
        if self.updated_column not in chunk.columns:
            raise ConfigError(
                f"changes_sensor: the rows have no column {self.updated_column!r} (updated_column)"
            )
        parts = pd.Series(np.asarray(row_parts, dtype=object)).astype(str)
        values = chunk[self.updated_column].reset_index(drop=True)
        for key, n in parts.value_counts().items():
            self.rows[str(key)] = self.rows.get(str(key), 0) + int(n)
        for key, top in values.groupby(parts).max().items():
            if _missing(top):
                continue
            old = self.updated.get(str(key))
            self.updated[str(key)] = top if old is None or top > old else old

    def fingerprint(self, key: str) -> Fingerprint:
        return Fingerprint.of(self.rows.get(key, 0), self.updated.get(key))

    def metadata(self, key: str) -> dict[str, Any]:
        return {FINGERPRINT_KEY: dg.MetadataValue.json(self.fingerprint(key).to_json())}


def fingerprint_tally(sync: Any) -> FingerprintTally | None:
    """The tally a payloads step keeps when its sync has a changes sensor (else None: nothing stored)."""
    sensor = getattr(sync, "changes_sensor", None)
    if sensor is None or sync.partitions_def is None:
        return None
    return FingerprintTally(sensor.updated_column)


__all__ = [
    "EMPTY",
    "FINGERPRINT_KEY",
    "ChangesProbe",
    "ChangesSensor",
    "ChangesSensorModel",
    "Fingerprint",
    "FingerprintTally",
    "ProbeRequest",
    "fingerprint_tally",
    "fingerprints_of_groups",
]
