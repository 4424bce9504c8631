"""The component's ``read_back_statuses`` block: the sync's orders read back into a warehouse table.

A module of its own so the component only names it (``TrackstarSyncComponent.read_back_statuses``).
"""

import dagster as dg
from pydantic import Field

from trackstar_dagster.sql_statuses import sql_statuses_sink
from trackstar_dagster.sync.status_config import StatusReadBack


class StatusesModel(dg.Model, dg.Resolvable):
    """Read the sync's orders back (status, shipments, tracking numbers) into ``table`` of the source's
    database resource, upserted by (connection, trackstar_id); ``<sync>/order_statuses`` and its job."""

    table: str = Field(description="The warehouse table the statuses are upserted into.")
    overlap_seconds: float = Field(
        default=300.0, description="Each incremental read starts this long before the last high water mark."
    )
    cron_schedule: str | None = Field(
        default=None, description="A schedule of <sync>_order_statuses_job (e.g. '*/30 * * * *')."
    )

    def read_back(self, resource_key: str) -> StatusReadBack:
        """The ``TrackstarSync(read_back_statuses=...)`` this block describes."""
        return StatusReadBack(
            sink=sql_statuses_sink(self.table, resource_key),
            overlap_seconds=self.overlap_seconds,
            cron_schedule=self.cron_schedule,
        )
