"""The payloads step's body: rows -> payloads + rejects one chunk at a time, stored as they are made.

A single-run backfill of two years must not hold two years: the step asks ``load_rows`` for one slice at a
time (``partitions.rows_requests``; a loader may answer a slice in chunks), builds and validates each chunk,
stores its payloads and rejects per partition (``io_manager.FrameStore``) and keeps only running figures:
counts and previews per partition (``PartitionTally``), check outcomes merged across chunks.

A record's rows must come in one chunk (a record is built from all its rows at once): a key seen in two
chunks of one slice is a ``ConfigError``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from trackstar_dagster.base.errors import ConfigError
from trackstar_dagster.changes import FingerprintTally, fingerprint_tally
from trackstar_dagster.checks import merge_outcomes
from trackstar_dagster.io_manager import PARTITION_COLUMN, FrameStore, StoredFrames, TrackstarFrameIOManager
from trackstar_dagster.mapping import PayloadBatch, Target, build_payloads
from trackstar_dagster.mapping.plan import OtherTargets
from trackstar_dagster.mapping.previews import (
    merge_reject_reasons,
    preview_bodies,
    reject_reasons,
    render_reject_reasons,
)
from trackstar_dagster.mapping.validation import PayloadsModel, RejectsModel
from trackstar_dagster.metadata import frame_metadata
from trackstar_dagster.partitions import load_slice, partition_of_rows, rows_requests, tag_frame

PREVIEW_ROWS = 5


@dataclass
class PartitionTally:
    """What one partition's metadata needs, added chunk by chunk: counts, the first rows (previews,
    column schema), reject reasons. Never the partition's rows."""

    rows: int = 0
    head: pd.DataFrame | None = None
    counts: Counter[str] = field(default_factory=Counter)
    reasons: pd.DataFrame | None = None

    def add(self, part: pd.DataFrame, counts: dict[str, int]) -> None:
        self.rows += len(part)
        self.counts.update(counts)
        if self.head is None or (len(self.head) < PREVIEW_ROWS and len(part)):
            first = part.head(PREVIEW_ROWS)
            head = first if self.head is None or not len(self.head) else pd.concat([self.head, first])
            self.head = head.head(PREVIEW_ROWS).reset_index(drop=True)

    def schema_frame(self, template: pd.DataFrame) -> pd.DataFrame:
        return self.head if self.head is not None and len(self.head) else template


def frame_store(
    context: dg.AssetExecutionContext, io_manager_key: str, asset_key: dg.AssetKey, keys: list[str]
) -> FrameStore:
    """Where the step stores an asset's chunks: the IO manager's own storage (it must be this package's)."""
    manager = getattr(context.resources, io_manager_key, None)
    if not isinstance(manager, TrackstarFrameIOManager):
        raise ConfigError(
            f"{io_manager_key!r} must be a TrackstarFrameIOManager (trackstar_io_manager_resources()): a sync's "
            f"steps store their frames chunk by chunk through it, not {type(manager).__name__}"
        )
    return manager.store_for(context.instance, asset_key, keys)


@dataclass
class PayloadsRun:
    """The run's running figures: totals, per-partition tallies, merged checks, the frames' templates."""

    keys: list[str]
    source_rows: int = 0
    records: int = 0
    rejected: int = 0
    payloads: int = 0
    checks: list[Any] = field(default_factory=list)
    payload_parts: dict[str, PartitionTally] = field(default_factory=dict)
    reject_parts: dict[str, PartitionTally] = field(default_factory=dict)
    payloads_template: pd.DataFrame | None = None
    rejects_template: pd.DataFrame | None = None
    dropped_fields: dict[str, list[str]] = field(default_factory=dict)
    untagged: list[str] = field(default_factory=list)
    built: bool = False
    #: hash of (connection, action, key) -> the partition its record went out in, for every record so far
    sent: dict[int, str] = field(default_factory=dict)
    #: each partition's loaded rows (count, max updated_at), when the sync has a changes sensor
    fingerprints: FingerprintTally | None = None

    def later_parts(self, payloads: pd.DataFrame, rejects: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A record already built from an earlier slice of this run (its rows dated days apart, in two slices)
        was one record when the range was one frame: the first part stays, a later part becomes a reject that
        says where the first went (two payloads with one key would fail the whole write step)."""
        if not len(payloads):
            return payloads, rejects
        parts = (
            payloads[PARTITION_COLUMN].astype(str).tolist()
            if PARTITION_COLUMN in payloads.columns
            else [""] * len(payloads)
        )
        ids = [hash(t) for t in zip(payloads["connection"], payloads["action"], payloads["key"], strict=True)]
        earlier = [self.sent.get(i) for i in ids]
        for i, part in zip(ids, parts, strict=True):
            self.sent.setdefault(i, part)
        repeat = [e is not None for e in earlier]
        if not any(repeat):
            return payloads, rejects
        mask = pd.Series(repeat, index=payloads.index)
        moved = payloads[mask]
        reasons = [
            f"the record's rows are dated in two slices of this run: its part dated in {e or 'another slice'} "
            f"was built first and is the one sent; give all of a record's rows one date"
            for e in (x for x in earlier if x is not None)
        ]
        later = pd.DataFrame(
            {
                c: (
                    moved[c].to_numpy()
                    if c in moved.columns
                    else (reasons if c == "reason" else (["key"] * len(moved) if c == "field" else None))
                )
                for c in rejects.columns
            }
        )
        if "value" in later.columns:
            later["value"] = moved["key"].astype(str).to_numpy()
        self.rejected += len(moved)
        return payloads[~mask], pd.concat(
            [rejects, later.astype(rejects.dtypes.to_dict())], ignore_index=True
        )

    def tally(self, key: str, payloads: bool) -> PartitionTally:
        parts = self.payload_parts if payloads else self.reject_parts
        return parts.setdefault(key, PartitionTally())

    def payload_figures(self, key: str) -> dict[str, Any]:
        t = self.tally(key, True)
        template = self.payloads_template if self.payloads_template is not None else pd.DataFrame()
        per_conn = {c[5:]: n for c, n in t.counts.items() if c.startswith("conn:")}
        return {
            **frame_metadata(t.schema_frame(template)),
            "dagster/row_count": dg.MetadataValue.int(t.rows),
            "source_rows": dg.MetadataValue.int(
                int(t.counts["source_rows"]) if self.keys else self.source_rows
            ),
            "dry_run_records": dg.MetadataValue.int(int(t.counts["dry_run"])),
            **connection_figures(per_conn),
            **(
                {"fields_left_out": dg.MetadataValue.json(self.dropped_fields)} if self.dropped_fields else {}
            ),
            "preview": dg.MetadataValue.md(preview_bodies(t.head if t.head is not None else template)),
            **(self.fingerprints.metadata(key) if self.fingerprints is not None and key else {}),
        }

    def reject_figures(self, key: str) -> dict[str, Any]:
        t = self.tally(key, False)
        template = self.rejects_template if self.rejects_template is not None else pd.DataFrame()
        return {
            **frame_metadata(t.schema_frame(template)),
            "dagster/row_count": dg.MetadataValue.int(t.rows),
            "rejected_records": dg.MetadataValue.int(int(t.counts["records"])),
            "reject_rows": dg.MetadataValue.int(t.rows),
            "top_reasons": dg.MetadataValue.md(render_reject_reasons(t.reasons)),
        }


#: up to this many connections, each has its own plotted ``records_<connection>`` entry; past it, a table
MAX_CONNECTION_ENTRIES = 20


def connection_figures(per_conn: dict[str, int]) -> dict[str, Any]:
    """Records per connection: an entry each (the UI plots them) for a few connections; for hundreds, their
    count and a table of the largest, so a partition's metadata stays readable."""
    if len(per_conn) <= MAX_CONNECTION_ENTRIES:
        return {f"records_{c}": dg.MetadataValue.int(int(n)) for c, n in sorted(per_conn.items())}
    top = sorted(per_conn.items(), key=lambda cn: (-cn[1], cn[0]))[:MAX_CONNECTION_ENTRIES]
    rows = "\n".join(f"| {c} | {n} |" for c, n in top)
    return {
        "connections": dg.MetadataValue.int(len(per_conn)),
        "records_by_connection": dg.MetadataValue.md(
            f"{len(per_conn)} connections; the {len(top)} with most records:\n\n"
            f"| connection | records |\n|---|---|\n{rows}"
        ),
    }


def _offset(source_rows: pd.Series, offset: int) -> pd.Series:
    if not offset:
        return source_rows
    return pd.Series(
        [[i + offset for i in rows] if isinstance(rows, list) else rows for rows in source_rows.tolist()],
        index=source_rows.index,
        dtype=object,
    )


def _one_chunk_per_record(seen: set[str], batch: PayloadBatch, sync_name: str) -> None:
    keys = {str(k) for f in (batch.payloads, batch.rejects) for k in f["key"].dropna().unique().tolist()}
    both = keys & seen
    if both:
        raise ConfigError(
            f"{sync_name}: load_rows gave rows of record {sorted(both)[0]!r} in two chunks of one slice; a "
            f"record's rows must come in one chunk (split chunks between records)"
        )
    seen |= keys


def build_chunks(
    context: dg.AssetExecutionContext,
    sync: Any,
    mapping: Any,
    targets: Callable[[pd.DataFrame | None], dict[str, Target]],
    payloads_store: FrameStore,
    rejects_store: FrameStore,
    on_rejects: Callable[[pd.DataFrame], None] | None = None,
    others: OtherTargets | None = None,
) -> PayloadsRun:
    """Every slice's chunks built, validated, tagged with their partition and stored; the run's figures.

    ``targets(chunk)`` gives the targets a chunk's rows need (with open routing, the connections it names),
    resolved once per connection for the run; ``others``, the rest of the mapping's connections (a field
    only they have is not a typo: ``build_payloads``)."""
    keys = list(context.partition_keys) if sync.partitions_def is not None else []
    run = PayloadsRun(keys=keys, fingerprints=fingerprint_tally(sync))
    last_empty: pd.DataFrame | None = None
    sunk = False
    for request in rows_requests(sync, context):
        seen: set[str] = set()
        for chunk in load_slice(sync, context, request):
            if not len(chunk) and run.built:
                continue
            if not len(chunk):
                last_empty = chunk
                continue
            batch = build_payloads(chunk, mapping, targets(chunk), others=others)
            _one_chunk_per_record(seen, batch, sync.name)
            payloads, rejects = _add_chunk(run, context, sync, chunk, batch)
            payloads_store.split(payloads)
            rejects_store.split(rejects)
            if on_rejects is not None and len(rejects):
                on_rejects(rejects)
                sunk = True
    if not run.built:
        empty = last_empty if last_empty is not None else pd.DataFrame()
        payloads, rejects = _add_chunk(
            run, context, sync, empty, build_payloads(empty, mapping, targets(empty), others=others)
        )
        payloads_store.split(payloads)
        rejects_store.split(rejects)
    if on_rejects is not None and not sunk:
        on_rejects(run.rejects_template if run.rejects_template is not None else pd.DataFrame())
    return run


def _add_chunk(
    run: PayloadsRun, context: dg.AssetExecutionContext, sync: Any, chunk: pd.DataFrame, batch: PayloadBatch
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's batch validated, tagged, numbered in the run's rows, tallied; its frames returned."""
    PayloadsModel.validate(batch.payloads)
    RejectsModel.validate(batch.rejects)
    if not run.built:
        run.built = True
        run.dropped_fields, run.untagged = dict(batch.dropped_fields), list(batch.untagged_connections)
        _log_once(context, batch)
    row_parts = partition_of_rows(chunk, sync.date_column, sync.partitions_def, run.keys, sync.mapping)
    if run.fingerprints is not None:
        run.fingerprints.add(chunk, row_parts)
    payloads = tag_frame(batch.payloads, chunk, row_parts, sync.date_column, sync.write_from_ts)
    rejects = tag_frame(batch.rejects, chunk, row_parts, dry_run_column=False)
    payloads, rejects = run.later_parts(payloads, rejects)
    offset = run.source_rows
    payloads["source_rows"] = _offset(payloads["source_rows"], offset)
    rejects["source_rows"] = _offset(rejects["source_rows"], offset)
    run.checks = merge_outcomes(run.checks, batch.checks, offset)
    run.source_rows += len(chunk)
    run.records += batch.records
    run.rejected += batch.rejected_records
    run.payloads += len(payloads)
    if run.payloads_template is None:
        run.payloads_template, run.rejects_template = payloads.iloc[0:0], rejects.iloc[0:0]
    source_counts = pd.Series(row_parts if row_parts is not None else [], dtype=object).value_counts()
    for key, n in source_counts.items():
        run.tally(str(key), True).counts["source_rows"] += int(n)
    for key, part in _by_partition(payloads, run.keys):
        conns = part["connection"].value_counts().to_dict() if len(part) else {}
        counts = {f"conn:{c}": int(n) for c, n in conns.items()}
        counts["dry_run"] = int(part["dry_run"].sum()) if len(part) else 0
        run.tally(key, True).add(part, counts)
    for key, part in _by_partition(rejects, run.keys):
        tally = run.tally(key, False)
        tally.add(part, {"records": int(part["key"].nunique())})
        tally.reasons = merge_reject_reasons(tally.reasons, reject_reasons(part))
    return payloads, rejects


def _by_partition(frame: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not len(frame):
        return []
    if PARTITION_COLUMN not in frame.columns or not keys:
        return [(keys[0] if keys else "", frame)]
    return [(str(k), part) for k, part in frame.groupby(PARTITION_COLUMN, sort=False)]


def _log_once(context: dg.AssetExecutionContext, batch: PayloadBatch) -> None:
    for conn, dropped in batch.dropped_fields.items():
        context.log.info(
            f"{conn}: its integration's schema has no {', '.join(dropped)}; left out of its bodies"
        )
    if batch.untagged_connections:
        context.log.warning(
            f"bodies for {', '.join(batch.untagged_connections)} carry no key tag (key_tag off, or the schema has "
            f"no trackstar_tags): an unknown outcome cannot be proven and a lost ledger cannot be rebuilt for "
            f"them; exactly once then rests on the ledger and Trackstar honouring Idempotency-Key"
        )


__all__ = ["PartitionTally", "PayloadsRun", "StoredFrames", "build_chunks", "frame_store"]
