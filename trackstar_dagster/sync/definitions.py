"""A sync's ``Definitions``: its assets and checks, its job, an optional schedule, and the IO manager they use."""

import dataclasses
import functools
from typing import Any

import dagster as dg

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.io_manager import TrackstarFrameIOManager
from trackstar_dagster.partitions import time_partitions_def
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.sync.assets import IO_MANAGER_KEY, build_trackstar_sync_assets
from trackstar_dagster.sync.changes_sensor import build_changes_sensor
from trackstar_dagster.sync.declaration import TrackstarSync
from trackstar_dagster.sync.partitioning import build_connection_partitions_sensor, dynamic_connections_def
from trackstar_dagster.sync.statuses import order_statuses_job_and_schedules
from trackstar_dagster.translator import TrackstarTranslator


@functools.cache
def trackstar_io_manager(base_dir: str | None = None) -> TrackstarFrameIOManager:
    """One IO manager object per ``base_dir``: the definitions of several syncs merge (Dagster's merge wants the
    same object under a resource key)."""
    return TrackstarFrameIOManager(base_dir=base_dir)


def trackstar_io_manager_resources(base_dir: str | None = None) -> dict[str, Any]:
    """The resources a sync's assets need besides ``trackstar`` (``build_trackstar_sync_definitions`` adds
    them itself; for definitions built from ``build_trackstar_sync_assets``)."""
    return {IO_MANAGER_KEY: trackstar_io_manager(base_dir)}


def build_trackstar_sync_definitions(
    sync: TrackstarSync,
    *,
    trackstar: TrackstarResource | None = None,
    schedule: bool | dg.ScheduleDefinition = False,
    hour_of_day: int = 0,
    minute_of_hour: int = 0,
    io_manager_base_dir: str | None = None,
    translator: TrackstarTranslator | None = None,
) -> dg.Definitions:
    """Everything the sync runs with: its assets and checks, the job ``<name>_job`` over them (its runs tagged
    with the sync's ``tags``), a schedule of that job when asked (``schedule=True``: the latest partition of a
    time-partitioned sync daily at ``hour_of_day:minute_of_hour``; or give your own), and the IO manager they
    read and write through. ``trackstar``: the resource under ``sync.resource_key``, when it is not given
    elsewhere (the schema assets' definitions, for one).

    A sync partitioned by time x a dynamic connection dimension also gets ``<name>_connections_sensor`` (adds
    the resource's new connections to its partitions); its schedule asks one run per connection of the
    latest time partition (Dagster's ``build_schedule_from_partitioned_job``), so one customer's failure
    fails only its own run.
    """
    if translator is not None:
        sync = dataclasses.replace(sync, translator=translator)
    assets = build_trackstar_sync_assets(sync)
    job = dg.define_asset_job(
        sync.job_name,
        selection=dg.AssetSelection.assets(sync.payloads_key, sync.rejects_key, sync.results_key),
        partitions_def=sync.partitions_def,
        tags=dict(sync.tags) or None,
    )
    # a ScheduleDefinition, or the unresolved one build_schedule_from_partitioned_job makes
    schedules: list[Any] = []
    if isinstance(schedule, dg.ScheduleDefinition):
        schedules.append(schedule)
    elif schedule:
        if time_partitions_def(sync.partitions_def) is None:
            raise ConfigError(
                f"{sync.name}: schedule=True needs a time-window partitioned sync; give a schedule"
            )
        schedules.append(
            dg.build_schedule_from_partitioned_job(
                job,
                name=f"{sync.name}_schedule",
                hour_of_day=hour_of_day,
                minute_of_hour=minute_of_hour,
            )
        )
    resources: dict[str, Any] = trackstar_io_manager_resources(io_manager_base_dir)
    if trackstar is not None:
        resources[sync.resource_key] = trackstar
    sensors = [build_connection_partitions_sensor(sync)] if dynamic_connections_def(sync) is not None else []
    if sync.changes_sensor is not None:  # late and changed rows (sync.changes_sensor)
        sensors.append(build_changes_sensor(sync))
    status_jobs, status_schedules = order_statuses_job_and_schedules(sync)  # read_back_statuses
    jobs, schedules = [job, *status_jobs], [*schedules, *status_schedules]
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors, resources=resources)
