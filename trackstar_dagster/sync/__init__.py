"""A sync: source table -> payloads (+ rejects) -> write results, as Dagster assets and definitions.

The Dagster layer only wires: rows come from the user's ``load_rows``, bodies from ``mapping.build_payloads``,
writes from ``writer.write_payloads`` (through ``write_step.run_writes``). A module per job, each importing only
those before it: ``declaration`` (``TrackstarSync``: the sync's configuration, policies and translated keys),
``assets`` (its payloads and write steps, shaped by its ``TrackstarTranslator``), ``partitioning``
(``trackstar_partitions``: time grain x connection, the connection dimension kept in step by a sensor),
``definitions`` (its ``Definitions``: assets, checks, job, schedule, sensor and the IO manager they need).
Partition bookkeeping lives in ``partitions``, the plain op in ``ops``. Their public names are re-exported here.
"""

from trackstar_dagster.partitions import RowsRequest
from trackstar_dagster.sync.assets import (
    IO_MANAGER_KEY,
    REJECT_SHARE_CHECK,
    ROWS_VALID_CHECK,
    build_trackstar_sync_assets,
    resolve_targets,
)
from trackstar_dagster.sync.declaration import ResultsSink, RowLoader, TrackstarSync
from trackstar_dagster.sync.definitions import (
    build_trackstar_sync_definitions,
    trackstar_io_manager,
    trackstar_io_manager_resources,
)
from trackstar_dagster.sync.partitioning import (
    TrackstarPartitions,
    add_connection_partitions,
    build_connection_partitions_sensor,
    tick_connection_sensors,
    trackstar_partitions,
)
from trackstar_dagster.sync.status_config import StatusReadBack

__all__ = [
    "IO_MANAGER_KEY",
    "REJECT_SHARE_CHECK",
    "ROWS_VALID_CHECK",
    "ResultsSink",
    "RowLoader",
    "RowsRequest",
    "TrackstarPartitions",
    "TrackstarSync",
    "add_connection_partitions",
    "build_connection_partitions_sensor",
    "build_trackstar_sync_assets",
    "build_trackstar_sync_definitions",
    "resolve_targets",
    "trackstar_io_manager",
    "trackstar_io_manager_resources",
    "tick_connection_sensors",
    "trackstar_partitions",
    "StatusReadBack",
]
