"""How a sync reads its orders' statuses back (``TrackstarSync(read_back_statuses=...)``).

Kept apart from the asset (``sync.statuses``) so the declaration can name it without importing the step.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from trackstar_dagster.base.errors import ConfigError

#: ``sink(context, frame)``: upsert the rows read (one per order) into the warehouse, by (connection, trackstar_id)
StatusSink = Callable[[dg.AssetExecutionContext, pd.DataFrame], None]


@dataclass(frozen=True)
class StatusReadBack:
    """Read the sync's orders back from Trackstar (status, shipments, tracking numbers) into a table.

    ``sink``: where the rows go (``trackstar_dagster.sql_statuses.sql_statuses_sink`` for a DuckDB-style
    resource); without one they are only the asset's value. ``overlap_seconds``: how far before the last high
    water mark each incremental read starts again (Trackstar's copy is written by syncs that may finish out of
    order; re-reading a few minutes costs little, the sink upserts). ``cron_schedule``: a schedule of the
    ``<sync>_order_statuses_job``. ``batch_size``: ids per ``ids[in]`` request (at most 100).
    """

    sink: StatusSink | None = None
    overlap_seconds: float = 300.0
    cron_schedule: str | None = None
    batch_size: int = 100

    def __post_init__(self) -> None:
        if self.overlap_seconds < 0:
            raise ConfigError("read_back_statuses: overlap_seconds must be >= 0")
        if not 1 <= self.batch_size <= 100:
            raise ConfigError("read_back_statuses: batch_size must be between 1 and 100 (ids[in] takes 100)")


def status_read_back(value: "StatusReadBack | bool | None", action: str) -> StatusReadBack | None:
    """The sync's setting as a ``StatusReadBack`` (``True``: the defaults), None when off; orders only."""
    if not value:
        return None
    if not action.endswith("_order"):
        raise ConfigError(f"read_back_statuses reads orders back; this sync's action is {action!r}")
    return value if isinstance(value, StatusReadBack) else StatusReadBack()
