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
    load_marks,
    marks_metadata,
    status_frame,
    status_metadata,
    status_row,
    tagged_key,
)
from trackstar_dagster.writer.ledger_reads import written_records


class ConnectionRead:
    """One connection's read: its orders as rows, the requests' mode, and its new mark."""

    def __init__(self, sync: TrackstarSync, name: str, keys: dict[str, str], mark: datetime | None) -> None:
        self.sync = sync
        self.name = name
        self.keys = keys  # trackstar id -> key, from the ledger
        self.mark = mark
        self.rows: list[dict[str, Any]] = []
        self.seen = 0

    def run(self, trackstar: TrackstarResource, config: StatusReadBack) -> None:
        client = trackstar.get_client()
        token = trackstar.access_token(self.name)
        records: Iterator[dict[str, Any]]
        if self.mark is None:
            records = iter_orders_by_ids(client, token, list(self.keys), batch_size=config.batch_size)
        else:
            since = self.mark - timedelta(seconds=config.overlap_seconds)
            records = iter_orders_changed_since(client, token, since)
        read_at = datetime.now(UTC)
        for record in records:
            self.seen += 1
            changed = trackstar_updated_at(record)
            if changed is not None and (self.mark is None or changed > self.mark):
                self.mark = changed
            key = self.keys.get(str(record.get("id"))) or tagged_key(record, self.sync.name)
            if key is not None:  # another sync's order, or one made outside any sync: not ours
                self.rows.append(status_row(self.name, key, record, read_at))

    def figures(self, mode: str) -> dict[str, Any]:
        return {"mode": mode, "orders_read": self.seen, "rows": len(self.rows)}


def build_order_statuses_asset(sync: TrackstarSync) -> dg.AssetsDefinition:
    """The sync's ``order_statuses`` asset (needs ``sync.read_back_statuses``)."""
    config = sync.status_read_back
    if config is None:
        raise ValueError(f"{sync.name}: read_back_statuses is off")
    spec = sync.asset_spec("order_statuses")

    @dg.multi_asset(
        name=spec.key.to_python_identifier(),
        specs=[spec.with_io_manager_key(IO_MANAGER_KEY)],
        required_resource_keys={sync.resource_key, IO_MANAGER_KEY, *sync.extra_resource_keys},
    )
    def _order_statuses(context: dg.AssetExecutionContext):
        trackstar: TrackstarResource = getattr(context.resources, sync.resource_key)
        marks = load_marks(context.instance, spec.key)
        with trackstar.ledger() as ledger:
            written = written_records(ledger, sync.name, action=sync.mapping.action)
        keys: dict[str, dict[str, str]] = {}
        for w in written:
            keys.setdefault(w.connection, {})[w.trackstar_id] = w.key
        reads: dict[str, dict[str, Any]] = {}
        rows: list[dict[str, Any]] = []
        new_marks = dict(marks)
        for name in sorted(set(keys) | set(marks)):
            read = ConnectionRead(sync, name, keys.get(name, {}), marks.get(name))
            mode = "ids" if read.mark is None else "trackstar_updated_date"
            read.run(trackstar, config)
            reads[name] = read.figures(mode)
            rows += read.rows
            if read.mark is not None:
                new_marks[name] = read.mark
            context.log.info(f"{name}: {read.seen} orders read by {mode}, {len(read.rows)} of this sync's")
        frame = status_frame(rows)
        if config.sink is not None:
            config.sink(context, frame)
        metadata = {**status_metadata(frame, reads), **marks_metadata(new_marks)}
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
