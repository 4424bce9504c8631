"""``<sync>_changes_sensor``: runs for exactly the written partitions whose source rows changed since.

Each tick: the fingerprint each partition's last write stored on ``write_results`` (the rows its payloads
were built from; Dagster's event log, so a lost cursor loses nothing), one cheap probe of the source over the written partitions' span, and a run request per group of
changed partitions as the sync's backfill policy groups them (single run: one run per contiguous range;
``multi_run(k)``: ranges of at most k; time x connection: Dagster's ranges per connection).

A partition never written is not this sensor's business (the schedule and backfills write it first); nor is a
partition written before the sensor was on (no fingerprint stored: run it once to start watching it).
Each request carries a run key of its partitions' stored and probed fingerprints: the daemon skips a
request it already made (a run still queued is not asked for twice), and a change made since is a new key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.changes import EMPTY, FINGERPRINT_KEY, ChangesProbe, Fingerprint, ProbeRequest
from trackstar_dagster.partition_keys import split_key, time_partitions_def

if TYPE_CHECKING:
    from trackstar_dagster.sync.declaration import TrackstarSync

log = redacted_logger(__name__)

#: materialization records fetched per query
_FETCH = 500
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def stored_fingerprints(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: list[str] | None = None
) -> dict[str, Fingerprint | None]:
    """Each materialized partition's fingerprint (or those of ``partitions``), from its latest
    materialization (None: none stored)."""
    latest = instance.get_latest_storage_id_by_partition(
        asset_key,
        dg.DagsterEventType.ASSET_MATERIALIZATION,
        set(partitions) if partitions is not None else None,
    )
    ids = sorted(latest.values())
    out: dict[str, Fingerprint | None] = {}
    for i in range(0, len(ids), _FETCH):
        part = ids[i : i + _FETCH]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=part), limit=len(part)
        ).records
        for record in records:
            mat = record.asset_materialization
            if mat is None or mat.partition is None:
                continue
            entry = mat.metadata.get(FINGERPRINT_KEY)
            out[str(mat.partition)] = Fingerprint.from_json(entry.value if entry is not None else None)
    return out


def written_fingerprints(
    context: dg.AssetExecutionContext,
    payloads_key: dg.AssetKey,
    results_key: dg.AssetKey,
    keys: list[str],
    *,
    dry_run: bool,
    incomplete: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """For the write step's per-partition metadata: the fingerprint of the rows its payloads were built from,
    taken from this run's payloads materializations (a re-execution: its parent runs'), never from another
    run's (whose rows may be newer than those written here). A dry run sent nothing: it carries the last
    write's fingerprint forward (so a change it loaded is still seen as not written). The ``incomplete``
    partitions (some records not written in a run that passed) are marked so, to be asked for again."""
    if dry_run:
        previous = stored_fingerprints(context.instance, results_key, keys)
        return {k: {FINGERPRINT_KEY: dg.MetadataValue.json(fp.to_json())} for k, fp in previous.items() if fp}
    wanted = set(keys)
    out: dict[str, dict[str, Any]] = {}
    run: Any = context.run
    while run is not None and wanted - set(out):
        records = context.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for record in records:
            mat = record.event_log_entry.asset_materialization
            if mat is None or mat.asset_key != payloads_key or mat.partition not in wanted:
                continue
            if FINGERPRINT_KEY in mat.metadata and str(mat.partition) not in out:
                out[str(mat.partition)] = {FINGERPRINT_KEY: mat.metadata[FINGERPRINT_KEY]}
        run = context.instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    for key in set(incomplete) & set(out):
        fp = Fingerprint.from_json(out[key][FINGERPRINT_KEY].value)
        if fp is not None:
            marked = dataclasses.replace(fp, incomplete=True)
            out[key] = {FINGERPRINT_KEY: dg.MetadataValue.json(marked.to_json())}
    return out


def sensor_probe(sync: TrackstarSync) -> ChangesProbe:
    """The sync's probe: its own, or the SQL probe of its ``sql_row_loader``'s table."""
    spec = sync.changes_sensor
    assert spec is not None
    if spec.probe is not None:
        return spec.probe
    probe = getattr(sync.load_rows, "changes_probe", None)  # sql_row_loader's (sql.sql_changes_probe)
    if probe is None:
        raise ConfigError(
            f"{sync.name}: changes_sensor needs a `probe` (ChangesProbe: {{partition key: Fingerprint}}) for a "
            f"load_rows that is not sql_row_loader (with a date_column)"
        )
    return cast(ChangesProbe, probe)


def changed_partitions(
    stored: Mapping[str, Fingerprint | None], probed: Mapping[str, Fingerprint], keys: list[str]
) -> list[str]:
    """The ``keys`` (written, with a fingerprint) whose probed fingerprint differs from the stored one (a
    partition the probe found no rows of is empty: ``EMPTY``)."""
    return [k for k in keys if stored.get(k) is not None and probed.get(k, EMPTY) != stored[k]]


def _run_key(
    keys: list[str], stored: Mapping[str, Fingerprint | None], probed: Mapping[str, Fingerprint]
) -> str:
    text = json.dumps(
        [[k, (stored.get(k) or EMPTY).to_json(), probed.get(k, EMPTY).to_json()] for k in sorted(keys)],
        sort_keys=True,
    )
    return "changes:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def run_requests(
    sync: TrackstarSync,
    changed: list[str],
    instance: dg.DagsterInstance,
    run_key: Callable[[list[str]], str],
) -> list[dg.RunRequest]:
    """Requests for the changed partitions as the sync's backfill policy groups them (Dagster's own ranges
    of the partitions subset): single run, one per contiguous range; ``multi_run(k)``, chunks of k."""
    pdef = sync.partitions_def
    assert pdef is not None
    policy = sync.effective_backfill_policy
    tags = {"trackstar/trigger": "changes_sensor"}
    if policy is None or policy.max_partitions_per_run == 1:
        return [dg.RunRequest(partition_key=k, run_key=run_key([k]), tags=tags) for k in changed]
    out: list[dg.RunRequest] = []
    with partition_loading_context(dynamic_partitions_store=instance):
        subset = pdef.subset_with_partition_keys(changed)
        for rng in subset.get_partition_key_ranges(pdef):
            keys = list(pdef.get_partition_keys_in_range(rng))
            per = policy.max_partitions_per_run or len(keys)
            for i in range(0, len(keys), per):
                chunk = keys[i : i + per]
                out.append(
                    dg.RunRequest(
                        run_key=run_key(chunk),
                        tags={**tags, RANGE_START: chunk[0], RANGE_END: chunk[-1]},
                    )
                )
    return out


def _span(
    sync: TrackstarSync, keys: list[str], lookback_days: int | None, now: float
) -> tuple[dg.TimeWindow, list[str]] | None:
    """The written partitions' time span (within the lookback) and the keys inside it."""
    pdef = sync.partitions_def
    time_def = time_partitions_def(pdef)
    assert pdef is not None and time_def is not None
    windows: dict[str, dg.TimeWindow] = {}
    for key in keys:
        time_key = split_key(pdef, key)[0]
        if time_key not in windows:
            windows[time_key] = time_def.time_window_for_partition_key(time_key)
    if lookback_days is not None:
        cutoff = now - timedelta(days=lookback_days).total_seconds()
        windows = {t: w for t, w in windows.items() if w.end.timestamp() > cutoff}
    if not windows:
        return None
    inside = [k for k in keys if split_key(pdef, k)[0] in windows]
    start = min(w.start for w in windows.values())
    end = max(w.end for w in windows.values())
    return dg.TimeWindow(start, end), inside


def build_changes_sensor(sync: TrackstarSync) -> dg.SensorDefinition:
    """``<sync>_changes_sensor`` (see the module's docstring), from ``sync.changes_sensor``."""
    spec = sync.changes_sensor
    if spec is None:
        raise ConfigError(f"{sync.name}: no changes_sensor declared")
    if time_partitions_def(sync.partitions_def) is None:
        raise ConfigError(f"{sync.name}: changes_sensor needs a time-partitioned sync (it watches days)")
    probe = sensor_probe(sync)

    @dg.sensor(
        name=f"{sync.name}_changes_sensor",
        job_name=sync.job_name,
        minimum_interval_seconds=spec.minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if spec.running else dg.DefaultSensorStatus.STOPPED,
        required_resource_keys={sync.resource_key, *sync.extra_resource_keys},
        description=f"Runs the written partitions of {sync.name} whose rows changed since their last write "
        f"(row count or max {spec.updated_column}).",
    )
    def _sensor(context: dg.SensorEvaluationContext, **resources: Any) -> dg.SensorResult | dg.SkipReason:
        # invoked directly, Dagster passes the required resources as keywords too; the probe reads context's
        return evaluate_changes(sync, probe, context)

    return _sensor


def evaluate_changes(
    sync: TrackstarSync, probe: ChangesProbe, context: dg.SensorEvaluationContext
) -> dg.SensorResult | dg.SkipReason:
    """One tick: stored fingerprints, one probe, the requests for what changed."""
    spec = sync.changes_sensor
    assert spec is not None and sync.partitions_def is not None
    stored = stored_fingerprints(context.instance, sync.results_key)
    keys = sorted(k for k, fp in stored.items() if fp is not None)
    unwatched = len(stored) - len(keys)
    if unwatched:
        context.log.info(f"{unwatched} partitions written without a fingerprint: run them once to watch them")
    if not keys:
        return dg.SkipReason(
            "no partition written with a fingerprint yet (schedules and backfills write them)"
        )
    # no cursor: the event log is the state (a lost or reset cursor changes nothing)
    span = _span(sync, keys, spec.lookback_days, time.time())
    if span is None:
        return dg.SkipReason(f"no written partition in the last {spec.lookback_days} days")
    window, inside = span
    connections: tuple[str, ...] = ()
    if sync.mapping.open_routing:
        trackstar: Any = getattr(context.resources, sync.resource_key)
        connections = tuple(trackstar.connection_names())
    request = ProbeRequest(
        window=window,
        partitions_def=sync.partitions_def,
        mapping=sync.mapping,
        date_column=sync.date_column,
        updated_column=spec.updated_column,
        connections=connections,
    )
    probed = dict(probe(context, request))
    changed = changed_partitions(stored, probed, inside)
    if not changed:
        return dg.SkipReason(f"{len(inside)} written partitions unchanged")
    context.log.info(f"rows changed in {len(changed)} partitions: {', '.join(changed[:20])}")
    requests = run_requests(sync, changed, context.instance, lambda ks: _run_key(ks, stored, probed))
    return dg.SensorResult(run_requests=requests)
