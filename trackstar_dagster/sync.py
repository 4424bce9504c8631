"""A sync's assets: source table -> payloads (+ rejects) -> write results, and the ``write_orders`` op.

The Dagster layer only wires: rows come from the user's ``load_rows``, bodies from ``mapping.build_payloads``,
writes from ``writer.write_payloads``; this module turns their plain results into outputs, metadata, asset
checks, ``Failure`` and ``RetryRequested``.
"""


from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal

import dagster as dg
import numpy as np
import pandas as pd

from trackstar_dagster.assets import WRITE_INFO_KEY
from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.base.keys import check_namespace
from trackstar_dagster.checks import reject_share_result, rows_valid_result
from trackstar_dagster.io_manager import PARTITION_COLUMN, TrackstarFrameIOManager, read_frames
from trackstar_dagster.mapping import MappingConfig, Target, build_payloads
from trackstar_dagster.mapping.previews import preview_bodies, top_reject_reasons
from trackstar_dagster.mapping.validation import PayloadsModel, RejectsModel
from trackstar_dagster.metadata import frame_metadata, markdown_table
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.schema.store import snapshot_key
from trackstar_dagster.writer import FAILURE_COLUMNS, STATUSES, FailurePolicy, write_payloads

RowLoader = Callable[[dg.AssetExecutionContext, dg.TimeWindow | None], pd.DataFrame]
ResultsSink = Callable[[dg.AssetExecutionContext, str, pd.DataFrame], None]
IO_MANAGER_KEY = "trackstar_io_manager"
ROWS_VALID_CHECK = "rows_valid"
REJECT_SHARE_CHECK = "reject_share"


class WriteMode(Enum):
    """``create_only``: a changed body of a record already created is reported, not sent; ``upsert``: updated."""

    create_only = "create_only"
    upsert = "upsert"


class WriteConfig(dg.Config):
    """Run config of a write step: a dry run sends nothing; ``mode`` overrides the sync's; ``namespace`` (the
    plain ``write_orders`` op only; a sync's is its name) keeps this job's ledger rows and tags its own."""

    dry_run: bool = False
    mode: WriteMode | None = None
    namespace: str | None = None

    def mode_or(self, default: str) -> str:
        return self.mode.value if self.mode is not None else default


@dataclass(frozen=True)
class TrackstarSync:
    """Everything one sync needs: where rows come from, how they map, where they go, and its policies."""

    name: str
    mapping: MappingConfig
    load_rows: RowLoader
    source_key: dg.AssetKey | None = None
    date_column: str | None = None
    partitions_def: dg.PartitionsDefinition | None = None
    backfill_policy: dg.BackfillPolicy | None = None
    write_from: datetime | date | str | None = None
    mode: Literal["create_only", "upsert"] = "create_only"
    dry_run: bool = False
    max_reject_share: float = 0.1
    max_failed_share: float = 0.0
    pool: str | None = None
    results_sink: ResultsSink | None = None
    resource_key: str = "trackstar"
    key_prefix: Sequence[str] = ()
    group_name: str | None = None
    write_info_key: dg.AssetKey = WRITE_INFO_KEY
    tags: dict[str, str] = field(default_factory=dict)
    #: resources ``load_rows`` and ``results_sink`` use (e.g. ``{"duckdb"}``)
    extra_resource_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # the name is the sync's namespace: in its bodies' tags and its ledger rows (keys.key_tag)
        try:
            check_namespace(self.name)
        except ValueError as e:
            raise ConfigError(f"sync name: {e}") from None

    @property
    def prefix(self) -> list[str]:
        return [*self.key_prefix, self.name]

    def ledger_entries(self, trackstar: TrackstarResource) -> pd.DataFrame:
        """This sync's rows of the write ledger (status, Trackstar id, last error per record)."""
        with trackstar.ledger() as ledger:
            return ledger.entries(namespace=self.name)

    def read_results(self, partitions: list[str] | None = None, *, base_dir: str | None = None,
                     instance: dg.DagsterInstance | None = None) -> pd.DataFrame:
        """The stored ``write_results`` frames (every partition, or those named)."""
        return read_frames(self.results_key, partitions, base_dir=base_dir, instance=instance)

    @property
    def tagged_mapping(self) -> MappingConfig:
        """The mapping, its bodies tagged in this sync's namespace (its name) unless it names one itself."""
        if self.mapping.tag_namespace is not None:
            return self.mapping
        return self.mapping.model_copy(update={"tag_namespace": self.name})

    @property
    def payloads_key(self) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, "payloads"])

    @property
    def rejects_key(self) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, "rejects"])

    @property
    def results_key(self) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, "write_results"])

    @property
    def pool_name(self) -> str:
        return self.pool or f"trackstar_{self.name}"

    @property
    def effective_backfill_policy(self) -> dg.BackfillPolicy | None:
        if self.partitions_def is None:
            return None
        return self.backfill_policy or dg.BackfillPolicy.single_run()

    @property
    def write_from_ts(self) -> pd.Timestamp | None:
        if self.write_from is None:
            return None
        ts = pd.Timestamp(self.write_from)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# ---------------------------------------------------------------------------------------------------------
# helpers (plain functions: unit-testable without a run)


def resolve_targets(trackstar: TrackstarResource, mapping: MappingConfig, log: Any = None) -> dict[str, Target]:
    """Each connection's integration and write-info document: the stored snapshot, else one fetch."""
    store = trackstar.schema_store()
    targets: dict[str, Target] = {}
    client = None
    try:
        for name in mapping.connections():
            conn = trackstar.connection(name)
            skey = snapshot_key(conn.integration_type, conn.integration_name, conn.name)
            doc = store.load(skey)
            if doc is None:
                if client is None:
                    client = trackstar.get_client()
                if log:
                    log.info(f"No write-info snapshot for {skey}; fetching it")
                doc = client.get_write_info(conn.integration_type, conn.integration_name, access_token=conn.access_token)
                store.save(skey, doc)
            targets[name] = Target(
                connection=name,
                integration_type=conn.integration_type,
                integration_name=conn.integration_name,
                doc=doc,
            )
    finally:
        if client is not None:
            client.close()
    return targets


def partition_of_rows(
    frame: pd.DataFrame, date_column: str | None, partitions_def: dg.PartitionsDefinition | None, keys: Sequence[str]
) -> np.ndarray | None:
    """The partition key of every source row (by its date), for a time-window partitioned sync."""
    if partitions_def is None or not keys:
        return None
    if date_column is None or not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return np.array([keys[0]] * len(frame), dtype=object)
    windows = [partitions_def.time_window_for_partition_key(k) for k in keys]
    starts = pd.DatetimeIndex([pd.Timestamp(w.start).tz_convert("UTC") for w in windows])
    dates = pd.to_datetime(frame[date_column], utc=True, errors="coerce").dt.tz_convert("UTC").dt.as_unit("ns")
    pos = np.searchsorted(starts.as_unit("ns").asi8, dates.dt.tz_localize(None).to_numpy().astype(np.int64), side="right") - 1
    pos = np.clip(pos, 0, len(keys) - 1)
    return np.asarray(keys, dtype=object)[pos]


def _first_row(source_rows: Any) -> int:
    if isinstance(source_rows, list | tuple | np.ndarray) and len(source_rows):
        return int(source_rows[0])
    return int(source_rows) if isinstance(source_rows, int | np.integer) else 0


def tag_frame(
    out: pd.DataFrame, source: pd.DataFrame, row_partitions: np.ndarray | None, date_column: str | None,
    write_from: pd.Timestamp | None,
) -> pd.DataFrame:
    """Add ``partition`` (and for payloads ``dry_run``) to a payloads or rejects frame by its first source row."""
    out = out.copy()
    first = out["source_rows"].map(_first_row).to_numpy(dtype=np.int64) if len(out) else np.array([], dtype=np.int64)
    if row_partitions is not None:
        out[PARTITION_COLUMN] = pd.array(row_partitions[first] if len(first) else [], dtype="string")
    if write_from is not None and date_column is not None and len(out):
        before = (pd.to_datetime(source[date_column], utc=True, errors="coerce") < write_from).to_numpy(dtype=bool)
        out["dry_run"] = before[first]
    else:
        out["dry_run"] = False
    return out


# ---------------------------------------------------------------------------------------------------------
# metadata: each partition its own figures


def results_metadata(results: pd.DataFrame, report: Any = None) -> dict[str, Any]:
    """The figures of a write-results frame (of a run, or of one partition of it): counts per status (every
    status every time, so the UI plots continuous series), failures; the run's rates when given."""
    counts = results["status"].value_counts().to_dict() if len(results) else {}
    metadata: dict[str, Any] = {
        **frame_metadata(results),
        **{f"status_{k}": dg.MetadataValue.int(int(counts.get(k, 0))) for k in (*STATUSES, "dry_run")},
        "dry_run_records": dg.MetadataValue.int(int(counts.get("dry_run", 0))),
    }
    if report is not None:
        metadata.update({
            "writes_per_s": dg.MetadataValue.float(float(report.writes_per_s or 0.0)),
            "latency_p50_s": dg.MetadataValue.float(float(report.p50_latency_s or 0.0)),
            "latency_p95_s": dg.MetadataValue.float(float(report.p95_latency_s or 0.0)),
        })
    if len(results) and "status" in results.columns:
        failures = results[results["status"].isin(["failed", "rejected", "in_flight_elsewhere"])]
        if len(failures):
            cols = [c for c in FAILURE_COLUMNS if c in failures.columns]
            metadata["failures"] = dg.MetadataValue.md(markdown_table(failures[cols], max_rows=25))
    return metadata


def stamp_partitions(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, frame: pd.DataFrame,
                     figures: Callable[[pd.DataFrame], dict[str, Any]]) -> bool:
    """Each partition of the run gets the figures of its own rows (Dagster copies ``Output`` metadata onto
    every partition of a range: a 30-day backfill would show the range's totals on each day). False when
    the asset is not partitioned (then the caller puts the figures on the ``Output``)."""
    if not context.has_partition_key_range and not context.has_partition_key:
        return False
    keys = list(context.partition_keys)
    groups = dict(tuple(frame.groupby(PARTITION_COLUMN, sort=False))) if (
        PARTITION_COLUMN in frame.columns and len(frame)) else {}
    if PARTITION_COLUMN not in frame.columns and len(keys) == 1:
        groups = {keys[0]: frame}
    for key in keys:
        context.add_asset_metadata(figures(groups.get(key, frame.iloc[0:0])), asset_key=asset_key,
                                   partition_key=key)
    return True


# ---------------------------------------------------------------------------------------------------------
# the write step, shared by the sync's asset and the plain op


def run_writes(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    trackstar: TrackstarResource,
    payloads: pd.DataFrame,
    *,
    dry_run: bool,
    mode: str,
    max_failed_share: float,
    namespace: str | None = None,
    sink: Callable[[pd.DataFrame], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Send the payloads (dry ones are reported, not sent); return results and metadata; raise on policy breach
    (``RetryRequested`` when records are being written by another run, or Trackstar asked to wait).

    ``sink`` gets the results before the policy is applied: a failed step's outcomes reach the warehouse too."""
    dry_mask = payloads["dry_run"].to_numpy(dtype=bool) if "dry_run" in payloads.columns else np.zeros(len(payloads), bool)
    if dry_run:
        dry_mask[:] = True
    to_send = payloads[~dry_mask]
    dry = payloads[dry_mask]
    report = None
    frames = []
    if len(to_send):
        tokens = {name: trackstar.connection(name).access_token for name in sorted(set(to_send["connection"]))}
        with trackstar.get_client() as client, trackstar.ledger() as ledger:
            report = write_payloads(to_send, client, tokens, ledger, mode=mode, namespace=namespace,
                                    run_label=context.run_id, logger=context.log)
        results = report.results
        if PARTITION_COLUMN in to_send.columns:
            part = dict(zip(zip(to_send["connection"], to_send["key"], strict=True), to_send[PARTITION_COLUMN], strict=True))
            results = results.assign(
                **{PARTITION_COLUMN: [part.get((c, k)) for c, k in zip(results["connection"], results["key"], strict=True)]}
            )
        frames.append(results)
    if len(dry):
        cols = ["key", "connection", "action"] + ([PARTITION_COLUMN] if PARTITION_COLUMN in dry.columns else [])
        frames.append(dry[cols].assign(status="dry_run"))
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["key", "connection", "action", "status"])

    if sink is not None:
        sink(results)
    metadata = results_metadata(results, report)
    if report is not None:
        for conn, reason in (report.stopped_connections or {}).items():
            metadata[f"stopped_{conn}"] = dg.MetadataValue.text(str(reason))
        outcome = FailurePolicy(max_failed_share=max_failed_share).evaluate(report)
        metadata["failed_share"] = dg.MetadataValue.float(float(outcome.failed_share))
        context.log.info(f"Trackstar write: {outcome.message}")
        if not outcome.ok:
            # every result is already in the ledger (and the failed records are picked up by key next run)
            if outcome.retryable and outcome.retry_after_s:
                wait = float(outcome.retry_after_s)
                why = "another run's claims expire or end" if report.in_flight_elsewhere else "the API asked"
                context.log.warning(f"{outcome.message}; retrying the step in {wait:.0f}s ({why})")
                raise dg.RetryRequested(max_retries=3, seconds_to_wait=wait)
            raise dg.Failure(description=outcome.message, metadata={**metadata, **_plain(outcome.metadata)})
    return results, metadata


@dg.op(
    name="write_orders",
    ins={"payloads": dg.In(pd.DataFrame)},
    out=dg.Out(pd.DataFrame),
    required_resource_keys={"trackstar"},
    tags={"kind": "trackstar"},
)
def write_orders(context: dg.OpExecutionContext, config: WriteConfig, payloads: pd.DataFrame) -> pd.DataFrame:
    """Write a payloads frame (from ``build_payloads``) to Trackstar: each record exactly once, all accounted for."""
    results, metadata = run_writes(
        context, context.resources.trackstar, payloads, dry_run=config.dry_run,
        mode=config.mode_or("create_only"), max_failed_share=0.0, namespace=config.namespace,
    )
    context.add_output_metadata(metadata)
    return results


# ---------------------------------------------------------------------------------------------------------
# the asset factory


def build_trackstar_sync_assets(sync: TrackstarSync) -> list[dg.AssetsDefinition]:
    """The sync's nodes: payloads + rejects (one step, with row checks) -> write results (in the sync's pool)."""
    resource_key = sync.resource_key
    deps = [k for k in (sync.source_key, sync.write_info_key) if k is not None]
    common: dict[str, Any] = {
        "partitions_def": sync.partitions_def,
        "group_name": sync.group_name or sync.name,
        "kinds": {"trackstar", "pandas"},
    }

    @dg.multi_asset(
        name=f"{sync.name}_payloads",
        specs=[
            dg.AssetSpec(sync.payloads_key, deps=deps, description="Base Schema bodies ready to write, one per record.",
                         **common).with_io_manager_key(IO_MANAGER_KEY),
            dg.AssetSpec(sync.rejects_key, deps=deps, description="Records refused before sending, with the field and reason.",
                         **common).with_io_manager_key(IO_MANAGER_KEY),
        ],
        check_specs=[
            dg.AssetCheckSpec(ROWS_VALID_CHECK, asset=sync.payloads_key,
                              description="pandera and write-info validation of every row (WARN on any failure)."),
            dg.AssetCheckSpec(REJECT_SHARE_CHECK, asset=sync.payloads_key, blocking=True,
                              description=f"ERROR when more than {sync.max_reject_share:.0%} of records are rejected, WARN when any."),
        ],
        required_resource_keys={resource_key, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        # no pool: this step must run while a dead run holds the pool, to free it (pools.hold_pool)
        can_subset=False,
    )
    def _payloads(context: dg.AssetExecutionContext):
        from trackstar_dagster.pools import hold_pool

        # free the slots of dead runs, then hold the pool for this run's write step (from here to its end)
        hold_pool(context, sync.pool_name, sync.results_key.to_python_identifier())
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        window = context.partition_time_window if sync.partitions_def is not None and isinstance(
            sync.partitions_def, dg.TimeWindowPartitionsDefinition) else None
        frame = sync.load_rows(context, window)
        targets = resolve_targets(trackstar, sync.mapping, context.log)
        batch = build_payloads(frame.reset_index(drop=True), sync.tagged_mapping, targets)
        PayloadsModel.validate(batch.payloads)  # the outputs' own contract, before anything downstream uses them
        RejectsModel.validate(batch.rejects)
        for conn, dropped in batch.dropped_fields.items():
            context.log.info(f"{conn}: its integration's schema has no {', '.join(dropped)}; left out of its bodies")
        if batch.untagged_connections:
            context.log.warning(
                f"bodies for {', '.join(batch.untagged_connections)} carry no key tag (key_tag off, or the schema has "
                f"no trackstar_tags): an unknown outcome cannot be proven and a lost ledger cannot be rebuilt for "
                f"them; exactly once then rests on the ledger and Trackstar honouring Idempotency-Key")
        keys = list(context.partition_keys) if sync.partitions_def is not None else []
        row_parts = partition_of_rows(frame, sync.date_column, sync.partitions_def, keys)
        payloads = tag_frame(batch.payloads, frame, row_parts, sync.date_column, sync.write_from_ts)
        rejects = tag_frame(batch.rejects, frame, row_parts, sync.date_column, None).drop(columns=["dry_run"])
        if sync.results_sink is not None:
            sync.results_sink(context, "rejects", rejects)

        n_records, n_rejected = batch.records, batch.rejected_records
        source_parts = pd.Series(row_parts if row_parts is not None else [], dtype=object).value_counts().to_dict()

        def payload_figures(part: pd.DataFrame) -> dict[str, Any]:
            per_conn = part.groupby("connection").size().to_dict() if len(part) else {}
            key = part[PARTITION_COLUMN].iloc[0] if PARTITION_COLUMN in part.columns and len(part) else None
            return {
                **frame_metadata(part),
                "source_rows": dg.MetadataValue.int(int(source_parts.get(key, 0)) if row_parts is not None
                                                    else len(frame)),
                "dry_run_records": dg.MetadataValue.int(int(part["dry_run"].sum()) if len(part) else 0),
                **{f"records_{c}": dg.MetadataValue.int(int(n)) for c, n in sorted(per_conn.items())},
                **({"fields_left_out": dg.MetadataValue.json(batch.dropped_fields)} if batch.dropped_fields else {}),
                "preview": dg.MetadataValue.md(preview_bodies(part)),
            }

        def reject_figures(part: pd.DataFrame) -> dict[str, Any]:
            return {
                **frame_metadata(part),
                # records refused (the reject_share check counts these) vs rows of the rejects table
                "rejected_records": dg.MetadataValue.int(int(part["key"].nunique()) if len(part) else 0),
                "reject_rows": dg.MetadataValue.int(len(part)),
                "top_reasons": dg.MetadataValue.md(top_reject_reasons(part)),
            }

        context.log.info(f"Trackstar payloads: {len(frame)} source rows, {n_records} records: "
                         f"{len(payloads)} payloads, {n_rejected} rejected")
        by_partition = stamp_partitions(context, sync.payloads_key, payloads, payload_figures)
        stamp_partitions(context, sync.rejects_key, rejects, reject_figures)
        yield dg.Output(payloads, output_name=sync.payloads_key.to_python_identifier(),
                        metadata=None if by_partition else payload_figures(payloads))
        yield dg.Output(rejects, output_name=sync.rejects_key.to_python_identifier(),
                        metadata=None if by_partition else {**reject_figures(rejects),
                                                            "rejected_records": dg.MetadataValue.int(n_rejected)})
        yield rows_valid_result(sync.payloads_key, ROWS_VALID_CHECK, batch.checks, n_rows=len(frame),
                                n_records=n_records, n_rejected=n_rejected)
        yield reject_share_result(sync.payloads_key, REJECT_SHARE_CHECK, n_rejected, n_records, sync.max_reject_share)

    @dg.asset(
        key=sync.results_key,
        ins={"payloads": dg.AssetIn(sync.payloads_key, input_manager_key=IO_MANAGER_KEY)},
        io_manager_key=IO_MANAGER_KEY,
        required_resource_keys={resource_key, *sync.extra_resource_keys},
        backfill_policy=sync.effective_backfill_policy,
        pool=sync.pool_name,
        description="One row per record: created, updated, unchanged, rejected, failed or dry_run, with the Trackstar id.",
        **common,
    )
    def _results(context: dg.AssetExecutionContext, config: WriteConfig, payloads: pd.DataFrame):
        from trackstar_dagster.pools import keep_heartbeat

        keep_heartbeat(context, sync.pool_name)  # while it holds the pool, other runs can tell it is alive
        trackstar: TrackstarResource = getattr(context.resources, resource_key)
        results, metadata = run_writes(
            context, trackstar, payloads,
            dry_run=config.dry_run or sync.dry_run,
            mode=config.mode_or(sync.mode),
            max_failed_share=sync.max_failed_share,
            namespace=sync.name,
            sink=(lambda frame: sync.results_sink(context, "write_results", frame)) if sync.results_sink else None,
        )
        run_figures = {k: v for k, v in metadata.items() if k in ("writes_per_s", "latency_p50_s", "latency_p95_s")}
        if stamp_partitions(context, sync.results_key, results,
                            lambda part: {**results_metadata(part), **run_figures}):
            return dg.Output(results)
        return dg.Output(results, metadata=metadata)

    return [_payloads, _results]


def trackstar_io_manager_resources(base_dir: str | None = None) -> dict[str, Any]:
    """The resources a sync's assets need besides ``trackstar``."""
    return {IO_MANAGER_KEY: TrackstarFrameIOManager(base_dir=base_dir)}


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Policy metadata as Dagster metadata values (tables as markdown)."""
    out: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if isinstance(value, pd.DataFrame):
            out[key] = dg.MetadataValue.md(markdown_table(value, max_rows=25))
        elif isinstance(value, bool | int | float | str) or value is None:
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out
