"""The ``order_statuses`` asset: a sync's orders read back from Trackstar, per connection, incrementally.

The first read of a connection asks for exactly the orders the sync created (their ids from the ledger,
``ids[in]`` 100 at a time); later reads ask what changed in Trackstar's copy since the connection's high water
mark (``trackstar_updated_date[gte]``, minus an overlap) and keep the sync's orders among them (an id the
ledger holds, or the sync's tag: an order written while the ledger was read still counts). The mark is the
latest ``trackstar_updated_date`` seen, on Trackstar's clock, never this machine's. Every request goes
through the resource's client: retried, within the token's read budget.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from trackstar_dagster.client.order_reads import (
    iter_orders_by_ids,
    iter_orders_changed_since,
    trackstar_updated_at,
)
from trackstar_dagster.resource import TrackstarResource
from trackstar_dagster.sync.assets import IO_MANAGER_KEY
from trackstar_dagster.sync.declaration import TrackstarSync
from trackstar_dagster.sync.status_config import StatusReadBack
from trackstar_dagster.sync.status_rows import (
    LEDGER_MARKS_KEY,
    load_marks,
    marks_metadata,
    status_frame,
    status_metadata,
    status_row,
    tagged_key,
)
from trackstar_dagster.writer.ledger_reads import WrittenRecord, written_records


class ConnectionRead:
    """One connection's read: its orders as rows, how they were asked for, and its new marks.

    Two marks: Trackstar's (the latest ``trackstar_updated_date`` read) finds what changed in Trackstar; the
    ledger's (the latest ledger row seen) finds the orders whose ledger row came after the last read (a late
    flush, a rebuilt ledger) although Trackstar's copy did not change since: those are read by id.
    """

    def __init__(
        self,
        sync: TrackstarSync,
        name: str,
        written: list[WrittenRecord],
        mark: datetime | None,
        ledger_mark: datetime | None,
    ) -> None:
        self.sync = sync
        self.name = name
        self.written = written
        self.keys = {w.trackstar_id: w.key for w in written}  # trackstar id -> key
        self.mark = mark
        self.ledger_mark = ledger_mark
        self.rows: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {"mode": "ids" if mark is None else "trackstar_updated_date"}

    def run(self, trackstar: TrackstarResource, config: StatusReadBack) -> None:
        client = trackstar.get_client()
        token = trackstar.access_token(self.name)
        overlap = timedelta(seconds=config.overlap_seconds)
        read_at = datetime.now(UTC)
        ids: list[str] = list(self.keys)
        seen: set[str] = set()
        if self.mark is not None:
            changed = iter_orders_changed_since(client, token, self.mark - overlap)
            self.figures["orders_read"] = self._take(changed, read_at, seen)
            since = self.ledger_mark - overlap if self.ledger_mark is not None else None
            ids = [
                w.trackstar_id
                for w in self.written
                if w.trackstar_id not in seen
                and (since is None or w.updated_at is None or w.updated_at > since)
            ]
        by_id = iter_orders_by_ids(client, token, ids, batch_size=config.batch_size)
        self.figures["read_by_id"] = self._take(by_id, read_at, seen)
        self.figures["rows"] = len(self.rows)
        stamps = [w.updated_at for w in self.written if w.updated_at is not None]
        if stamps:
            self.ledger_mark = max([*stamps, *([self.ledger_mark] if self.ledger_mark else [])])

    def _take(self, records: Iterator[dict[str, Any]], read_at: datetime, seen: set[str]) -> int:
        """Keep the sync's orders among ``records`` (an id the ledger holds, or its tag); move the mark on."""
        n = 0
        for record in records:
            n += 1
            seen.add(str(record.get("id")))
            changed = trackstar_updated_at(record)
            if changed is not None and (self.mark is None or changed > self.mark):
                self.mark = changed
            key = self.keys.get(str(record.get("id"))) or tagged_key(record, self.sync.name)
            if key is not None:  # another sync's order, or one made outside any sync: not ours
                self.rows.append(status_row(self.name, key, record, read_at))
        return n


class StatusesRunConfig(dg.Config):
    """Run config of the statuses step. ``full_refresh``: forget the marks and read every order the sync wrote
    again, by id (the table was dropped or rebuilt; later reads are incremental from the new marks)."""

    full_refresh: bool = False


def build_order_statuses_asset(sync: TrackstarSync) -> dg.AssetsDefinition:
    """The sync's ``order_statuses`` asset (needs ``sync.read_back_statuses``)."""
    read_back = sync.status_read_back
    if read_back is None:
        raise ValueError(f"{sync.name}: read_back_statuses is off")
    spec = sync.asset_spec("order_statuses")

    @dg.multi_asset(
        name=spec.key.to_python_identifier(),
        specs=[spec.with_io_manager_key(IO_MANAGER_KEY)],
        required_resource_keys={sync.resource_key, IO_MANAGER_KEY, *sync.extra_resource_keys},
    )
    def _order_statuses(context: dg.AssetExecutionContext, config: StatusesRunConfig):
        trackstar: TrackstarResource = getattr(context.resources, sync.resource_key)
        marks = {} if config.full_refresh else load_marks(context.instance, spec.key)
        ledger_marks = {} if config.full_refresh else load_marks(context.instance, spec.key, LEDGER_MARKS_KEY)
        with trackstar.ledger() as ledger:
            written = written_records(ledger, sync.name, action=sync.mapping.action)
        by_connection: dict[str, list[WrittenRecord]] = {}
        for w in written:
            by_connection.setdefault(w.connection, []).append(w)
        reads: dict[str, dict[str, Any]] = {}
        rows: list[dict[str, Any]] = []
        new_marks, new_ledger_marks = dict(marks), dict(ledger_marks)
        configured = set(trackstar.connection_names())
        gone = sorted((set(by_connection) | set(marks)) - configured)
        if gone:  # a customer who left: its rows stay in the table, its marks in the metadata
            context.log.warning(f"Not read: connections no longer configured: {', '.join(gone)}")
        for name in sorted((set(by_connection) | set(marks)) & configured):
            read = ConnectionRead(
                sync, name, by_connection.get(name, []), marks.get(name), ledger_marks.get(name)
            )
            read.run(trackstar, read_back)
            reads[name] = read.figures
            rows += read.rows
            if read.mark is not None:
                new_marks[name] = read.mark
            if read.ledger_mark is not None:
                new_ledger_marks[name] = read.ledger_mark
            context.log.info(f"{name}: {read.figures}")
        frame = status_frame(rows)
        if read_back.sink is not None:
            read_back.sink(context, frame)
        metadata = {
            **status_metadata(frame, reads),
            **marks_metadata(new_marks),
            **marks_metadata(new_ledger_marks, LEDGER_MARKS_KEY),
        }
        return dg.Output(frame, output_name=spec.key.to_python_identifier(), metadata=metadata)

    return _order_statuses


def order_statuses_job_and_schedules(
    sync: TrackstarSync,
) -> tuple[list[Any], list[dg.ScheduleDefinition]]:
    """``<sync>_order_statuses_job`` over the asset, and its schedule when ``cron_schedule`` is set."""
    config = sync.status_read_back
    if config is None:
        return [], []
    job = dg.define_asset_job(
        f"{sync.name}_order_statuses_job",
        selection=dg.AssetSelection.assets(sync.statuses_key),
        tags=dict(sync.tags) or None,
    )
    schedules = []
    if config.cron_schedule:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{sync.name}_order_statuses_schedule", job=job, cron_schedule=config.cron_schedule
            )
        )
    return [job], schedules
