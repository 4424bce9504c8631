"""A sync's partitions declared in one line: a time grain (day, week, month), optionally x connection.

``trackstar_partitions(start_date=..., grain="day", by_connection=True)`` gives a ``TrackstarPartitions`` that
``TrackstarSync(partitions=...)`` turns into a ``MultiPartitionsDefinition``: a time dimension ``date`` and a
``connection`` dimension. The connection dimension is, by default, a ``DynamicPartitionsDefinition`` named
for the sync (``<sync>_connections``): connections come and go without a redeploy, and the sensor built with
the sync's definitions (``<sync>_connections_sensor``) or ``add_connection_partitions`` adds the names the
resource holds. Names are only ever added: a connection gone from the resource keeps its history (remove
its partitions by hand, with Dagster's ``delete_dynamic_partition``, if that is what you want). With
``connections=[...]`` the dimension is static instead (names known when the code loads).

Dagster recommends at most 100,000 partitions per asset: 500 connections x 730 days is 365,000, so
``check_partition_count`` warns past that and names the grain that would fit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.partitions import CONNECTION_DIMENSION, TIME_DIMENSION, UNROUTED
from trackstar_dagster.resource import TrackstarResource

if TYPE_CHECKING:
    from trackstar_dagster.sync.declaration import TrackstarSync

log = redacted_logger(__name__)

Grain = Literal["day", "week", "month"]
#: Dagster's recommended ceiling of partitions per asset
MAX_PARTITIONS = 100_000
_TIME_DEFS: dict[str, Callable[..., dg.TimeWindowPartitionsDefinition]] = {
    "day": dg.DailyPartitionsDefinition,
    "week": dg.WeeklyPartitionsDefinition,
    "month": dg.MonthlyPartitionsDefinition,
}


class PartitionCountWarning(UserWarning):
    """More partitions than Dagster recommends for one asset."""


@dataclass(frozen=True)
class TrackstarPartitions:
    """How a sync is partitioned: by time (``grain``), and by connection when ``by_connection``.

    ``connections``: a static connection dimension with these names (default: a dynamic one, named for the
    sync). ``include_unrouted``: a connection key ``_unrouted`` for rows the mapping routes to no connection
    (their routing rejects), when the mapping routes by a column (``None``: then, by default).
    """

    start_date: str | date | datetime
    grain: Grain = "day"
    by_connection: bool = False
    connections: Sequence[str] | None = None
    end_offset: int = 0
    timezone: str | None = None
    include_unrouted: bool | None = None

    def __post_init__(self) -> None:
        if self.grain not in _TIME_DEFS:
            raise ConfigError(f"partitions grain {self.grain!r}: choose one of {', '.join(_TIME_DEFS)}")
        if self.connections is not None and not self.by_connection:
            raise ConfigError(
                "partitions: `connections` names a connection dimension: set by_connection=True"
            )

    def time_def(self) -> dg.TimeWindowPartitionsDefinition:
        start = self.start_date.isoformat() if isinstance(self.start_date, date) else self.start_date
        if isinstance(self.start_date, datetime):
            start = self.start_date.strftime("%Y-%m-%d")
        kwargs = {"timezone": self.timezone} if self.timezone else {}
        return _TIME_DEFS[self.grain](start_date=start, end_offset=self.end_offset, **kwargs)

    def partitions_def(self, sync_name: str) -> dg.PartitionsDefinition:
        """The time definition, or time x connection (a dynamic dimension named ``<sync>_connections``)."""
        time_def = self.time_def()
        if not self.by_connection:
            return time_def
        conn_def: dg.PartitionsDefinition = (
            dg.StaticPartitionsDefinition(list(self.connections))
            if self.connections is not None
            else dg.DynamicPartitionsDefinition(name=connections_partitions_name(sync_name))
        )
        return dg.MultiPartitionsDefinition({TIME_DIMENSION: time_def, CONNECTION_DIMENSION: conn_def})


def trackstar_partitions(
    start_date: str | date | datetime,
    grain: Grain = "day",
    *,
    by_connection: bool = False,
    connections: Sequence[str] | None = None,
    end_offset: int = 0,
    timezone: str | None = None,
    include_unrouted: bool | None = None,
) -> TrackstarPartitions:
    """A sync's partitions: ``TrackstarSync(partitions=trackstar_partitions("2024-11-25", by_connection=True))``."""
    return TrackstarPartitions(
        start_date=start_date,
        grain=grain,
        by_connection=by_connection,
        connections=tuple(connections) if connections is not None else None,
        end_offset=end_offset,
        timezone=timezone,
        include_unrouted=include_unrouted,
    )


def connections_partitions_name(sync_name: str) -> str:
    """The dynamic connection dimension's name for a sync."""
    return f"{sync_name}_connections"


def dynamic_connections_def(sync: TrackstarSync) -> dg.DynamicPartitionsDefinition | None:
    """The sync's dynamic connection dimension, if it has one."""
    pdef = sync.partitions_def
    if not isinstance(pdef, dg.MultiPartitionsDefinition):
        return None
    if CONNECTION_DIMENSION not in pdef.partition_dimension_names:
        return None
    conn_def = pdef.get_partitions_def_for_dimension(CONNECTION_DIMENSION)
    return conn_def if isinstance(conn_def, dg.DynamicPartitionsDefinition) else None


def sync_connection_keys(sync: TrackstarSync, trackstar: TrackstarResource) -> list[str]:
    """The connection keys a sync's partitions should hold: the resource's connections the mapping routes to
    (all of them when it names none), and ``_unrouted`` when the mapping routes by a column."""
    names = list(trackstar.connection_names())
    routed = set(sync.mapping.connections())
    if routed:
        names = [n for n in names if n in routed]
    include = sync.partitions.include_unrouted if sync.partitions is not None else None
    if include is None:
        include = sync.mapping.connection_column is not None
    return sorted(set(names)) + ([UNROUTED] if include else [])


def partition_count_message(sync: TrackstarSync, n_connections: int) -> str | None:
    """A warning when time partitions x connections pass ``MAX_PARTITIONS``, naming a grain that fits."""
    pdef = sync.partitions_def
    if not isinstance(pdef, dg.MultiPartitionsDefinition):
        return None
    n_time = pdef.time_window_partitions_def.get_num_partitions()
    total = n_time * n_connections
    if total <= MAX_PARTITIONS:
        return None
    return (
        f"{sync.name}: {n_time} time partitions x {n_connections} connections = {total:,} partitions per asset, "
        f"more than the {MAX_PARTITIONS:,} Dagster recommends (the UI and backfills slow down): choose a coarser "
        f"grain (trackstar_partitions(grain='week' or 'month')), a later start_date, or split the connections "
        f"over several syncs"
    )


def check_partition_count(sync: TrackstarSync, n_connections: int) -> str | None:
    """Warn (``PartitionCountWarning`` and the log) when the sync would pass Dagster's recommended count."""
    message = partition_count_message(sync, n_connections)
    if message:
        log.warning(message)
        warnings.warn(message, PartitionCountWarning, stacklevel=3)
    return message


def add_connection_partitions(
    sync: TrackstarSync, trackstar: TrackstarResource, instance: dg.DagsterInstance
) -> list[str]:
    """Add the resource's new connections to the sync's dynamic connection dimension (never removes one);
    returns the names added. The sensor does the same on every tick; call this from a script or a test."""
    conn_def = dynamic_connections_def(sync)
    if conn_def is None or conn_def.name is None:
        raise ConfigError(f"{sync.name}: not partitioned by a dynamic connection dimension")
    wanted = sync_connection_keys(sync, trackstar)
    have = set(instance.get_dynamic_partitions(conn_def.name))
    new = [n for n in wanted if n not in have]
    if new:
        instance.add_dynamic_partitions(conn_def.name, new)
    check_partition_count(sync, len(have | set(new)))
    return new


def build_connection_partitions_sensor(
    sync: TrackstarSync, minimum_interval_seconds: int = 60
) -> dg.SensorDefinition:
    """``<sync>_connections_sensor``: adds the resource's new connections to the sync's dynamic connection
    dimension (running by default: a new customer shows up in the UI within a minute). Connections gone
    from the resource are kept (their history stays) and named in the tick's log."""
    conn_def = dynamic_connections_def(sync)
    if conn_def is None or conn_def.name is None:
        raise ConfigError(f"{sync.name}: not partitioned by a dynamic connection dimension")
    dimension = conn_def.name

    @dg.sensor(
        name=f"{sync.name}_connections_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={sync.resource_key},
        description=f"Adds new connections of the {sync.name} sync to its partitions ({dimension}); removes none.",
    )
    def _sensor(context: dg.SensorEvaluationContext, **resources: Any) -> dg.SensorResult | dg.SkipReason:
        # invoked directly, Dagster passes the required resources as keywords; the daemon, through context
        trackstar: TrackstarResource = resources.get(sync.resource_key) or getattr(
            context.resources, sync.resource_key
        )
        wanted = sync_connection_keys(sync, trackstar)
        have = set(context.instance.get_dynamic_partitions(dimension))
        new = [n for n in wanted if n not in have]
        gone = sorted(have - set(wanted))
        if gone:
            context.log.info(f"kept (no longer in the resource, history stays): {', '.join(gone)}")
        message = partition_count_message(sync, len(have | set(new)))
        if message:
            context.log.warning(message)
        if not new:
            return dg.SkipReason(f"no new connection ({len(have)} known)")
        context.log.info(f"adding connections {', '.join(new)} to {dimension}")
        return dg.SensorResult(dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(dimension, new)])

    return _sensor


def tick_connection_sensors(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """One tick of every sync's connections sensor in ``defs``, its additions applied (what the daemon does
    each minute): for scripts, demos and tests that run without a daemon. Returns the names added per sensor."""
    added: dict[str, list[str]] = {}
    for sensor in defs.get_repository_def().sensor_defs:
        if not sensor.name.endswith("_connections_sensor"):
            continue
        resources = {k: (defs.resources or {})[k] for k in sensor.required_resource_keys}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = sensor(context)
        names: list[str] = []
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                    names += list(request.partition_keys)
        added[sensor.name] = names
    return added
